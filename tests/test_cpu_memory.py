"""`keep_freed_memory`: freed frame-sized blocks are reused instead of being faulted in again."""

import subprocess
import sys

import pytest

PROGRAM = """
import resource, sys
from videoanyup.tasks.cpu_memory import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
import torch, videoanyup.api  # what a command has loaded before its work (the CLI calls keep_freed_memory first)
x = torch.ones(16 * 2**20)  # warm-up: 64 MB
del x
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    x = torch.ones(16 * 2**20)  # 64 MB written, freed again
    del x
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_freed_blocks_are_reused_without_new_page_faults():
    def faults(policy: str) -> int:
        run = subprocess.run([sys.executable, "-c", PROGRAM, policy], capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        return int(run.stdout.split()[-1])

    block = 16 * 2**20 * 4 // 4096  # pages of one 64 MB block
    default, kept = faults("default"), faults("keep")
    assert default > 8 * block  # each of the 10 blocks faulted in again (measured: 10 blocks)
    assert kept < 3 * block  # at most the first ones (measured: 1 block)

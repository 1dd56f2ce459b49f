"""Run one benchmark case in a fresh interpreter, so that its peak resident memory is its own.

A benchmark script calls `spawn(__file__, case)`; the child is the same script run with `--case JSON`, which
prints the case's result as its last stdout line (JSON).
"""

from __future__ import annotations

import json
import subprocess
import sys


def spawn(script: str, case: dict) -> dict:
    """Run `script --case JSON(case)` and return its last JSON line (or `case` with an `error` entry)."""
    done = subprocess.run([sys.executable, script, "--case", json.dumps(case)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return dict(case, error=done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed")
    return json.loads(done.stdout.strip().splitlines()[-1])

"""The layout of DESIGN.md §2: `backbones/` and `tasks/` are installed as `videoanyup.backbones` / `.tasks`."""

import subprocess
import sys
from pathlib import Path

import videoanyup
import videoanyup.backbones
import videoanyup.tasks
from videoanyup.tasks import cli

REPO = Path(__file__).resolve().parents[1]


def test_mapped_packages_come_from_the_top_level_folders():
    assert Path(videoanyup.backbones.__file__).resolve().parent.name == "backbones"
    assert Path(videoanyup.tasks.__file__).resolve().parent.name == "tasks"
    assert hasattr(videoanyup, "BasicAVSR")


def test_core_does_not_import_lightning():
    code = "import sys, videoanyup; assert 'lightning' not in sys.modules and 'wandb' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_console_script_prints_help(capsys):
    assert cli.main([]) == 0
    assert "videoanyup" in capsys.readouterr().out

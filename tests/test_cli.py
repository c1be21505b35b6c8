"""The ``btnk-env`` command: help, unknown commands, ``info``."""

from __future__ import annotations

import json
import subprocess
import sys

from btnk_env.cli import SUBCOMMANDS, main


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert name in out


def test_unknown_command_fails_with_usage(capsys):
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_info_json_reports_presets_and_versions(capsys):
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["presets"]["base"].startswith("D=768")
    assert "btnk_mae_vit_base_224" in info["releases"]


def test_console_script_module_runs():
    out = subprocess.run([sys.executable, "-m", "btnk_env", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0.1.0"

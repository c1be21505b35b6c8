"""The first code snippet of every docs page runs on a fresh machine without network: none names a
download (a release checkpoint, an ``hf:`` dataset, a URL), and the snippets marked
``<!-- tested -->`` (the Python ones and the offline CPU training recipe) are executed as written,
``btnk-env`` and ``torchrun`` being this checkout's."""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys

import pytest

from btnk_env.models.hub import RELEASES
from tests.conftest import ROOT

FIRST = re.compile(r"(<!-- tested[^>]*-->\s*)?```(\w+)\n(.*?)```", re.S)
PAGES = sorted((ROOT / "docs").glob("*.md"))


def first_snippet(page):
    """``(tested, language, code)`` of the page's first fenced block, or ``None``."""
    match = FIRST.search(page.read_text())
    return None if match is None else (bool(match.group(1)), match.group(2), match.group(3))


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_first_snippet_needs_no_network(page):
    snippet = first_snippet(page)
    if snippet is None:
        pytest.skip(f"{page.name} has no code block")
    code = snippet[2]
    for name in re.findall(r"--config\s+(\S+)", code):  # a config's model.init may download too
        path = ROOT / name if "/" in name else ROOT / "configs" / (name if name.endswith(".yaml") else f"{name}.yaml")
        code += "\n" + path.read_text()
    named = [name for name in RELEASES if name in code] + re.findall(r"hf:\S+|https?://\S+|mae_pretrain\S*", code)
    assert not named, f"{page.name}'s first snippet downloads {named}: start it with the shipped model"


TESTED = [p for p in PAGES if (first_snippet(p) or (False,))[0]]


@pytest.mark.slow
@pytest.mark.parametrize("page", TESTED, ids=[p.stem for p in TESTED])
def test_tested_first_snippet_runs_as_written(page, tmp_path, monkeypatch):
    _, language, code = first_snippet(page)
    monkeypatch.chdir(tmp_path)
    if language == "python":
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, page.name, "exec"), {"__name__": "__doc_snippet__"})
        return
    assert language == "bash"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, module in (("btnk-env", "btnk_env"), ("torchrun", "torch.distributed.run")):
        (bin_dir / name).write_text(f'#!/bin/sh\nexec "{sys.executable}" -m {module} "$@"\n')
        (bin_dir / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(ROOT),
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", code], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

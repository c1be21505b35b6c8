"""The README's tested examples run as written (each block after a ``<!-- tested`` marker)."""

from __future__ import annotations

import contextlib
import io
import re

import pytest

from tests.conftest import ROOT

BLOCK = re.compile(r"<!-- tested[^>]*-->\s*```python\n(.*?)```", re.S)
BLOCKS = BLOCK.findall((ROOT / "README.md").read_text())


def test_readme_has_tested_examples():
    assert BLOCKS, "README.md lost its tested examples"


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_example_runs(code, monkeypatch):
    monkeypatch.chdir(ROOT)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {"__name__": "__readme__"})
    assert "torch.Size([1, 192]) (128, 256, 3)" in out.getvalue()

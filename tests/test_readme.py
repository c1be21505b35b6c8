"""Every code block of the README runs as written, offline, in a fresh folder.

Each fenced ``python`` or ``bash`` block follows a marker: ``<!-- tested -->`` (optionally
``<!-- tested: prints TEXT -->``, and then the output must contain TEXT) or
``<!-- not run by the tests: REASON -->``. A block without a marker fails, so a new snippet cannot
go untested by accident. Python blocks are executed; each line of a bash block is a ``btnk-env``
command, run through ``btnk_env.cli.main`` in this process (no new interpreter per command), in
the same folder as the block's other lines. The folder sees the repository's ``docs/`` and
``configs/``, which the snippets read; Minari datasets go into it too.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex

import pytest

from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()
FENCE = re.compile(r"(?:<!-- (tested|not run by the tests)(?::\s*(.*?))? -->\n)?```(\w*)\n(.*?)```", re.S)
BLOCKS = [(m.group(1), (m.group(2) or "").strip(), m.group(3), m.group(4)) for m in FENCE.finditer(README)]
TESTED = [b for b in BLOCKS if b[0] == "tested"]


def test_readme_blocks_are_marked():
    """Every python/bash block says whether the tests run it; the untested ones say why."""
    assert TESTED, "README.md lost its tested examples"
    for marker, note, lang, code in BLOCKS:
        assert marker is not None, f"a README block has no <!-- tested --> marker:\n{code}"
        assert lang in ("python", "bash"), f"a README block in {lang!r} cannot be run:\n{code}"
        if marker == "not run by the tests":
            assert note, f"an untested README block must say why:\n{code}"
    assert sum(b[0] == "not run by the tests" for b in BLOCKS) <= 1, "only the set-up block may go unrun"


def _commands(code: str) -> list[list[str]]:
    lines = []
    for line in code.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            assert words[0] == "btnk-env", f"a README bash line is not a btnk-env command: {line}"
            lines.append(words[1:])
    return lines


@pytest.fixture()
def workdir(tmp_path, monkeypatch):
    for name in ("docs", "configs"):
        (tmp_path / name).symlink_to(ROOT / name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))  # not the user's ~/.minari
    return tmp_path


@pytest.mark.parametrize("block", TESTED, ids=[f"block{i}-{b[2]}" for i, b in enumerate(TESTED)])
def test_readme_block_runs(block, workdir):
    _, note, lang, code = block
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        if lang == "python":
            exec(compile(code, "README.md", "exec"), {"__name__": "__readme__"})
        else:
            from btnk_env.cli import main

            for argv in _commands(code):
                assert main(argv) == 0, argv
    if note.startswith("prints "):
        assert note[len("prints "):] in out.getvalue()

"""The docs: a short README, generated tables that match their JSON, API references that exist,
every page in the site's nav, repository links rewritten for the site, no notes of how the work
was done. (CI also builds the site itself with ``mkdocs build --strict``: ``.ci/run``.)
"""

from __future__ import annotations

import importlib
import json
import re

import pytest
import yaml

from benchmarks import report
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()
USER_DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "configs").glob("*.yaml")),
             *sorted((ROOT / "models" / "weights").glob("*/MODEL_CARD.md"))]


def test_readme_is_a_landing_page():
    assert len(README) < 12_000, f"README.md has {len(README)} characters (under 12,000: move material into docs/)"
    assert "make demo" in README and "make test" in README


def test_tables_match_their_json():
    """``python -m benchmarks.report --check``: every generated table equals what its JSON gives."""
    assert report.update(check=True) == 0


def test_every_table_names_machine_and_date():
    found = 0
    for page in report.pages():
        for m in report.MARKER.finditer(report.FENCE.sub("", page.read_text())):  # fences hold examples
            result = json.loads((ROOT / m.group(2)).read_text())
            machine = result.get("machine", {})
            device = machine if isinstance(machine, str) else machine.get("device") or result.get("device")
            assert result.get("when") and device, m.group(2)
            assert "Measured 20" in m.group(5), f"{page.name}: the table of {m.group(2)} has no machine/date caption"
            found += 1
    assert found >= 4


#: a number with a unit of measurement (12 ms, 3.5 img/s, 170 frames/s, 21.9 dB, 40%, 1.58x) in a table row
MEASURED = re.compile(r"\b(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?\s?(?:ms|s|min|img/s|frames/s|fps|steps/s|dB|GFLOP/s|MiB|GiB|MB|KB|kB|GB|%)"
                      r"(?![\w/])|\b\d+(?:\.\d+)?x(?![\w])")
CODE_SPAN = re.compile(r"`[^`]*`")
#: pages whose measured tables their owners are turning into generated ones (remove an entry once done)
HAND_TABLES_PENDING: set = set()


#: a table header that names what its numbers measure (a "frames/s" column, a "PSNR" column)
MEASURED_HEADER = re.compile(r"(?<![\w/])(?:ms|img/s|frames/s|fps|steps/s|dB|PSNR|MSE|GFLOP/s|speed-up|MiB|GiB)(?![\w/])")
DECIMAL = re.compile(r"\b\d+\.\d+\b")


def hand_typed_figures(text: str) -> list[str]:
    """Table rows of the Markdown ``text`` that carry a measured figure (a number with a unit, or a
    decimal under a header that names a unit) outside generated markers (``<!-- table: ... -->``, ``<!-- generated: ... -->``),
    code fences and code spans (a command's ``--frames 6000``)."""
    text = report.SPEED_MARKER.sub("", report.MARKER.sub("", report.FENCE.sub("", text)))
    rows, header = [], None
    for line in text.splitlines():
        if not line.lstrip().startswith("|"):
            header = None
            continue
        plain = CODE_SPAN.sub("", line)
        if header is None:
            header = plain
        if MEASURED.search(plain) or (plain is not header and MEASURED_HEADER.search(header) and DECIMAL.search(plain)):
            rows.append(line)
    return rows


def test_hand_typed_figures_are_found():
    assert hand_typed_figures("| envs | steps/s |\n|---|---|\n| 4 | 19.9 steps/s (1.58x) |\n") == \
        ["| 4 | 19.9 steps/s (1.58x) |"]
    assert hand_typed_figures("| method | PSNR at h=1 |\n|---|---|\n| learned | 21.96 |\n") == ["| learned | 21.96 |"]
    assert hand_typed_figures("| run | 1,200 frames in 3.5 min |\n") == ["| run | 1,200 frames in 3.5 min |"]
    assert hand_typed_figures("| size | 128x256 | `--frames 6000 --max-steps 64` |\n| a | 20 steps, min 1e-4 |\n") == []
    generated = report.rewrite("<!-- table: docs/benchmarks/docs.json env -->\n<!-- /table -->\n", "page.md")
    assert "frames/s" in generated and hand_typed_figures(generated) == []


@pytest.mark.parametrize("path", report.pages(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_hand_typed_figures_in_tables(path):
    """Every measured figure in a docs table comes from a JSON through a generated table."""
    page = path.relative_to(ROOT).as_posix()
    if page in HAND_TABLES_PENDING:
        pytest.skip(f"{page}: its measured tables are being turned into generated ones")
    rows = hand_typed_figures(path.read_text(encoding="utf-8"))
    assert rows == [], f"{page}: measured figures typed by hand (generate them: benchmarks/report.py):\n" + "\n".join(rows)


def test_report_check_fails_on_a_hand_edited_table(tmp_path, monkeypatch):
    page = tmp_path / "page.md"
    good = report.rewrite("<!-- table: docs/benchmarks/docs.json env -->\n<!-- /table -->\n", "page.md")
    page.write_text(good.replace("|", "| 1 |", 3))
    monkeypatch.setattr(report, "ROOT", tmp_path)
    monkeypatch.setattr(report, "PAGES", ("page.md",))
    (tmp_path / "docs").symlink_to(ROOT / "docs")
    assert report.update(check=True) == 1


def _nav_pages(nav) -> list[str]:
    out = []
    for item in nav:
        for value in (item.values() if isinstance(item, dict) else [item]):
            out += _nav_pages(value) if isinstance(value, list) else [value]
    return out


def test_every_page_is_in_the_nav():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    nav = set(_nav_pages(config["nav"]))
    pages = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    from docs.hooks import EXTERNAL_PAGES

    pages |= set(EXTERNAL_PAGES.values())
    assert pages - nav == set(), "pages missing from mkdocs.yml's nav"
    assert nav - pages == set(), "nav entries without a page"


API_REFS = sorted({(p.name, ref) for p in (ROOT / "docs" / "api").glob("*.md")
                   for ref in re.findall(r"^::: (\S+)", p.read_text(), re.M)})


@pytest.mark.parametrize("page,ref", API_REFS, ids=[r for _, r in API_REFS])
def test_api_reference_exists(page, ref):
    """Each ``::: module.name`` of the API pages names an importable object with a docstring."""
    parts = ref.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for name in parts[i:]:
            obj = getattr(obj, name)
        break
    else:
        raise AssertionError(f"{page}: {ref} cannot be imported")
    assert (obj.__doc__ or "").strip(), f"{page}: {ref} has no docstring"


def test_repository_links_become_site_links():
    from docs.hooks import rewrite_links

    assert rewrite_links("[w](docs/wrappers.md#speed) ![x](docs/images/a.png)", "README.md", "index.md") == \
        "[w](wrappers.md#speed) ![x](images/a.png)"
    card = "models/weights/panorama_rooms_small/MODEL_CARD.md"
    assert rewrite_links("![c](../../../docs/images/c.png) [s](../../../docs/speed.md)", card, "model_card.md") == \
        "![c](images/c.png) [s](speed.md)"
    assert rewrite_links("[m](models/weights/panorama_rooms_small/MODEL_CARD.md)", "README.md", "index.md") == \
        "[m](model_card.md)"
    assert rewrite_links("[n](examples/01_encode_and_reconstruct.ipynb)", "README.md", "index.md") == \
        "[n](examples/01_encode_and_reconstruct.ipynb)"
    # not part of the site: left alone, so the strict build reports it
    assert rewrite_links("[t](tests/test_docs.py) [u](https://x.org/a.md)", "README.md", "index.md") == \
        "[t](tests/test_docs.py) [u](https://x.org/a.md)"


def test_notebook_animations_render_on_the_site(tmp_path):
    """nbconvert's HTML templates show an ``image/gif`` output as its text; the site's copy of a
    notebook carries each animation as an HTML ``<img>`` too, and the notebook itself is unchanged."""
    from docs.hooks import notebook_for_site

    repo_path = "examples/03_decode_imagined_rollout.ipynb"
    before = (ROOT / repo_path).read_bytes()
    copy = json.loads(notebook_for_site(repo_path, tmp_path).read_text())
    outputs = [out.get("data", {}) for cell in copy["cells"] for out in cell.get("outputs", [])]
    gifs = [data for data in outputs if "image/gif" in data]
    assert len(gifs) == 2
    for data in gifs:
        gif = "".join(data["image/gif"]).replace("\n", "")
        assert data["text/html"] == f'<img src="data:image/gif;base64,{gif}" alt="animation">'
    assert (ROOT / repo_path).read_bytes() == before


WORK_NOTES = re.compile(r"SIGSTOP|no network here|\bissue \d+|\(issue[ :]|earlier session|this session", re.I)


@pytest.mark.parametrize("path", USER_DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_notes_of_how_the_work_was_done(path):
    hits = [line for line in path.read_text().splitlines() if WORK_NOTES.search(line)]
    assert hits == [], f"{path.name}: {hits}"

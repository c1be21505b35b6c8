"""mkdocs hook: pages that live outside ``docs/`` in the repository.

The README is the site's home page, the shipped model's card and the notebooks in ``examples/``
are pages too. Each is added at build time from its file in the repository (one copy of the
text), and its relative links, written for a reader of the repository (``docs/wrappers.md``,
``../../../docs/images/x.png``), are rewritten into links between site pages. A link to a
repository file that is not part of the site is left as it is, so the strict build reports it.
"""

from __future__ import annotations

import json
import posixpath
import re
from pathlib import Path

import griffe
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]

#: repository path -> site path of the pages that live outside docs/
EXTERNAL_PAGES = {
    "README.md": "index.md",
    "models/weights/panorama_rooms_small/MODEL_CARD.md": "model_card.md",
    **{f"examples/{p.name}": f"examples/{p.name}" for p in sorted((ROOT / "examples").glob("*.ipynb"))},
}

#: where the site's copies of the notebooks are written (:func:`notebook_for_site`)
NOTEBOOK_COPIES = ROOT / "build" / "site_notebooks"

LINK = re.compile(r"(\]\()([^)\s#]+)((?:#[^)\s]*)?\))")


def site_path(repo_path: str) -> str | None:
    """Where the repository file ``repo_path`` lives in the site, or None if it is not part of it."""
    if repo_path in EXTERNAL_PAGES:
        return EXTERNAL_PAGES[repo_path]
    if repo_path.startswith("docs/"):
        return repo_path[len("docs/"):]
    return None


def rewrite_links(markdown: str, repo_path: str, page_path: str) -> str:
    """Rewrite the relative links of ``markdown`` (the text of ``repo_path``) for the page ``page_path``."""
    repo_dir, page_dir = posixpath.dirname(repo_path), posixpath.dirname(page_path)

    def one(match: re.Match) -> str:
        target = match.group(2)
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("/"):
            return match.group(0)  # a URL or an absolute link
        resolved = site_path(posixpath.normpath(posixpath.join(repo_dir, target)))
        if resolved is None:
            return match.group(0)
        return match.group(1) + posixpath.relpath(resolved, page_dir or ".") + match.group(3)

    return LINK.sub(one, markdown)


def notebook_for_site(repo_path: str, out_dir: Path = NOTEBOOK_COPIES) -> Path:
    """A copy of the notebook ``repo_path`` for the site, at the same path under ``out_dir``: every
    animation (an ``image/gif`` output, which nbconvert's HTML templates leave out and show as
    its text, ``<IPython.core.display.Image object>``) also carries an HTML ``<img>`` of the
    same GIF, which the templates render. The notebook in the repository is not changed."""
    from btnk_env.models.files import atomic_write_text

    nb = json.loads((ROOT / repo_path).read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            gif = out.get("data", {}).get("image/gif")
            if gif is not None:
                gif = "".join(gif).replace("\n", "")
                out["data"]["text/html"] = f'<img src="data:image/gif;base64,{gif}" alt="animation">'
    copy = out_dir / repo_path
    copy.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(copy, json.dumps(nb, indent=1) + "\n")
    return copy


@event_priority(100)  # before mkdocs-jupyter's on_files, which turns the notebooks into pages
def on_files(files: Files, config) -> Files:
    for repo_path, page_path in EXTERNAL_PAGES.items():
        source = ROOT / repo_path
        if page_path.endswith(".md"):
            text = rewrite_links(source.read_text(encoding="utf-8"), repo_path, page_path)
            files.append(File.generated(config, page_path, content=text))
        else:  # a plain file (the site's copy of the notebook), so that mkdocs-jupyter renders it
            notebook_for_site(repo_path)
            files.append(File(repo_path, src_dir=str(NOTEBOOK_COPIES), dest_dir=config["site_dir"],
                              use_directory_urls=config["use_directory_urls"]))
    return files


ROLE = re.compile(r":(?:class|meth|func|mod|attr|data|exc|obj):`~?([^`]+)`")


class DocstringMarkup(griffe.Extension):
    """Griffe extension (mkdocs.yml): this project's docstrings render as written for ``help()``.

    Griffe's Google-style parser knows ``Examples:``; the singular, which the docstrings use, would
    render as an admonition with the doctest lines as block quotes. Sphinx roles
    (``:class:`BtnkMAEConfig```) would show their role names; they render as code.
    """

    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            text = re.sub(r"^(\s*)Example:\s*$", r"\1Examples:", obj.docstring.value, flags=re.M)
            obj.docstring.value = ROLE.sub(r"`\1`", text)

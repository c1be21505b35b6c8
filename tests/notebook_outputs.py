"""The notebooks in ``examples/`` are stored executed: run them in place and stamp their code.

``python -m tests.notebook_outputs examples/*.ipynb`` (``make notebooks``) executes each notebook top
to bottom with nbclient at the reader's settings, in ``examples/`` (where Jupyter would start it),
keeps the stored pictures small (:func:`slim`), and stores in its metadata the digest of its code cells (:func:`source_digest`).
``tests/test_notebooks.py`` checks that digest, so a code cell edited without re-running the
notebook fails the suite instead of showing outputs the code no longer produces.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import sys
from pathlib import Path

import nbformat

#: where the digest lives in the notebook's metadata
DIGEST_KEY = "btnk_source_sha256"


def source_digest(nb) -> str:
    """sha256 of the notebook's code cells, in order (their sources only, not their outputs)."""
    h = hashlib.sha256()
    for cell in nb.cells:
        if cell.cell_type == "code":
            h.update(cell.source.encode("utf-8") + b"\0")
    return h.hexdigest()


#: a stored animation larger than this (base64 characters) is scaled down
GIF_LIMIT = 200_000


def smaller_gif(b64: str, scale: float = 0.6, colors: int = 64) -> str:
    """The base64 GIF ``b64`` at ``scale`` of its size with a ``colors``-colour palette, same timing."""
    from PIL import Image, ImageSequence

    im = Image.open(io.BytesIO(base64.b64decode(b64)))
    size = (round(im.width * scale), round(im.height * scale))
    frames = [f.convert("RGB").resize(size, Image.LANCZOS).quantize(colors) for f in ImageSequence.Iterator(im)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=im.info.get("duration", 250),
                   loop=0, optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def slim(nb) -> None:
    """Keep the stored notebook small: where an output carries a picture both as PNG and as JPEG
    (a PIL image does), keep the JPEG only; scale large animations down (:func:`smaller_gif`)."""
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "image/png" in data and "image/jpeg" in data:
                del data["image/png"]
                out.get("metadata", {}).pop("image/png", None)
            if len(data.get("image/gif", "")) > GIF_LIMIT:
                data["image/gif"] = smaller_gif(data["image/gif"])


def execute(path: Path, timeout: int = 1800) -> None:
    import nbclient

    from btnk_env.models.files import atomic_write_text

    nb = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}}).execute()
    for cell in nb.cells:  # nbclient's per-cell timing metadata changes at every run
        cell.metadata.pop("execution", None)
    slim(nb)
    nb.metadata[DIGEST_KEY] = source_digest(nb)
    atomic_write_text(path, nbformat.writes(nb) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.notebook_outputs", description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    args = parser.parse_args(argv)
    for path in args.notebooks:
        print(f"executing {path}", flush=True)
        execute(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

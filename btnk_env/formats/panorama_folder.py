"""The PNG folder format (small panorama sets; what the original btnk_mae loader reads): the
``manifest.jsonl`` records, ``dataset_config.json``, ``images/NNNNNN.png`` (see :mod:`btnk_env.formats`)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from btnk_env.formats.common import CONFIG, DatasetFormatError, IMAGES_DIR, IMAGE_EXT, MANIFEST, atomic_write_json, read_json

__all__ = ['read_config', 'read_jsonl', 'read_manifest', 'write_config']

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- PNG folder
def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """The JSON objects of a JSON-lines file, with the torn-last-line rule (see the module docstring).

    Raises:
        DatasetFormatError: a line other than the last is not a JSON object (names file and line).
    """
    path = Path(path)
    with open(path, "rb") as fh:
        lines = fh.read().split(b"\n")
    last = max((n for n, raw in enumerate(lines) if raw.strip()), default=-1)
    out: list[dict] = []
    for n, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            value = read_json(raw, f"{path} line {n + 1}")
        except DatasetFormatError as err:
            if n == last:  # a crash cut the last line short: drop it
                logger.warning("%s: dropping a torn last line %d (%d bytes)", path, n + 1, len(raw))
                break
            raise DatasetFormatError(f"{err}; fix or delete that line (only a torn last line is dropped "
                                     "automatically)") from None
        if not isinstance(value, dict):
            raise DatasetFormatError(f"{path} line {n + 1} is not a JSON object")
        out.append(value)
    return out


def read_manifest(root: str | os.PathLike) -> list[dict]:
    """Records of a PNG folder's ``manifest.jsonl`` (``[]`` if it has none), in order.

    Each record has a ``file`` (relative to the folder); if it has an ``index``, it must equal
    the record's position. Files are not checked here (see :func:`btnk_env.training.datasets.panorama_files`
    and :func:`btnk_env.collection.collect.load_manifest`).

    Raises:
        DatasetFormatError: a damaged line that is not the last, a record without ``file``, or an
            index out of sequence (the message names file and line).
    """
    path = Path(root) / MANIFEST
    if not path.is_file():
        return []
    records = read_jsonl(path)
    for n, rec in enumerate(records):
        if not isinstance(rec.get("file"), str):
            raise DatasetFormatError(f"{path} record {n + 1} has no 'file': {json.dumps(rec)[:200]}")
        if "index" in rec and rec["index"] != n:
            raise DatasetFormatError(f"{path} record {n + 1} has index {rec['index']}, expected {n} "
                                     "(records must be in index order, once each)")
    return records


def read_config(root: str | os.PathLike) -> dict | None:
    """``dataset_config.json`` of a folder, or ``None`` if absent.

    Raises:
        DatasetFormatError: it is not a JSON object.
    """
    path = Path(root) / CONFIG
    if not path.is_file():
        return None
    value = read_json(path.read_bytes(), str(path))
    if not isinstance(value, dict):
        raise DatasetFormatError(f"{path} must hold a JSON object")
    return value


def write_config(root: str | os.PathLike, image_size: tuple[int, int], num_images: int, complete: bool,
                 settings: dict) -> None:
    """Atomically write a PNG folder's ``dataset_config.json``."""
    atomic_write_json(Path(root) / CONFIG, {
        "dataset_type": "panorama",
        "image_format": IMAGE_EXT,
        "image_size": list(image_size),
        "projection": "equirectangular",
        "num_images": int(num_images),
        "complete": bool(complete),
        "images_dir": IMAGES_DIR,
        "manifest": MANIFEST,
        "collection": settings,
    })



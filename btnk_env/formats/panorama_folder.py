"""The PNG folder format (small panorama sets; what the original btnk_mae loader reads): the
``manifest.jsonl`` records, ``dataset_config.json``, ``images/NNNNNN.png`` (see :mod:`btnk_env.formats`)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from btnk_env.formats.common import CONFIG, DatasetFormatError, IMAGES_DIR, IMAGE_EXT, MANIFEST, atomic_write_json, read_json, skipped_note

__all__ = ['Manifest', 'read_config', 'read_manifest', 'scan_manifest', 'write_config']

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- PNG folder
@dataclass
class Manifest:
    """What a ``manifest.jsonl`` holds: the intact records by frame index, and the lines that are not.

    A record's frame is its ``index``; a record without one is the frame after the previous line's.
    A damaged line (not JSON, not an object, no ``file``, an index out of order) costs that frame
    alone: it is named in :attr:`damaged`, every other record is kept.
    """

    path: Path
    records: dict[int, dict] = field(default_factory=dict)
    """frame index -> record, in rising index order"""
    damaged: list[str] = field(default_factory=list)
    """one ``"line 7: ..."`` per damaged line (a torn last line is dropped, not listed)"""

    def missing(self, total: int) -> list[int]:
        """Frames ``0 .. total - 1`` without an intact record."""
        return [i for i in range(total) if i not in self.records]

    def gaps(self, first: int = 5) -> tuple[int, list[int]]:
        """``(count, the first few)`` of the frames before the last record that have no record."""
        count = (max(self.records) + 1 - len(self.records)) if self.records else 0
        found: list[int] = []
        expect = 0
        for i in self.records:
            found += range(expect, min(i, expect + first - len(found)))
            expect = i + 1
            if len(found) >= first:
                break
        return count, found[:first]

    def report(self, more: Sequence[str] = ()) -> None:
        """Log one warning naming and counting what is skipped: damaged lines, frames without a
        record, and ``more`` (the caller's own findings, e.g. missing files). Silent if nothing is."""
        count, first = self.gaps()
        items = [*self.damaged, *more]
        if count > len(self.damaged):  # frames lost without a damaged line (a line removed)
            items.append(f"{count - len(self.damaged)} frame(s) without a line (first: {first})")
        if items:
            logger.warning(skipped_note(self.path, len(self.damaged) + len(more) + max(0, count - len(self.damaged)),
                                        "damaged or missing record(s)", "every other frame is kept", items,
                                        "re-run 'btnk-env collect' with the same settings on the folder "
                                        "(it re-renders only those)"))

    def in_order(self) -> list[dict]:
        return list(self.records.values())


def scan_manifest(root: str | os.PathLike) -> Manifest:
    """Read a PNG folder's ``manifest.jsonl`` (an empty :class:`Manifest` if it has none), reporting nothing.

    A torn LAST line (what a crash mid-write leaves) is dropped; any other bad line is listed in
    ``damaged`` and skipped.
    """
    path = Path(root) / MANIFEST
    manifest = Manifest(path)
    if not path.is_file():
        return manifest
    with open(path, "rb") as fh:
        lines = fh.read().split(b"\n")
    last_line = max((n for n, raw in enumerate(lines) if raw.strip()), default=-1)
    last, pending = -1, 0  # the previous record's frame, damaged lines since
    for n, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            rec = read_json(raw, f"line {n + 1}")
            if not isinstance(rec, dict) or not isinstance(rec.get("file"), str):
                raise DatasetFormatError(f"line {n + 1} is not a record with a 'file': {raw[:80]!r}")
            index = rec.get("index", last + 1 + pending)
            if type(index) is not int or index <= last:
                raise DatasetFormatError(f"line {n + 1} has index {str(index)[:20]}, after {last} "
                                         "(records are in index order, once each)")
        except DatasetFormatError as err:
            if n == last_line:  # a crash cut the last line short: drop it
                logger.info("%s: dropping a torn last line %d (%d bytes)", path, n + 1, len(raw))
                break
            manifest.damaged.append(str(err))
            pending += 1
            continue
        manifest.records[index] = rec
        last, pending = index, 0
    return manifest


def read_manifest(root: str | os.PathLike) -> list[dict]:
    """The intact records of a PNG folder's ``manifest.jsonl`` (``[]`` if it has none), in index order.

    Damaged lines are skipped and reported in one warning (:meth:`Manifest.report`). Files are not
    checked here (see :func:`btnk_env.training.datasets.panorama_files` and
    :func:`btnk_env.collection.collect.load_manifest`).
    """
    manifest = scan_manifest(root)
    manifest.report()
    return manifest.in_order()


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



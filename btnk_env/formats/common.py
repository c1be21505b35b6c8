"""What every on-disk format of the package shares: file and record names, the dataset errors, ownership
claims, locks, bounded JSON reading, PNG bytes.

The formats themselves are the other modules of :mod:`btnk_env.formats`."""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from btnk_env.models.errors import BtnkEnvError
from btnk_env.models.files import atomic_write_bytes, claim_dir, fsync_dir

CONFIG = "dataset_config.json"
MANIFEST = "manifest.jsonl"
IMAGES_DIR = "images"
INDEX = "index.json"
INDEX_FORMAT = "btnk-shards"
INDEX_VERSION = 1
IMAGE_EXT = "png"
RECORD_EXT = "json"
#: Keys of a collected frame's record (PNG folder manifest line; a shard sample's JSON adds the
#: SAMPLE_KEYS below).
RECORD_KEYS = ("index", "file", "scene", "seed", "position", "heading", "mode")
#: Keys every shard sample record holds; ``position`` is [x, y, z] metres, ``heading`` radians,
#: ``episode`` the scene segment (or recorded episode) and ``step`` the frame's place in it.
SAMPLE_KEYS = ("index", "scene", "seed", "position", "heading", "episode", "step")

#: owner-marker kinds of the two formats' folders
FOLDER_KIND = "panorama-folder"
SHARDS_KIND = "shard-set"
#: a JSON file (config, index, shard record) larger than this is refused unread
MAX_JSON_BYTES = 256 << 20

__all__ = ['CONFIG', 'CollectionLockedError', 'DatasetFormatError', 'FOLDER_KIND', 'IMAGES_DIR', 'IMAGE_EXT', 'INDEX', 'INDEX_FORMAT', 'INDEX_VERSION', 'MANIFEST', 'MAX_JSON_BYTES', 'RECORD_EXT', 'RECORD_KEYS', 'SAMPLE_KEYS', 'SHARDS_KIND', 'atomic_write_bytes', 'atomic_write_json', 'claim', 'exclusive_lock', 'frame_file', 'fsync_dir', 'is_locked', 'is_shard_spec', 'npy_header', 'npy_is_whole', 'part_index_name', 'png_bytes', 'read_json', 'sample_key', 'shard_name', 'skipped_note', 'warn_if_being_written']

logger = logging.getLogger(__name__)

_PART_RE = re.compile(r"^index-part-(\d{5})-of-(\d{5})\.json$")


class DatasetFormatError(BtnkEnvError):
    """A dataset file is damaged or inconsistent; the message names the file (and line) and the fix."""


class CollectionLockedError(BtnkEnvError):
    """Another process is writing to the same output."""


# ---------------------------------------------------------------------------- names
def frame_file(index: int) -> str:
    """Path of frame ``index`` in a PNG folder, relative to it: ``images/000012.png``."""
    return f"{IMAGES_DIR}/{index:06d}.png"


def sample_key(index: int) -> str:
    """webdataset key of sample ``index`` in a shard set: ``000000012``."""
    return f"{index:09d}"


def shard_name(k: int) -> str:
    """File name of shard ``k``: ``shard-000003.tar``."""
    return f"shard-{k:06d}.tar"


def part_index_name(part: int, num_parts: int) -> str:
    """Index file of collector ``part`` of ``num_parts`` (``index.json`` when there is one part)."""
    return INDEX if num_parts == 1 else f"index-part-{part:05d}-of-{num_parts:05d}.json"


def is_shard_spec(path: str) -> bool:
    """Does ``path`` name a shard set (a folder with ``index.json``, an index file, a ``.tar`` or a brace pattern)?"""
    p = Path(str(path)).expanduser()
    return ("{" in str(path) and str(path).endswith(".tar")) or p.suffix == ".tar" or (p / INDEX).is_file() or (
        p.is_file() and p.suffix == ".json" and p.name != CONFIG)


# ---------------------------------------------------------------------------- ownership
def _written_before_markers(root: Path) -> bool:
    """A dataset of ours from before folders were marked: our config or a shard index in it."""
    config = root / CONFIG
    try:
        if config.is_file():
            return "collection" in json.loads(config.read_text())
        return any(json.loads(p.read_text()).get("format") == INDEX_FORMAT
                   for p in [root / INDEX, *root.glob("index-part-*.json")] if p.is_file())
    except (OSError, ValueError, RecursionError, AttributeError):
        return False


def claim(root: str | os.PathLike, kind: str, settings: dict | None) -> Path:
    """Make ``root`` this writer's folder of ``kind`` (:func:`btnk_env.models.files.claim_dir`): absent, empty
    or ours with the same ``settings``; else a one-line :class:`~btnk_env.models.errors.NotOursError`."""
    return claim_dir(root, kind, "write to another --out", _written_before_markers, settings)


# ---------------------------------------------------------------------------- atomic files
def atomic_write_json(path: str | os.PathLike, value: Any) -> None:
    atomic_write_bytes(path, (json.dumps(value, indent=1) + "\n").encode())


@contextlib.contextmanager
def exclusive_lock(out_dir: str | os.PathLike, name: str = ".collect.lock") -> Iterator[Path]:
    """Hold an exclusive ``fcntl.flock`` on ``out_dir/name`` or raise :class:`CollectionLockedError`.

    The lock is released when the process dies (even by SIGKILL); the lock file itself stays.
    """
    path = Path(out_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+")
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise CollectionLockedError(f"another process is writing to {out_dir} (it holds {path}); wait for it to "
                                    "finish or write to another --out") from None
    try:
        yield path
    finally:
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        fh.close()


def is_locked(out_dir: str | os.PathLike, name: str | None = None) -> bool:
    """Whether a writer holds :func:`exclusive_lock` on ``out_dir`` now: on ``name``, or with ``None``
    on any of the folder's lock files (``.collect.lock``, a shard index's, an encode rank's). Never
    creates a lock file."""
    paths = [Path(out_dir) / name] if name is not None else sorted(Path(out_dir).glob(".*.lock"))
    for path in paths:
        try:
            fh = open(path, "rb")
        except OSError:
            continue
        with fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    return False


def skipped_note(root: Any, count: int, what: str, kept: str, items: Sequence[str], fix: str = "") -> str:
    """The one warning a reader logs for what it skipped: ``"ROOT: COUNT WHAT skipped, KEPT: the first
    five of ITEMS[ ...][; FIX]"``, e.g. ``skipped_note(root, 2, "damaged shard(s)", "every other shard is
    read", names)``."""
    names = "; ".join(items[:5]) + (" ..." if len(items) > 5 else "")
    return f"{root}: {count} {what} skipped{', ' + kept if kept else ''}: {names}{'; ' + fix if fix else ''}"


def warn_if_being_written(root: str | os.PathLike, what: str) -> bool:
    """Log one warning if a writer holds a lock on ``root`` (:func:`is_locked`): a reader then reads the
    ``what`` (frames, shards, episodes) complete so far. Every reader of a dataset calls this."""
    if not is_locked(root):
        return False
    logger.warning("%s is still being written (a collector or recorder holds its lock): reading the %s complete "
                   "so far", root, what)
    return True


def npy_header(fh: Any) -> tuple[tuple, np.dtype, int]:
    """``(shape, dtype, offset of the data)`` of the ``.npy`` whose bytes ``fh`` reads, from its header only.

    Raises:
        ValueError: not an ``.npy`` header.
    """
    major, _ = np.lib.format.read_magic(fh)
    read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
    shape, _, dtype = read(fh)
    return tuple(shape), dtype, fh.tell()


def npy_is_whole(path: str | os.PathLike, rows: int | None = None) -> bool:
    """Whether ``path`` is an ``.npy`` file exactly as long as its header says (of ``rows`` rows if
    given): a truncated or torn file is not. Reads the header only."""
    try:
        with open(path, "rb") as fh:
            shape, dtype, offset = npy_header(fh)
            size = os.fstat(fh.fileno()).st_size
    except (OSError, ValueError, EOFError, SyntaxError):
        return False
    return (rows is None or (len(shape) > 0 and shape[0] == rows)) and size == offset + int(np.prod(shape)) * dtype.itemsize


def png_bytes(rgb: np.ndarray) -> bytes:
    """``rgb: (H, W, 3)`` uint8 -> lossless PNG bytes (zlib level 1: fast, ~same size as 6 on renders)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def read_json(data: bytes | str, where: str) -> Any:
    """``json.loads`` with one-line errors: not JSON, nested too deeply, or too large, naming ``where``.

    Raises:
        DatasetFormatError: the text cannot be a record of ours.
    """
    if len(data) > MAX_JSON_BYTES:
        raise DatasetFormatError(f"{where} is {len(data)} bytes of JSON, over the {MAX_JSON_BYTES} limit")
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetFormatError(f"{where} is not valid JSON ({err})") from None
    except RecursionError:
        raise DatasetFormatError(f"{where} is JSON nested too deeply to be a record of ours") from None



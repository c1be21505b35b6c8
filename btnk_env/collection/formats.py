"""The on-disk panorama dataset formats: file names, record keys, and the one reader of each.

Collection (:mod:`btnk_env.collection.collect`), the shard writer (:mod:`btnk_env.collection.shards`),
training (:mod:`training.datasets`, :mod:`training.shard_stream`) and evaluation import these names;
nothing else spells them.

**PNG folder** (small sets; what the original btnk_mae loader reads)::

    out/
      dataset_config.json   {"dataset_type": "panorama", "image_size": [H, W], "num_images": n,
                             "complete": bool, "collection": settings, ...}
      manifest.jsonl        one record per frame, in index order, each with a "file"
      images/000000.png     (H, W, 3) RGB, lossless PNG

**Shard set** (large sets; webdataset tar shards)::

    out/
      index.json                          {"format": "btnk-shards", "version": 1, "image_size": [H, W],
                                           "num_samples": n, "shards": [{"file", "first", "count", "bytes"}],
                                           "collection": settings}
      shard-000000.tar                    per sample "<key>.png" (lossless RGB) + "<key>.json" (its record)
      index-part-00000-of-00004.json      one collector's index when a collection is split over
                                          machines (``--num-shards 4``); merged into index.json

A sample key is the sample's global index, zero-padded (``000001234``; webdataset keys must not
contain dots). Its record is a JSON object holding at least :data:`SAMPLE_KEYS`; writers may add
any other JSON keys (an episode recorder adds ``action``, ``reward``, ``terminated``,
``truncated``; readers pass unknown keys through).

Ownership: a collector, converter or merger writes only into a folder that is absent, empty, or one
it created (the :data:`models.files.OWNER_MARKER` of kind :data:`FOLDER_KIND` / :data:`SHARDS_KIND`,
recording the settings that decide its contents); another writer's settings are refused before any
work, naming what differs (:func:`claim`).

Damage rules, the same for every reader:

- ``manifest.jsonl``: a torn LAST line (no final newline, or not JSON: what a crash mid-write
  leaves) is dropped; a bad line anywhere else is a :class:`DatasetFormatError` naming the file
  and the line.
- ``dataset_config.json`` ``num_images`` is exact only when ``complete`` is true (a killed
  collector cannot update it); readers count the manifest, never trust ``num_images``.
- ``index.json`` is only ever replaced atomically, so it is whole; a shard it lists that is missing,
  of another size than recorded, or not a readable tar is a :class:`DatasetFormatError` naming the
  shard.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import logging
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from models.errors import BtnkEnvError
from models.files import atomic_write_bytes, claim_dir, fsync_dir

__all__ = [
    "CONFIG", "MANIFEST", "IMAGES_DIR", "INDEX", "RECORD_KEYS", "SAMPLE_KEYS", "DatasetFormatError",
    "CollectionLockedError", "ShardEntry", "ShardSet", "frame_file", "sample_key", "shard_name",
    "part_index_name", "read_jsonl", "read_manifest", "read_config", "write_config", "read_index",
    "write_index", "open_shard_set", "iter_shard", "png_bytes", "atomic_write_bytes", "atomic_write_json",
    "exclusive_lock", "is_shard_spec", "index_entries", "part_indexes", "fsync_dir", "FOLDER_KIND", "SHARDS_KIND",
    "claim", "read_json", "MAX_JSON_BYTES", "is_locked",
]

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
    """Make ``root`` this writer's folder of ``kind`` (:func:`models.files.claim_dir`): absent, empty
    or ours with the same ``settings``; else a one-line :class:`~models.errors.NotOursError`."""
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


def is_locked(out_dir: str | os.PathLike, name: str = ".collect.lock") -> bool:
    """Whether a writer holds :func:`exclusive_lock` on ``out_dir`` now (a reader says it reads a
    dataset still being written). Never creates the lock file."""
    path = Path(out_dir) / name
    try:
        fh = open(path, "rb")
    except OSError:
        return False
    with fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    return False


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
    the record's position. Files are not checked here (see :func:`training.datasets.panorama_files`
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


# ---------------------------------------------------------------------------- shard sets
@dataclass(frozen=True)
class ShardEntry:
    """One shard in an index: ``count`` samples with global indices ``first .. first+count-1``."""

    file: str
    """Path relative to the index's folder."""
    first: int
    count: int
    bytes: int

    def to_json(self) -> dict:
        return {"file": self.file, "first": self.first, "count": self.count, "bytes": self.bytes}


@dataclass
class ShardSet:
    """A resolved shard set: absolute shard paths, their counts, the image size (if known)."""

    root: Path
    shards: list[ShardEntry]
    image_size: tuple[int, int] | None
    settings: dict | None = None

    @property
    def num_samples(self) -> int:
        return sum(s.count for s in self.shards)

    def path(self, entry: ShardEntry) -> Path:
        return self.root / entry.file


def read_index(path: str | os.PathLike) -> dict:
    """An index file (``index.json`` or a part index) as a dict, validated.

    Raises:
        DatasetFormatError: not a btnk shard index.
    """
    path = Path(path)
    try:
        value = read_json(path.read_bytes(), f"shard index {path}")
    except OSError as err:
        raise DatasetFormatError(f"cannot read shard index {path}: {err}") from None
    if not isinstance(value, dict) or value.get("format") != INDEX_FORMAT:
        raise DatasetFormatError(f"{path} is not a shard index (no \"format\": \"{INDEX_FORMAT}\")")
    if value.get("version") != INDEX_VERSION:
        raise DatasetFormatError(f"{path} has index version {value.get('version')}; this reader knows {INDEX_VERSION}")
    return value


def write_index(path: str | os.PathLike, shards: list[ShardEntry], image_size: tuple[int, int] | None,
                settings: dict | None, **extra: Any) -> None:
    """Atomically write an index listing ``shards`` (sorted by ``first``)."""
    shards = sorted(shards, key=lambda s: s.first)
    atomic_write_json(path, {
        "format": INDEX_FORMAT, "version": INDEX_VERSION,
        "image_size": list(image_size) if image_size else None,
        "num_samples": sum(s.count for s in shards),
        "num_shards": len(shards),
        "shards": [s.to_json() for s in shards],
        "collection": settings,
        **extra,
    })


def index_entries(value: dict, path: Path) -> list[ShardEntry]:
    """The shard entries of an index dict (read from ``path``, named in errors)."""
    try:
        return [ShardEntry(str(s["file"]), int(s["first"]), int(s["count"]), int(s["bytes"])) for s in value["shards"]]
    except (KeyError, TypeError, ValueError) as err:
        raise DatasetFormatError(f"{path}: malformed shard entry ({err})") from None


def open_shard_set(spec: str | os.PathLike, check: bool = True) -> ShardSet:
    """Resolve a shard set from a folder holding ``index.json``, an index file, one ``.tar``, or a
    brace pattern (``data/rooms/shard-{000000..000009}.tar``).

    Counts come from the index (the pattern's folder's ``index.json`` if it lists the shards),
    otherwise from reading the tar headers.

    Args:
        check: verify every shard exists and has the size the index records.

    Raises:
        DatasetFormatError: no index and no shards, a listed shard missing or of another size.
    """
    text = str(spec)
    p = Path(text).expanduser()
    if p.is_dir():
        if not (p / INDEX).is_file():
            parts = sorted(q.name for q in p.glob("index-part-*.json"))
            hint = (f"; it has part indexes {parts[:3]}...: merge them with 'btnk-env collect --merge-index {p}'"
                    if parts else "")
            raise DatasetFormatError(f"{p} has no {INDEX}{hint}")
        p = p / INDEX
    if p.suffix == ".json":
        value = read_index(p)
        size = value.get("image_size")
        shard_set = ShardSet(p.parent, index_entries(value, p), tuple(size) if size else None, value.get("collection"))
    else:
        import braceexpand

        files = [Path(f).expanduser() for f in braceexpand.braceexpand(text)]
        root = files[0].parent
        known: dict[str, ShardEntry] = {}
        image_size = None
        settings = None
        if (root / INDEX).is_file():
            value = read_index(root / INDEX)
            known = {e.file: e for e in index_entries(value, root / INDEX)}
            image_size = tuple(value["image_size"]) if value.get("image_size") else None
            settings = value.get("collection")
        entries, first = [], 0
        for f in files:
            rel = os.path.relpath(f, root)
            if rel in known:
                entries.append(known[rel])
                continue
            if not f.is_file():
                raise DatasetFormatError(f"shard {f} (from {text}) does not exist")
            count = sum(1 for _ in iter_shard(f))
            entries.append(ShardEntry(rel, first, count, f.stat().st_size))
            first += count
        shard_set = ShardSet(root, entries, image_size, settings)
    if not shard_set.shards:
        raise DatasetFormatError(f"{spec} lists no shards")
    if check:
        for e in shard_set.shards:
            f = shard_set.path(e)
            if not f.is_file():
                raise DatasetFormatError(f"the index lists {f}, which does not exist; copy it back or re-run "
                                         "'btnk-env collect' with the same settings on that folder (it rewrites missing shards)")
            if f.stat().st_size != e.bytes:
                raise DatasetFormatError(f"{f} has {f.stat().st_size} bytes, the index says {e.bytes}: truncated or "
                                         "modified; re-run 'btnk-env collect' with the same settings to rewrite it")
    return shard_set


def iter_shard(path: str | os.PathLike, skip_data: bool = False) -> Iterator[tuple[str, dict[str, bytes]]]:
    """``(key, {"png": bytes, "json": bytes, ...})`` for each sample of a tar shard, in file order.

    Members are grouped by key as webdataset does (the name up to the first dot). With
    ``skip_data``, the dict maps extensions to ``b""`` (counts without reading image data).

    Raises:
        DatasetFormatError: the tar is truncated or not a tar (names the shard).
    """
    path = Path(path)
    key, sample = None, {}
    try:
        limit = path.stat().st_size
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                if member.issparse() or member.size > limit:  # bytes it would expand to, not what it holds
                    raise DatasetFormatError(f"shard {path}: member {member.name[:80]!r} claims {member.size} bytes "
                                             f"({'sparse' if member.issparse() else 'more than the file holds'}); "
                                             "btnk-env never writes such members: remove that shard from the set")
                if not member.isfile():
                    continue
                name = member.name.rsplit("/", 1)[-1]
                k, _, ext = name.partition(".")
                if k != key and key is not None:
                    yield key, sample
                    sample = {}
                key = k
                if skip_data:
                    sample[ext] = b""
                else:
                    fh = tar.extractfile(member)
                    data = fh.read() if fh is not None else b""
                    if len(data) != member.size:
                        raise tarfile.ReadError(f"member {member.name} truncated")
                    sample[ext] = data
            # a tar cut at a header boundary reads as a shorter archive: a whole one ends with
            # two zero blocks after its last member
            if path.stat().st_size - tar.offset < 1024:
                raise tarfile.ReadError(f"no end-of-archive marker after {tar.offset} bytes")
    except (tarfile.TarError, EOFError, OSError) as err:
        raise DatasetFormatError(f"shard {path} is truncated or not a tar file ({err}); re-run 'btnk-env collect' "
                                 "with the same settings to rewrite it, or remove it from the index") from None
    if key is not None:
        yield key, sample


def part_indexes(folder: str | os.PathLike) -> dict[int, tuple[int, Path]]:
    """``{part: (num_parts, path)}`` of the ``index-part-*`` files in ``folder``."""
    out = {}
    for p in Path(folder).glob("index-part-*.json"):
        m = _PART_RE.match(p.name)
        if m:
            out[int(m.group(1))] = (int(m.group(2)), p)
    return out

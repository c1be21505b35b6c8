"""Writing webdataset tar shards: atomically, with an index, resumable; merging indexes.

API for other modules (the panorama collector, an episode recorder)::

    from btnk_env.collection.shards import ShardWriter

    with ShardWriter("data/episodes", image_size=(128, 256), max_count=1000, max_bytes=1 << 30,
                     settings={"what": "episodes", "env": "PanoramaRooms"}) as writer:
        start = writer.num_samples              # samples already stored (a resumed writer)
        for i in range(start, total):
            writer.write(sample_key(i), rgb, {"index": i, "scene": ..., "seed": ..., "position": ...,
                         "heading": ..., "episode": e, "step": t, "action": a, "reward": r,
                         "terminated": False, "truncated": False})
            # writer.flush_shard() closes the open shard early (e.g. at an episode's end)

- ``write(key, image, record)``: ``key`` is the sample's webdataset key (no dots or slashes;
  :func:`~btnk_env.collection.formats.sample_key` of its global index keeps shards sorted),
  ``image`` a ``(H, W, 3)`` uint8 array or PNG bytes (stored as they are), ``record`` any
  JSON-serialisable dict (see :data:`~btnk_env.collection.formats.SAMPLE_KEYS`; extra keys welcome).
- A shard is closed when it holds ``max_count`` samples or ``max_bytes`` bytes: its tar is
  written to a hidden temporary name, fsynced and renamed to ``shard-NNNNNN.tar``; then the index
  (``index.json``, or ``index_name``) is rewritten atomically. A reader therefore never sees a
  partial shard, and the index only lists complete ones.
- Resuming: a new ``ShardWriter`` on the same folder with the same ``settings`` continues after
  the last indexed shard; ``num_samples`` says how many samples are stored. Samples of a shard
  that was open when the process died are not stored: write them again from ``num_samples``
  (no duplicate, no gap). Other ``settings`` are refused; so is a second writer on the same
  folder and index (``fcntl.flock``).
- Shards are reproducible byte for byte (fixed mtime, owner and mode in the tar headers).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from btnk_env.collection import formats as F
from models.errors import NotOursError
from models.files import settings_diff

__all__ = ["ShardWriter", "write_shard", "load_index_entries", "merge_indexes", "remove_stale_temporaries"]

logger = logging.getLogger(__name__)

TAR_BLOCK = 512


def _as_png(image: Any) -> bytes:
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image)
    return F.png_bytes(np.asarray(image))


def _png_size(data: bytes) -> tuple[int, int]:
    """``(H, W)`` from a PNG header (no decode)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("image bytes are not a PNG")
    return int.from_bytes(data[20:24], "big"), int.from_bytes(data[16:20], "big")


class _OpenShard:
    """A shard being written to a hidden temporary file; :meth:`commit` makes it visible atomically."""

    def __init__(self, path: Path) -> None:
        from webdataset import TarWriter

        self.path = path
        self.tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        self.fh = open(self.tmp, "wb")
        self.tar = TarWriter(self.fh, encoder=False, mtime=0, user="btnk", group="btnk", mode=0o444)
        self.count, self.bytes = 0, 2 * TAR_BLOCK * 10  # a tar ends with at least 10 KiB of padding

    def add(self, key: str, png: bytes, record: dict) -> None:
        if not key or "." in key or "/" in key:
            raise ValueError(f"sample key must be non-empty without '.' or '/', got {key!r}")
        meta = json.dumps(record, sort_keys=True).encode()
        self.tar.write({"__key__": key, F.IMAGE_EXT: png, F.RECORD_EXT: meta})
        self.count += 1
        self.bytes += sum(TAR_BLOCK + -(-len(v) // TAR_BLOCK) * TAR_BLOCK for v in (png, meta))

    def commit(self) -> int:
        """Close, fsync, rename; returns the shard's size in bytes."""
        self.tar.close()  # writes the end-of-archive blocks; leaves our file handle open
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        os.replace(self.tmp, self.path)
        F.fsync_dir(self.path.parent)
        return self.path.stat().st_size

    def abort(self) -> None:
        try:
            self.fh.close()
        finally:
            self.tmp.unlink(missing_ok=True)


def write_shard(path: str | os.PathLike, samples: Iterable[tuple[str, Any, dict]]) -> tuple[int, int]:
    """Write ``(key, image, record)`` samples to the tar ``path`` atomically; ``(count, bytes)``."""
    shard = _OpenShard(Path(path))
    try:
        for key, image, record in samples:
            shard.add(key, _as_png(image), record)
        return shard.count, shard.commit()
    except BaseException:
        shard.abort()
        raise


def remove_stale_temporaries(out_dir: str | os.PathLike) -> int:
    """Delete the hidden ``.shard-*.tmp*`` files a killed writer left (call while holding the lock)."""
    n = 0
    for tmp in Path(out_dir).glob(".shard-*.tar.tmp*"):
        tmp.unlink(missing_ok=True)
        n += 1
    return n


def load_index_entries(index_path: Path, settings: dict | None, image_size: Sequence[int] | None
                       ) -> list[F.ShardEntry]:
    """Entries of an existing index whose shard file is intact, after checking its settings.

    Raises:
        ValueError: the index was written with other settings or image size.
    """
    if not index_path.is_file():
        return []
    value = F.read_index(index_path)
    if settings is not None and value.get("collection") is not None and value["collection"] != settings:
        raise F.DatasetFormatError(f"{index_path} was written with different settings "
                                   f"({settings_diff(value['collection'], settings)}); use another folder, or the "
                                   "same settings to resume")
    if image_size is not None and value.get("image_size") and list(value["image_size"]) != list(image_size):
        raise ValueError(f"{index_path} holds {value['image_size'][0]}x{value['image_size'][1]} images, "
                         f"not {image_size[0]}x{image_size[1]}; use another folder")
    kept = []
    for e in F.index_entries(value, index_path):
        f = index_path.parent / e.file
        if f.is_file() and f.stat().st_size == e.bytes:
            kept.append(e)
        else:
            logger.warning("%s lists %s, which is missing or of another size: it will be written again", index_path, f)
    return kept


class ShardWriter:
    """Sequential, resumable writer of a shard set (see the module docstring for the API).

    Args:
        out_dir: the shard set's folder (created if needed).
        image_size: ``(H, W)`` every image must have; ``None``: taken from the first image.
        max_count: samples per shard.
        max_bytes: shard size limit in bytes (a shard closes before it would exceed it; one sample
            larger than the limit gets a shard of its own).
        settings: what produced the samples (stored in the index; a resume must match).
        index_name: the index file (``index.json``).

    Example:
        >>> import tempfile, numpy as np
        >>> from btnk_env.collection.formats import open_shard_set, sample_key
        >>> d = tempfile.mkdtemp()
        >>> with ShardWriter(d, image_size=(16, 32), max_count=2) as w:
        ...     for i in range(5):
        ...         w.write(sample_key(i), np.zeros((16, 32, 3), np.uint8), {"index": i})
        >>> s = open_shard_set(d); [e.count for e in s.shards], s.num_samples
        ([2, 2, 1], 5)
    """

    def __init__(self, out_dir: str | os.PathLike, image_size: Sequence[int] | None = None, max_count: int = 1000,
                 max_bytes: int = 1 << 30, settings: dict | None = None, index_name: str = F.INDEX) -> None:
        if max_count < 1 or max_bytes < 1:
            raise ValueError(f"max_count and max_bytes must be >= 1, got {max_count}, {max_bytes}")
        self.out_dir = F.claim(out_dir, F.SHARDS_KIND, settings)  # new, empty, or ours with these settings
        self.max_count, self.max_bytes, self.settings = int(max_count), int(max_bytes), settings
        self.index_path = self.out_dir / index_name
        self._lock = F.exclusive_lock(self.out_dir, f".{index_name}.lock")
        self._lock.__enter__()
        try:
            remove_stale_temporaries(self.out_dir)
            self.image_size = tuple(int(v) for v in image_size) if image_size is not None else None
            self.entries = load_index_entries(self.index_path, settings, self.image_size)
            if self.image_size is None and self.index_path.is_file():
                size = F.read_index(self.index_path).get("image_size")
                self.image_size = tuple(size) if size else None
            # continue after the last complete shard; anything after a gap is dropped from the index
            keep, expected = [], 0
            for e in sorted(self.entries, key=lambda e: e.first):
                if e.first != expected:
                    break
                keep.append(e)
                expected += e.count
            self.entries = keep
        except BaseException:
            self._lock.__exit__(None, None, None)
            raise
        self._next_shard = max((int(Path(e.file).stem.split("-")[-1]) + 1 for e in self.entries), default=0)
        self._open: _OpenShard | None = None
        self._pending_first = self.num_samples

    @property
    def num_samples(self) -> int:
        """Samples stored in complete shards."""
        return sum(e.count for e in self.entries)

    def write(self, key: str, image: Any, record: dict) -> None:
        """Add one sample (see the module docstring)."""
        png = _as_png(image)
        size = _png_size(png)
        if self.image_size is None:
            self.image_size = size
        elif size != tuple(self.image_size):
            raise ValueError(f"sample {key}: image is {size[0]}x{size[1]}, the shard set holds "
                             f"{self.image_size[0]}x{self.image_size[1]}")
        grow = 2 * TAR_BLOCK + sum(-(-n // TAR_BLOCK) * TAR_BLOCK for n in (len(png), 200))
        if self._open is not None and self._open.count and self._open.bytes + grow > self.max_bytes:
            self.flush_shard()
        if self._open is None:
            self._open = _OpenShard(self.out_dir / F.shard_name(self._next_shard))
        self._open.add(key, png, record)
        if self._open.count >= self.max_count:
            self.flush_shard()

    def flush_shard(self) -> None:
        """Close the open shard now (no-op if none) and rewrite the index."""
        if self._open is None:
            return
        shard, self._open = self._open, None
        size = shard.commit()
        self.entries.append(F.ShardEntry(shard.path.name, self._pending_first, shard.count, size))
        self._pending_first += shard.count
        self._next_shard += 1
        F.write_index(self.index_path, self.entries, self.image_size, self.settings)

    def close(self) -> None:
        """Close the open shard and write the index (always, so an empty set has an index too)."""
        try:
            self.flush_shard()
            F.write_index(self.index_path, self.entries, self.image_size, self.settings)
        finally:
            self._lock.__exit__(None, None, None)

    def abort(self) -> None:
        """Drop the open shard (its samples are not stored) and release the folder."""
        try:
            if self._open is not None:
                self._open.abort()
                self._open = None
        finally:
            self._lock.__exit__(None, None, None)

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def merge_indexes(out_dir: str | os.PathLike, sources: Sequence[str | os.PathLike] = ()) -> Path:
    """Merge the part indexes of a collection split over machines into ``out_dir/index.json``.

    Args:
        out_dir: where ``index.json`` is written; shard paths in it are relative to this folder.
        sources: folders holding ``index-part-*-of-*.json`` files (default: ``out_dir``), e.g.
            one per machine when each wrote to its own disk.

    Raises:
        ValueError: a part is missing, the parts disagree on settings or image size, or two
            parts list the same samples.
    """
    out = Path(out_dir)
    folders = [Path(s) for s in sources] or [out]
    parts: dict[int, tuple[int, Path]] = {}
    for folder in folders:
        for part, (n, path) in F.part_indexes(folder).items():
            if part in parts:
                raise ValueError(f"part {part} appears twice: {parts[part][1]} and {path}")
            parts[part] = (n, path)
    if not parts:
        raise ValueError(f"no index-part-*.json in {', '.join(map(str, folders))}")
    totals = {n for n, _ in parts.values()}
    if len(totals) != 1:
        raise ValueError(f"the part indexes disagree on the number of parts: {sorted(totals)}")
    total = totals.pop()
    missing = sorted(set(range(total)) - set(parts))
    if missing:
        raise ValueError(f"parts {missing} of {total} have no index yet (is their collector finished?)")
    entries: list[F.ShardEntry] = []
    settings = image_size = None
    for part in range(total):
        path = parts[part][1]
        value = F.read_index(path)
        if value.get("complete") is False:
            raise ValueError(f"{path}: collector {part} has not finished; re-run it, then merge")
        part_settings = dict(value.get("collection") or {})
        part_settings.pop("shard_index", None)
        if settings is None:
            settings, image_size = part_settings, value.get("image_size")
        elif part_settings != settings or value.get("image_size") != image_size:
            raise ValueError(f"{path} was collected with other settings or image size than part 0")
        for e in F.index_entries(value, path):
            rel = os.path.relpath(path.parent / e.file, out)
            entries.append(F.ShardEntry(rel, e.first, e.count, e.bytes))
    entries.sort(key=lambda e: e.first)
    for a, b in zip(entries, entries[1:]):
        if b.first < a.first + a.count:
            raise ValueError(f"{a.file} and {b.file} overlap (samples {b.first}..{a.first + a.count - 1})")
    if (out / F.INDEX).is_file() and "merged_parts" not in (F.read_index(out / F.INDEX).get("collection") or {}):
        raise NotOursError(f"{out / F.INDEX} is the index of a shard set that was not merged from parts; it is never "
                           "replaced: merge into another --out")
    F.claim(out, F.SHARDS_KIND, settings)  # the parts' folder, or a new one
    F.write_index(out / F.INDEX, entries, tuple(image_size) if image_size else None,
                  {**(settings or {}), "merged_parts": total})
    return out / F.INDEX

"""The shard-set format (large sets; webdataset tar shards): names, the index, the reader and the writer.

Writing webdataset tar shards: atomically, with an index, resumable; merging indexes.

API for other modules (the panorama collector, an episode recorder)::

    from btnk_env.formats.shards import ShardWriter

    with ShardWriter("data/episodes", image_size=(128, 256), max_count=1000, max_bytes=1 << 30,
                     settings={"what": "episodes", "env": "PanoramaRooms"}) as writer:
        start = writer.num_samples              # samples already stored (a resumed writer)
        for i in range(start, total):
            writer.write(sample_key(i), rgb, {"index": i, "scene": ..., "seed": ..., "position": ...,
                         "heading": ..., "episode": e, "step": t, "action": a, "reward": r,
                         "terminated": False, "truncated": False})
            # writer.flush_shard() closes the open shard early (e.g. at an episode's end)

- ``write(key, image, record)``: ``key`` is the sample's webdataset key (no dots or slashes;
  :func:`~btnk_env.formats.sample_key` of its global index keeps shards sorted),
  ``image`` a ``(H, W, 3)`` uint8 array or PNG bytes (stored as they are), ``record`` any
  JSON-serialisable dict (see :data:`~btnk_env.formats.SAMPLE_KEYS`; extra keys welcome).
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
import tarfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from btnk_env.models.errors import NotOursError
from btnk_env.models.files import fsync_dir, settings_diff
from btnk_env.formats.common import DatasetFormatError, IMAGE_EXT, INDEX, INDEX_FORMAT, INDEX_VERSION, RECORD_EXT, SHARDS_KIND, _PART_RE, atomic_write_json, claim, exclusive_lock, png_bytes, read_json, shard_name, skipped_note, warn_if_being_written

__all__ = ['OpenShard', 'ShardEntry', 'ShardSet', 'ShardWriter', 'TAR_BLOCK', 'index_entries', 'iter_shard', 'load_index_entries', 'merge_indexes', 'open_shard_set', 'part_indexes', 'read_index', 'remove_stale_temporaries', 'write_index', 'write_shard']

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- shard sets
@dataclass(frozen=True)
class ShardEntry:
    """One shard in an index: ``count`` samples with global indices ``first .. first+count-1``."""

    file: str
    """Path relative to the index's folder."""
    first: int
    count: int
    bytes: int
    episodes: "tuple[int, int] | None" = None
    """``(first episode, count)`` of a shard of recorded episodes (:mod:`btnk_env.formats.episode_shards`)."""

    def to_json(self) -> dict:
        out = {"file": self.file, "first": self.first, "count": self.count, "bytes": self.bytes}
        return out if self.episodes is None else {**out, "episodes": list(self.episodes)}


@dataclass
class ShardSet:
    """A resolved shard set: absolute shard paths, their counts, the image size (if known)."""

    root: Path
    shards: list[ShardEntry]
    image_size: tuple[int, int] | None
    settings: dict | None = None
    damaged: list[str] = field(default_factory=list)
    """one line per listed shard that was skipped (malformed entry, missing, of another size)"""

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


def index_entries(value: dict, path: Path, damaged: list[str] | None = None) -> list[ShardEntry]:
    """The shard entries of an index dict (read from ``path``, named in errors).

    Args:
        damaged: if given, a malformed entry is skipped and named here instead of raising.
    """
    shards = value.get("shards")
    if not isinstance(shards, list):
        raise DatasetFormatError(f"{path}: \"shards\" is not a list of shard entries")
    entries = []
    for n, s in enumerate(shards):
        try:
            entries.append(ShardEntry(str(s["file"]), int(s["first"]), int(s["count"]), int(s["bytes"]),
                                      tuple(int(v) for v in s["episodes"]) if s.get("episodes") is not None else None))
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            if damaged is None:
                raise DatasetFormatError(f"{path}: malformed shard entry {n} ({err})") from None
            damaged.append(f"entry {n}: malformed ({type(err).__name__}: {err})")
    return entries


def open_shard_set(spec: str | os.PathLike, check: bool = True) -> ShardSet:
    """Resolve a shard set from a folder holding ``index.json``, an index file, one ``.tar``, or a
    brace pattern (``data/rooms/shard-{000000..000009}.tar``).

    Counts come from the index (the pattern's folder's ``index.json`` if it lists the shards),
    otherwise from reading the tar headers.

    Args:
        check: verify every shard exists and has the size the index records.

    A listed shard that is missing or of another size than recorded (or a malformed entry) costs
    its own samples alone: it is skipped, named in :attr:`ShardSet.damaged` and in one warning.
    A set a collector is still writing is read as far as it is complete, with a warning.

    Raises:
        DatasetFormatError: no index, or no intact shard.
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
    damaged: list[str] = []
    if p.suffix == ".json":
        value = read_index(p)
        size = value.get("image_size")
        shard_set = ShardSet(p.parent, index_entries(value, p, damaged), tuple(size) if size else None,
                             value.get("collection"))
    else:
        import braceexpand

        files = [Path(f).expanduser() for f in braceexpand.braceexpand(text)]
        root = files[0].parent
        known: dict[str, ShardEntry] = {}
        image_size = None
        settings = None
        if (root / INDEX).is_file():
            value = read_index(root / INDEX)
            known = {e.file: e for e in index_entries(value, root / INDEX, damaged)}
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
    if check:
        intact = []
        for e in shard_set.shards:
            f = shard_set.path(e)
            if not f.is_file():
                damaged.append(f"{e.file}: missing")
            elif f.stat().st_size != e.bytes:
                damaged.append(f"{e.file}: {f.stat().st_size} bytes, the index says {e.bytes} (truncated or modified)")
            else:
                intact.append(e)
        shard_set.shards = intact
    shard_set.damaged = damaged
    if damaged:
        logger.warning(skipped_note(spec, len(damaged), "damaged shard(s)", "every other shard is read", damaged,
                                    "re-run 'btnk-env collect' with the same settings on that folder (it rewrites only those)"))
    if not shard_set.shards:
        raise DatasetFormatError(f"{spec} lists no " + ("intact " if damaged else "") + "shards")
    warn_if_being_written(shard_set.root, "shards")
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


# ---------------------------------------------------------------------------- writing shards


TAR_BLOCK = 512


def _as_png(image: Any) -> bytes:
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image)
    return png_bytes(np.asarray(image))


def _png_size(data: bytes) -> tuple[int, int]:
    """``(H, W)`` from a PNG header (no decode)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("image bytes are not a PNG")
    return int.from_bytes(data[20:24], "big"), int.from_bytes(data[16:20], "big")


class OpenShard:
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
        self.tar.write({"__key__": key, IMAGE_EXT: png, RECORD_EXT: meta})
        self.count += 1
        self.bytes += sum(TAR_BLOCK + -(-len(v) // TAR_BLOCK) * TAR_BLOCK for v in (png, meta))

    def commit(self) -> int:
        """Close, fsync, rename; returns the shard's size in bytes."""
        self.tar.close()  # writes the end-of-archive blocks; leaves our file handle open
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        os.replace(self.tmp, self.path)
        fsync_dir(self.path.parent)
        return self.path.stat().st_size

    def abort(self) -> None:
        try:
            self.fh.close()
        finally:
            self.tmp.unlink(missing_ok=True)


def write_shard(path: str | os.PathLike, samples: Iterable[tuple[str, Any, dict]]) -> tuple[int, int]:
    """Write ``(key, image, record)`` samples to the tar ``path`` atomically; ``(count, bytes)``."""
    shard = OpenShard(Path(path))
    try:
        for key, image, record in samples:
            shard.add(key, _as_png(image), record)
        return shard.count, shard.commit()
    except BaseException:
        shard.abort()
        raise


def remove_stale_temporaries(out_dir: str | os.PathLike, shards: Sequence[str] | None = None) -> int:
    """Delete the hidden ``.shard-*.tmp*`` files a killed writer left (call while holding the lock):
    of the ``shards`` named (one part's, when parts share the folder), or of every shard."""
    n = 0
    names = ["shard-*.tar"] if shards is None else list(shards)
    for tmp in (t for name in names for t in Path(out_dir).glob(f".{name}.tmp*")):
        tmp.unlink(missing_ok=True)
        n += 1
    return n


def load_index_entries(index_path: Path, settings: dict | None, image_size: Sequence[int] | None
                       ) -> list[ShardEntry]:
    """Entries of an existing index whose shard file is intact, after checking its settings.

    Raises:
        ValueError: the index was written with other settings or image size.
    """
    if not index_path.is_file():
        return []
    value = read_index(index_path)
    if settings is not None and value.get("collection") is not None and value["collection"] != settings:
        raise DatasetFormatError(f"{index_path} was written with different settings "
                                   f"({settings_diff(value['collection'], settings)}); use another folder, or the "
                                   "same settings to resume")
    if image_size is not None and value.get("image_size") and list(value["image_size"]) != list(image_size):
        raise ValueError(f"{index_path} holds {value['image_size'][0]}x{value['image_size'][1]} images, "
                         f"not {image_size[0]}x{image_size[1]}; use another folder")
    kept, damaged = [], []
    entries = index_entries(value, index_path, damaged)
    for line in damaged:
        logger.warning("%s: %s: its shard will be written again", index_path, line)
    for e in entries:
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
        >>> from btnk_env.formats import open_shard_set, sample_key
        >>> d = tempfile.mkdtemp()
        >>> with ShardWriter(d, image_size=(16, 32), max_count=2) as w:
        ...     for i in range(5):
        ...         w.write(sample_key(i), np.zeros((16, 32, 3), np.uint8), {"index": i})
        >>> s = open_shard_set(d); [e.count for e in s.shards], s.num_samples
        ([2, 2, 1], 5)
    """

    def __init__(self, out_dir: str | os.PathLike, image_size: Sequence[int] | None = None, max_count: int = 1000,
                 max_bytes: int = 1 << 30, settings: dict | None = None, index_name: str = INDEX) -> None:
        if max_count < 1 or max_bytes < 1:
            raise ValueError(f"max_count and max_bytes must be >= 1, got {max_count}, {max_bytes}")
        self.out_dir = claim(out_dir, SHARDS_KIND, settings)  # new, empty, or ours with these settings
        self.max_count, self.max_bytes, self.settings = int(max_count), int(max_bytes), settings
        self.index_path = self.out_dir / index_name
        self._lock = exclusive_lock(self.out_dir, f".{index_name}.lock")
        self._lock.__enter__()
        try:
            remove_stale_temporaries(self.out_dir)
            self.image_size = tuple(int(v) for v in image_size) if image_size is not None else None
            self.entries = load_index_entries(self.index_path, settings, self.image_size)
            if self.image_size is None and self.index_path.is_file():
                size = read_index(self.index_path).get("image_size")
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
        self._open: OpenShard | None = None
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
            self._open = OpenShard(self.out_dir / shard_name(self._next_shard))
        self._open.add(key, png, record)
        if self._open.count >= self.max_count:
            self.flush_shard()

    def flush_shard(self) -> None:
        """Close the open shard now (no-op if none) and rewrite the index."""
        if self._open is None:
            return
        shard, self._open = self._open, None
        size = shard.commit()
        self.entries.append(ShardEntry(shard.path.name, self._pending_first, shard.count, size))
        self._pending_first += shard.count
        self._next_shard += 1
        write_index(self.index_path, self.entries, self.image_size, self.settings)

    def close(self) -> None:
        """Close the open shard and write the index (always, so an empty set has an index too)."""
        try:
            self.flush_shard()
            write_index(self.index_path, self.entries, self.image_size, self.settings)
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
        for part, (n, path) in part_indexes(folder).items():
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
    entries: list[ShardEntry] = []
    settings = image_size = None
    for part in range(total):
        path = parts[part][1]
        value = read_index(path)
        if value.get("complete") is False:
            raise ValueError(f"{path}: collector {part} has not finished; re-run it, then merge")
        part_settings = dict(value.get("collection") or {})
        part_settings.pop("shard_index", None)
        if settings is None:
            settings, image_size = part_settings, value.get("image_size")
        elif part_settings != settings or value.get("image_size") != image_size:
            raise ValueError(f"{path} was collected with other settings or image size than part 0")
        for e in index_entries(value, path):
            rel = os.path.relpath(path.parent / e.file, out)
            entries.append(replace(e, file=rel))
    entries.sort(key=lambda e: e.first)
    for a, b in zip(entries, entries[1:]):
        if b.first < a.first + a.count:
            raise ValueError(f"{a.file} and {b.file} overlap (samples {b.first}..{a.first + a.count - 1})")
    if (out / INDEX).is_file() and "merged_parts" not in (read_index(out / INDEX).get("collection") or {}):
        raise NotOursError(f"{out / INDEX} is the index of a shard set that was not merged from parts; it is never "
                           "replaced: merge into another --out")
    claim(out, SHARDS_KIND, settings)  # the parts' folder, or a new one
    write_index(out / INDEX, entries, tuple(image_size) if image_size else None,
                  {**(settings or {}), "merged_parts": total})
    return out / INDEX

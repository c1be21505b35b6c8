"""The latent dataset format written by ``btnk-env encode`` (:mod:`btnk_env.training.encode`) and read by
:class:`LatentDataset` / :class:`btnk_env.training.latent_episodes.LatentWindows`. This module owns the file names.

Folder layout::

    out_dir/
      latents.json          metadata (META_KEYS): model name and sha256, input size, latent width,
                            precision, dtype, chunk size, source dataset, complete
      chunks/000000.npy     (n, D) latents of frames [k * chunk_size, k * chunk_size + n) ...
      chunks/000000.done    {"start", "count"}: written after its .npy, the chunk is complete
      latents.npy           (N, D) float16 or float32, every frame, in source order (memory-mappable)
      keys.json             panoramas: the sample key (file relative to the dataset) of each row
      -- episodes (arrays of N rows, one per frame, "observation-aligned") --
      actions.npy           (N,) int64: the action taken at the frame; -1 at an episode's last frame
      rewards.npy           (N,) float32: its reward (0 at the last frame)
      terminated.npy        (N,) bool; truncated.npy (N,) bool: the flags of that step
      poses.npy             (N, 4) float32: x, y, z metres and heading radians at the frame
      episode_offsets.npy   (E + 1,) int64: episode e is rows [offsets[e], offsets[e + 1])
      goals.npy             (E, 3) float32: goal position of each episode
      episodes.json         per-episode records of the source (seed, scene, return, success, ...)

Everything is written atomically (temp file, fsync, rename); ``latents.json`` says
``"complete": true`` only once every array is in place.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from btnk_env.formats.common import DatasetFormatError, npy_is_whole, read_json
from btnk_env.models.errors import BtnkEnvError
from btnk_env.models.files import atomic_write_bytes as _atomic_write_bytes

__all__ = ["LatentDataset", "read_meta", "write_meta", "save_npy", "write_chunk", "chunk_is_done", "read_chunk", "damaged_files",
           "FORMAT", "META", "LATENTS", "KEYS", "EPISODE_ARRAYS", "COMPAT_KEYS"]

FORMAT = "btnk_env.latents/1"
META = "latents.json"
LATENTS = "latents.npy"
KEYS = "keys.json"
EPISODES = "episodes.json"
OFFSETS = "episode_offsets.npy"
GOALS = "goals.npy"
CHUNKS = "chunks"
#: per-frame episode arrays: name -> dtype
EPISODE_ARRAYS = {"actions": np.int64, "rewards": np.float32, "terminated": np.bool_, "truncated": np.bool_,
                  "poses": np.float32}
#: metadata that must match for an encode to continue an existing output: the model (its hash,
#: :func:`btnk_env.training.encode.model_sha256`) and the source (``source_fingerprint``: a hash of its
#: index or manifest and settings) bind a latent dataset to what it encodes; another is refused, never mixed
COMPAT_KEYS = ("kind", "model_sha256", "source_fingerprint", "img_size", "latent_dim", "precision", "dtype",
               "chunk_size", "source_settings")
#: owner-marker kind of a latent dataset folder (:func:`btnk_env.models.files.claim_dir`)
KIND = "latent-dataset"


def written_before_markers(root: Path) -> bool:
    """A latent dataset of ours from before folders were marked (its ``latents.json`` is ours)."""
    try:
        return read_meta(root) is not None
    except ValueError:
        return False


def read_meta(root: "str | os.PathLike") -> dict | None:
    """``latents.json`` of ``root``, or ``None`` if absent."""
    path = Path(root) / META
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise ValueError(f"{path} is not valid JSON ({type(err).__name__}): not written by btnk-env encode; "
                         "use another --out") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a btnk-env latent dataset (format {FORMAT}); use another --out")
    return meta


def write_json(path: "str | os.PathLike", value: Any, indent: int | None = None) -> None:
    _atomic_write_bytes(Path(path), (json.dumps(value, indent=indent) + "\n").encode())


def write_meta(root: "str | os.PathLike", meta: dict) -> None:
    write_json(Path(root) / META, meta, indent=2)


def save_npy(path: "str | os.PathLike", array: np.ndarray) -> None:
    """``np.save`` atomically (temp file in the same folder, fsync, rename)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    _atomic_write_bytes(Path(path), buf.getvalue())


def _chunk_paths(root: Path, k: int) -> tuple[Path, Path]:
    base = Path(root) / CHUNKS / f"{k:06d}"
    return base.with_suffix(".npy"), base.with_suffix(".done")


def write_chunk(root: "str | os.PathLike", k: int, start: int, latents: np.ndarray) -> None:
    """Store chunk ``k`` (``latents`` ``(n, D)``, frames ``start .. start + n - 1``), then its done-marker."""
    npy, done = _chunk_paths(Path(root), k)
    npy.parent.mkdir(parents=True, exist_ok=True)
    save_npy(npy, latents)
    _atomic_write_bytes(done, json.dumps({"start": int(start), "count": int(len(latents))}).encode())


def chunk_is_done(root: "str | os.PathLike", k: int, start: int, count: int) -> bool:
    """Whether chunk ``k`` is stored whole for frames ``start .. start + count - 1``."""
    npy, done = _chunk_paths(Path(root), k)
    if not (done.is_file() and npy.is_file()):
        return False
    try:
        marker = json.loads(done.read_text())
    except json.JSONDecodeError:
        return False
    return marker == {"start": start, "count": count} and npy_is_whole(npy, count)


def damaged_files(root: "str | os.PathLike", meta: dict) -> list[str]:
    """The files of the complete latent dataset ``root`` (metadata ``meta``) that are missing or
    damaged (an array not as long as its header says, of another row count, JSON that does not
    parse), by name; ``[]`` if it is whole. Reads headers only."""
    root, n = Path(root), int(meta.get("num_frames", -1))
    rows = {LATENTS: n}
    if meta.get("kind") == "episodes":
        rows.update({f"{name}.npy": n for name in EPISODE_ARRAYS}, **{OFFSETS: None, GOALS: None})
    bad = [name for name, count in rows.items() if not npy_is_whole(root / name, count)]
    for name in (EPISODES,) if meta.get("kind") == "episodes" else (KEYS,):
        try:
            read_json((root / name).read_bytes(), str(root / name))
        except (OSError, DatasetFormatError):
            bad.append(name)
    return bad


def read_chunk(root: "str | os.PathLike", k: int) -> np.ndarray:
    return np.load(_chunk_paths(Path(root), k)[0], allow_pickle=False)


class LatentDataset:
    """A latent dataset folder (layout in the module docstring), its arrays memory-mapped.

    Attributes:
        meta: the ``latents.json`` metadata.
        latents: ``(N, D)`` float16/float32 memory map.
        keys: panoramas: the sample key of each row (``None`` for episodes).
        actions, rewards, terminated, truncated, poses, offsets, goals: episodes only (else ``None``).

    Raises:
        ValueError: the folder is not a complete latent dataset (the message says how to make one).
    """

    def __init__(self, root: "str | os.PathLike", mmap: bool = True) -> None:
        self.root = Path(root)
        meta = read_meta(self.root)
        if meta is None or not meta.get("complete"):
            raise ValueError(f"{self.root} holds no complete latent dataset ({META} missing or not complete): "
                             f"run btnk-env encode DATASET --out {self.root}")
        self.meta = meta
        damaged = damaged_files(self.root, meta)
        if damaged:
            raise BtnkEnvError(f"{self.root}: {', '.join(damaged)} missing or damaged (truncated, or not what "
                               f"{META} says); run the same btnk-env encode into {self.root} again: it rebuilds "
                               "them from the stored chunks, re-encoding only damaged ones")
        mode = "r" if mmap else None
        load = lambda name: np.load(self.root / name, mmap_mode=mode, allow_pickle=False)  # noqa: E731
        self.latents = load(LATENTS)
        self.keys: list[str] | None = None
        self.actions = self.rewards = self.terminated = self.truncated = self.poses = None
        self.offsets = self.goals = None
        self.episodes: list[dict] | None = None
        if meta["kind"] == "episodes":
            for name in EPISODE_ARRAYS:
                setattr(self, name, load(f"{name}.npy"))
            self.offsets = np.load(self.root / OFFSETS)
            self.goals = np.load(self.root / GOALS)
            self.episodes = read_json((self.root / EPISODES).read_bytes(), str(self.root / EPISODES))
            self._check_episodes()
        else:
            self.keys = read_json((self.root / KEYS).read_bytes(), str(self.root / KEYS))

    def _check_episodes(self) -> None:
        """Offsets monotone from 0 to N (each episode at least 2 frames), every array of N rows."""
        n, off = len(self.latents), self.offsets
        if off.ndim != 1 or len(off) < 2 or off[0] != 0 or off[-1] != n or np.any(np.diff(off) < 2):
            raise BtnkEnvError(f"{self.root / OFFSETS} must rise from 0 to {n} (the latents' rows) by at least 2 "
                               "per episode; the folder is damaged: encode the episodes again")
        for name in EPISODE_ARRAYS:
            if len(getattr(self, name)) != n:
                raise BtnkEnvError(f"{self.root / name}.npy has {len(getattr(self, name))} rows, the latents {n}; "
                                   "the folder is damaged: encode the episodes again")
        if len(self.goals) != len(off) - 1:
            raise BtnkEnvError(f"{self.root / GOALS} has {len(self.goals)} rows for {len(off) - 1} episodes")

    def check_finite(self, rows: int = 1 << 16) -> None:
        """Raise :class:`~btnk_env.models.errors.BtnkEnvError` if a latent is NaN or infinite (read in blocks of ``rows``)."""
        for a in range(0, len(self.latents), rows):
            block = np.asarray(self.latents[a:a + rows])
            if not np.isfinite(block).all():
                bad = a + int(np.argmin(np.isfinite(block).all(axis=1)))
                raise BtnkEnvError(f"{self.root / LATENTS} row {bad} is not finite (NaN or infinity); encode the "
                                   "dataset again")

    @property
    def kind(self) -> str:
        return self.meta["kind"]

    @property
    def latent_dim(self) -> int:
        return int(self.meta["latent_dim"])

    @property
    def num_episodes(self) -> int:
        return 0 if self.offsets is None else len(self.offsets) - 1

    def __len__(self) -> int:
        return int(self.latents.shape[0])

    def episode(self, e: int) -> dict[str, Any]:
        """Episode ``e``: ``latents (T+1, D)`` float32, ``actions (T,)``, ``rewards (T,)``,
        ``terminated (T,)``, ``truncated (T,)``, ``poses (T+1, 4)``, ``goal (3,)``."""
        if self.offsets is None:
            raise ValueError(f"{self.root} holds single panoramas, not episodes")
        lo, hi = int(self.offsets[e]), int(self.offsets[e + 1])
        return {"latents": np.asarray(self.latents[lo:hi], np.float32), "actions": np.asarray(self.actions[lo:hi - 1]),
                "rewards": np.asarray(self.rewards[lo:hi - 1]), "terminated": np.asarray(self.terminated[lo:hi - 1]),
                "truncated": np.asarray(self.truncated[lo:hi - 1]), "poses": np.asarray(self.poses[lo:hi]),
                "goal": np.asarray(self.goals[e])}

"""The episode dataset format: one :class:`Episode` record, the writer interface, the folder writer
and its reader. This module owns the file names and keys; the recorder
(:mod:`btnk_env.collection.episodes`) writes through :class:`EpisodeWriter` and the encoder
(:mod:`btnk_env.training.encode`) reads through :class:`EpisodeFolder`.

Folder layout::

    out_dir/
      dataset_config.json    {"dataset_type": "episodes", "format_version": 1, "image_size": [H, W],
                              "action_space": "Discrete(3)", "collection": {...settings...}}
      episodes.jsonl         one JSON line per complete episode (see EPISODE_KEYS)
      episodes/000000/000000.png ... 0000T.png   the T+1 panoramas seen (before each action, then the last)
      episodes/000000/steps.npz                  actions (T,) int64, rewards (T,) float32,
                                                 terminated (T,) bool, truncated (T,) bool,
                                                 positions (T+1, 3) float64, headings (T+1,) float64

An episode is written whole into a temporary folder beside it (every file fsynced), renamed to
``episodes/000007`` and only then given its ``episodes.jsonl`` line (appended and fsynced), so a
killed recording leaves complete episodes plus at most one stale temporary folder, which the next
writer removes before writing the missing episodes.

Ownership and damage: the writer claims the folder (:func:`btnk_env.models.files.claim_dir`, kind
:data:`KIND`, with the recording settings) and holds its lock while writing. A damaged record (an
index line that is not a whole record, a folder without its frames, a ``steps.npz`` that is
missing, truncated, of other lengths than the record's ``num_steps``, with actions outside the
action space or non-finite rewards) costs that record alone: readers skip it and report it by
name and count (:func:`scan_index`), the writer records it again; no complete episode and nothing
the writer did not create is ever removed.

Another storage plugs in by implementing :class:`EpisodeWriter` (``num_complete()``,
``write(index, episode)``, ``close()``): the shard set of :mod:`btnk_env.formats.episode_shards` does.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from btnk_env.formats.common import DatasetFormatError, exclusive_lock, npy_header, read_json, skipped_note, warn_if_being_written
from btnk_env.formats.common import png_bytes as _png_bytes
from btnk_env.models.errors import NotOursError
from btnk_env.models.files import atomic_write_bytes as _atomic_write_bytes
from btnk_env.models.files import claim_dir, clean_stale_temps, fsync_dir, settings_diff, swap_dir_into_place, temp_name

__all__ = ["Episode", "EpisodeWriter", "EpisodeFolderWriter", "EpisodeFolder", "is_episode_dataset",
           "DATASET_TYPE", "CONFIG", "INDEX"]

logger = logging.getLogger(__name__)

DATASET_TYPE = "episodes"
FORMAT_VERSION = 1
CONFIG = "dataset_config.json"
INDEX = "episodes.jsonl"
EPISODES_DIR = "episodes"
STEPS_FILE = "steps.npz"
#: keys of an ``episodes.jsonl`` line
EPISODE_KEYS = ("index", "dir", "num_steps", "seed", "scene", "goal", "return", "success", "terminated", "truncated")
#: owner-marker kind of an episode folder
KIND = "episode-dataset"
_STEP_ARRAYS = ("actions", "rewards", "terminated", "truncated", "positions", "headings")


@dataclass
class Episode:
    """One episode of ``T`` steps.

    Attributes:
        frames: ``(T+1, H, W, 3)`` uint8, the observation before each action, then the last one.
        actions: ``(T,)`` int64, the action taken at ``frames[t]``.
        rewards: ``(T,)`` float32, the reward of ``actions[t]``.
        terminated, truncated: ``(T,)`` bool, the flags returned by ``step(actions[t])``.
        positions: ``(T+1, 3)`` float64 ``x, y, z`` metres of the agent at each frame.
        headings: ``(T+1,)`` float64 radians at each frame.
        seed: the ``reset(seed=...)`` that started the episode.
        scene: the environment's scene id.
        goal: ``(3,)`` goal position in metres.
        extra: further JSON-able information (the policy's name, the layout seed).
    """

    frames: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    positions: np.ndarray
    headings: np.ndarray
    seed: int
    scene: str
    goal: np.ndarray
    extra: dict = field(default_factory=dict)

    @property
    def num_steps(self) -> int:
        return int(len(self.actions))

    def check(self) -> "Episode":
        """Validate shapes and dtypes; returns self. Raises ``ValueError`` naming the bad field."""
        t = self.num_steps
        if t < 1:
            raise ValueError("an episode needs at least one step")
        f = np.asarray(self.frames)
        if f.dtype != np.uint8 or f.ndim != 4 or f.shape[0] != t + 1 or f.shape[-1] != 3:
            raise ValueError(f"frames must be (T+1={t + 1}, H, W, 3) uint8, got {f.shape} {f.dtype}")
        for name, shape in (("rewards", (t,)), ("terminated", (t,)), ("truncated", (t,)),
                            ("positions", (t + 1, 3)), ("headings", (t + 1,)), ("goal", (3,))):
            if np.shape(getattr(self, name)) != shape:
                raise ValueError(f"{name} must have shape {shape}, got {np.shape(getattr(self, name))}")
        return self

    def step_arrays(self) -> dict[str, np.ndarray]:
        return {"actions": np.asarray(self.actions, np.int64), "rewards": np.asarray(self.rewards, np.float32),
                "terminated": np.asarray(self.terminated, bool), "truncated": np.asarray(self.truncated, bool),
                "positions": np.asarray(self.positions, np.float64), "headings": np.asarray(self.headings, np.float64)}


class EpisodeWriter(Protocol):
    """Where the recorder puts episodes. Episodes are written in index order, each one whole."""

    def num_complete(self) -> int:
        """How many episodes (0 .. n-1) are stored completely: recording resumes at this index."""

    def write(self, index: int, episode: Episode) -> None:
        """Store episode ``index`` (== ``num_complete()``, or one of ``missing()``) atomically."""

    # optional: ``missing(total) -> list[int]``, the episodes of ``0 .. total-1`` to (re-)write;
    # without it the recorder writes ``num_complete() .. total-1``

    def close(self) -> None:
        """Finish (update the dataset's config)."""


def _episode_dir(index: int) -> str:
    return f"{EPISODES_DIR}/{index:06d}"


def _read_config(root: Path) -> dict | None:
    path = root / CONFIG
    if not path.is_file():
        return None
    value = read_json(path.read_bytes(), str(path))
    return value if isinstance(value, dict) else None


def is_episode_dataset(root: "str | os.PathLike") -> bool:
    """Whether ``root`` holds an episode dataset (its config says ``dataset_type: episodes``)."""
    config = _read_config(Path(root))
    return config is not None and config.get("dataset_type") == DATASET_TYPE


def _num_actions(action_space: Any) -> "tuple[int, int] | None":
    """``(start, n)`` of a ``"Discrete(n)"`` / ``"Discrete(n, start=s)"`` action space, else ``None``."""
    m = re.fullmatch(r"Discrete\((\d+)(?:, start=(-?\d+))?\)", str(action_space))
    return (int(m.group(2) or 0), int(m.group(1))) if m else None


def _header_shape(data: zipfile.ZipFile, name: str) -> tuple:
    """The shape an ``.npy`` member of an ``.npz`` declares, read from its header only."""
    with data.open(name) as fh:
        return npy_header(fh)[0]


def check_steps(path: Path, num_steps: int, action_space: Any) -> dict[str, np.ndarray]:
    """The step arrays of ``path`` (a ``steps.npz``) for an episode of ``num_steps`` steps, validated.

    Every array's shape is read from its header and checked against ``num_steps`` before any data
    is read (a count in the index never decides an allocation); then :func:`check_step_values`.

    Raises:
        DatasetFormatError: the file is missing, not an ``.npz``, or fails a check (named).
    """
    t = int(num_steps)
    try:
        with zipfile.ZipFile(path) as data:
            for name, shape in step_shapes(t).items():
                found = _header_shape(data, f"{name}.npy")
                if found != shape:
                    raise DatasetFormatError(f"{path}: {name} has shape {found}, the index says {t} steps ({shape})")
        with np.load(path, allow_pickle=False) as data:
            steps = {k: data[k] for k in _STEP_ARRAYS}
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError) as err:
        if isinstance(err, DatasetFormatError):
            raise
        raise DatasetFormatError(f"{path} is missing, truncated or not a steps file ({type(err).__name__}: "
                                 f"{str(err)[:120]})") from None
    return check_step_values(steps, action_space, str(path))


def step_shapes(num_steps: int) -> dict[str, tuple]:
    """The shape of each step array of an episode of ``num_steps`` steps."""
    t = int(num_steps)
    return {"actions": (t,), "rewards": (t,), "terminated": (t,), "truncated": (t,), "positions": (t + 1, 3),
            "headings": (t + 1,)}


def check_step_values(steps: dict[str, np.ndarray], action_space: Any, where: str) -> dict[str, np.ndarray]:
    """``steps`` (shapes already checked) if its actions lie in ``action_space`` and its rewards,
    positions and headings are finite; else a :class:`DatasetFormatError` naming ``where``."""
    space = _num_actions(action_space)
    actions = steps["actions"]
    if actions.dtype.kind not in "iu" or (space is not None and actions.size
                                          and (actions.min() < space[0] or actions.max() >= space[0] + space[1])):
        raise DatasetFormatError(f"{where}: actions {actions.min()}..{actions.max()} ({actions.dtype}) are not in "
                                 f"the dataset's action space {action_space}")
    for name in ("rewards", "positions", "headings"):
        if not np.isfinite(steps[name]).all():
            raise DatasetFormatError(f"{where}: {name} holds non-finite values")
    return steps


def episode_record(index: int, episode: Episode) -> dict[str, Any]:
    """The record of episode ``index`` (:data:`EPISODE_KEYS` but ``dir``, plus ``episode.extra``)."""
    return {"index": index, "num_steps": episode.num_steps, "seed": int(episode.seed), "scene": str(episode.scene),
            "goal": [float(v) for v in episode.goal], "return": float(np.sum(episode.rewards, dtype=np.float64)),
            "success": bool(episode.terminated[-1]), "terminated": bool(episode.terminated[-1]),
            "truncated": bool(episode.truncated[-1]), **episode.extra}


def scan_index(root: Path, config: dict | None) -> tuple[list[dict], list[str]]:
    """The complete episodes of an episode folder, by index, and the damaged records, by name.

    A record is complete when its ``episodes.jsonl`` line is a JSON object with every key, its
    index is new, and its folder holds ``num_steps + 1`` frames and a valid ``steps.npz``
    (:func:`check_steps`). Anything else is one damaged record (``"episodes.jsonl line 3: ..."``):
    it costs itself alone; every other record is kept.
    """
    path = root / INDEX
    if not path.exists():
        return [], []
    space = (config or {}).get("action_space")
    records: dict[int, dict] = {}
    damaged: list[str] = []
    with open(path, "rb") as fh:
        lines = fh.read().split(b"\n")
    for n, line in enumerate(lines):
        if not line.strip():
            continue
        where = f"{path} line {n + 1}"
        try:
            rec = read_json(line, where)
            if not isinstance(rec, dict) or any(k not in rec for k in EPISODE_KEYS):
                raise DatasetFormatError(f"{where} is not a complete episode record")
            i, t = rec["index"], rec["num_steps"]
            if not (isinstance(i, int) and isinstance(t, int) and i >= 0 and t >= 1) or rec["dir"] != _episode_dir(i):
                raise DatasetFormatError(f"{where}: index {i!r}, num_steps {t!r} or dir {rec['dir']!r} is invalid")
            if i in records:
                raise DatasetFormatError(f"{where}: episode {i} is listed twice")
            folder = root / rec["dir"]
            if not (folder / f"{t:06d}.png").is_file() or (folder / f"{t + 1:06d}.png").exists():
                raise DatasetFormatError(f"{folder} does not hold the {t + 1} frames its record says")
            check_steps(folder / STEPS_FILE, t, space)
        except DatasetFormatError as err:
            damaged.append(str(err))
            continue
        records[i] = rec
    if damaged:
        logger.warning(skipped_note(root, len(damaged), "damaged episode record(s)", "every other episode is kept", damaged))
    return [records[i] for i in sorted(records)], damaged


def _recognise(root: Path) -> bool:
    """An episode folder of ours from before folders were marked."""
    try:
        return is_episode_dataset(root)
    except DatasetFormatError:
        return False


class EpisodeFolderWriter:
    """Writes episodes into an episode folder (layout in the module docstring), resuming what is there.

    The folder must be new, empty, or one this writer created with the same settings (checked
    before any work); the writer holds its lock until :meth:`close`. A damaged or missing episode
    is written again (:meth:`missing`); no complete one, and nothing the writer did not create, is
    ever removed.

    Args:
        root: the dataset folder (created if needed).
        image_size: ``(H, W)`` of the frames.
        action_space: ``repr`` of the world's action space (``"Discrete(3)"``).
        settings: the collection settings; a folder recorded with other settings is refused
            (resuming must reproduce the same episodes).
    """

    def __init__(self, root: "str | os.PathLike", image_size: tuple[int, int], action_space: str, settings: dict) -> None:
        self.root = Path(root)
        config = _read_config(self.root) if self.root.is_dir() else None
        if config is not None:
            if config.get("dataset_type") != DATASET_TYPE:
                raise NotOursError(f"{self.root} holds a {config.get('dataset_type')!r} dataset, not episodes: "
                                   "record episodes into another folder")
            if config.get("collection") != settings:
                raise DatasetFormatError(f"{self.root} was recorded with different settings "
                                         f"({settings_diff(config.get('collection') or {}, settings)}); use another "
                                         "folder or the same settings to resume")
        claim_dir(self.root, KIND, "record episodes into another --out", _recognise, settings)
        self._lock = exclusive_lock(self.root)
        self._lock.__enter__()
        try:
            (self.root / EPISODES_DIR).mkdir(exist_ok=True)
            clean_stale_temps(self.root / EPISODES_DIR, ".??????.tmp")  # what a killed writer left (ours only)
            self.image_size, self.action_space, self.settings = tuple(int(v) for v in image_size), action_space, settings
            self._records = {r["index"]: r for r in scan_index(self.root, {"action_space": action_space})[0]}
            self._rewrite_index()
            self._write_config()
        except BaseException:
            self._lock.__exit__(None, None, None)
            raise

    def _rewrite_index(self) -> None:
        """The index lists the complete episodes only (a damaged line, reported already, is dropped)."""
        body = "".join(json.dumps(self._records[i]) + "\n" for i in sorted(self._records))
        index = self.root / INDEX
        if not index.exists() or index.read_text(encoding="utf-8") != body:
            _atomic_write_bytes(index, body.encode())

    def _write_config(self) -> None:
        records = list(self._records.values())
        config = {"dataset_type": DATASET_TYPE, "format_version": FORMAT_VERSION, "image_size": list(self.image_size),
                  "action_space": self.action_space, "num_episodes": len(records),
                  "num_frames": sum(r["num_steps"] + 1 for r in records), "index": INDEX,
                  "collection": self.settings}
        _atomic_write_bytes(self.root / CONFIG, (json.dumps(config, indent=2) + "\n").encode())

    def num_complete(self) -> int:
        """Episodes ``0 .. n-1`` are complete (the first missing index)."""
        return next(i for i in range(len(self._records) + 1) if i not in self._records)

    def missing(self, total: int) -> list[int]:
        """The episodes of ``0 .. total-1`` not stored completely: what a resumed recording writes."""
        return [i for i in range(total) if i not in self._records]

    def write(self, index: int, episode: Episode) -> None:
        if index in self._records:
            raise ValueError(f"episode {index} is stored already; write the missing ones ({self.missing(index + 1)})")
        episode.check()
        if tuple(episode.frames.shape[1:3]) != self.image_size:
            raise ValueError(f"frames are {episode.frames.shape[1:3]}, the dataset holds {self.image_size}")
        final = self.root / _episode_dir(index)
        tmp = temp_name(final)
        tmp.mkdir()
        try:
            for t, frame in enumerate(episode.frames):
                _atomic_write_bytes(tmp / f"{t:06d}.png", _png_bytes(np.ascontiguousarray(frame)))
            buf = io.BytesIO()
            np.savez(buf, **episode.step_arrays())
            _atomic_write_bytes(tmp / STEPS_FILE, buf.getvalue())
            fsync_dir(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        swap_dir_into_place(tmp, final)  # an incomplete episode of ours there (not in the index) is replaced
        rec = {"index": index, "dir": _episode_dir(index), **episode_record(index, episode)}
        with open(self.root / INDEX, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(rec) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self._records[index] = rec

    def close(self) -> None:
        try:
            self._write_config()
        finally:
            self._lock.__exit__(None, None, None)


class EpisodeFolder:
    """Reads an episode folder: its complete episodes, their frames and step arrays.

    Attributes:
        episodes: the records of the complete episodes, by index (:func:`scan_index`).
        damaged: one line per damaged record that was skipped (logged with their count).

    Raises:
        ValueError: ``root`` is not an episode dataset, or holds no complete episode.

    Example:
        >>> import tempfile
        >>> root = tempfile.mkdtemp()
        >>> writer = EpisodeFolderWriter(root, (16, 32), "Discrete(3)", {"policy": "random"})
        >>> ep = Episode(np.zeros((3, 16, 32, 3), np.uint8), np.array([0, 1]), np.zeros(2), np.array([False, True]),
        ...              np.zeros(2, bool), np.zeros((3, 3)), np.zeros(3), seed=0, scene="s", goal=np.zeros(3))
        >>> writer.write(0, ep); writer.close()
        >>> data = EpisodeFolder(root)
        >>> len(data), data.num_frames, data.steps(0)["actions"].tolist()
        (1, 3, [0, 1])
    """

    def __init__(self, root: "str | os.PathLike") -> None:
        self.root = Path(root)
        config = _read_config(self.root)
        if config is None or config.get("dataset_type") != DATASET_TYPE:
            raise ValueError(f"{self.root} is not an episode dataset (no {CONFIG} with dataset_type 'episodes'): "
                             "record one with btnk-env collect --mode episodes")
        self.config = config
        warn_if_being_written(self.root, "episodes")
        self.episodes, self.damaged = scan_index(self.root, config)
        if not self.episodes:
            raise ValueError(f"{self.root} holds no complete episodes: record some with "
                             f"btnk-env collect --mode episodes --out {self.root} --num-episodes N")
        self.image_size = tuple(config["image_size"])

    def __len__(self) -> int:
        return len(self.episodes)

    @property
    def num_frames(self) -> int:
        return sum(r["num_steps"] + 1 for r in self.episodes)

    def frame_files(self, i: int) -> list[Path]:
        """The ``T+1`` PNG files of episode ``i``, in order."""
        rec = self.episodes[i]
        return [self.root / rec["dir"] / f"{t:06d}.png" for t in range(rec["num_steps"] + 1)]

    frame_sources = frame_files  # what the encoder decodes (an episode shard set gives PNG bytes)

    def steps(self, i: int) -> dict[str, np.ndarray]:
        """The step arrays of episode ``i`` (see the module docstring)."""
        with np.load(self.root / self.episodes[i]["dir"] / STEPS_FILE) as data:
            return {k: data[k] for k in _STEP_ARRAYS}

    def load(self, i: int) -> Episode:
        """Episode ``i`` with its frames decoded."""
        from btnk_env.models.image_file import read_image

        rec = self.episodes[i]
        frames = np.stack([read_image(p) for p in self.frame_files(i)])
        extra = {k: v for k, v in rec.items() if k not in EPISODE_KEYS}
        return Episode(frames=frames, **self.steps(i), seed=rec["seed"], scene=rec["scene"],
                       goal=np.asarray(rec["goal"], np.float64), extra=extra)

    def describe(self) -> dict[str, Any]:
        return {"path": str(self.root.resolve()), "kind": DATASET_TYPE, "num_episodes": len(self),
                "num_frames": self.num_frames, "image_size": list(self.image_size),
                "action_space": self.config.get("action_space"), "collection": self.config.get("collection")}

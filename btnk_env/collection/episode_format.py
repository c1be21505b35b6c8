"""The episode dataset format: one :class:`Episode` record, the writer interface, the folder writer
and its reader. This module owns the file names and keys; the recorder
(:mod:`btnk_env.collection.episodes`) writes through :class:`EpisodeWriter` and the encoder
(:mod:`training.encode`) reads through :class:`EpisodeFolder`.

Folder layout::

    out_dir/
      dataset_config.json    {"dataset_type": "episodes", "format_version": 1, "image_size": [H, W],
                              "action_space": "Discrete(3)", "collection": {...settings...}}
      episodes.jsonl         one JSON line per complete episode (see EPISODE_KEYS)
      episodes/000000/000000.png ... 0000T.png   the T+1 panoramas seen (before each action, then the last)
      episodes/000000/steps.npz                  actions (T,) int64, rewards (T,) float32,
                                                 terminated (T,) bool, truncated (T,) bool,
                                                 positions (T+1, 3) float64, headings (T+1,) float64

An episode is written whole into ``episodes/.000007.tmp/`` (every file fsynced), renamed to
``episodes/000007`` and only then given its ``episodes.jsonl`` line (appended and fsynced), so a
killed recording leaves complete episodes plus at most one stale folder, which the next writer
removes before continuing at the first missing episode.

Any other storage (the sharded webdataset format of parallel collection) plugs in by
implementing :class:`EpisodeWriter`: ``num_complete()`` and ``write(index, episode)``.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from btnk_env.collection.formats import png_bytes as _png_bytes
from models.files import atomic_write_bytes as _atomic_write_bytes
from models.files import fsync_dir

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
        """Store episode ``index`` (== ``num_complete()``) atomically."""

    def close(self) -> None:
        """Finish (update the dataset's config)."""


def _episode_dir(index: int) -> str:
    return f"{EPISODES_DIR}/{index:06d}"


def _read_config(root: Path) -> dict | None:
    path = root / CONFIG
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); it was not written by btnk-env collect") from None
    return value if isinstance(value, dict) else None


def is_episode_dataset(root: "str | os.PathLike") -> bool:
    """Whether ``root`` holds an episode dataset (its config says ``dataset_type: episodes``)."""
    config = _read_config(Path(root))
    return config is not None and config.get("dataset_type") == DATASET_TYPE


def _read_index(root: Path) -> list[dict]:
    """The complete episodes, in order: a whole JSON line with every key, the next index, its folder present."""
    records: list[dict] = []
    path = root / INDEX
    if not path.exists():
        return records
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                break
            if (not line.endswith("\n") or not isinstance(rec, dict) or any(k not in rec for k in EPISODE_KEYS)
                    or rec["index"] != len(records) or not (root / rec["dir"] / STEPS_FILE).is_file()):
                break
            records.append(rec)
    return records


class EpisodeFolderWriter:
    """Writes episodes into an episode folder (layout in the module docstring), resuming what is there.

    Args:
        root: the dataset folder (created if needed).
        image_size: ``(H, W)`` of the frames.
        action_space: ``repr`` of the world's action space (``"Discrete(3)"``).
        settings: the collection settings; a folder recorded with other settings is refused
            (resuming must reproduce the same episodes).
    """

    def __init__(self, root: "str | os.PathLike", image_size: tuple[int, int], action_space: str, settings: dict) -> None:
        self.root = Path(root)
        config = _read_config(self.root)
        if config is not None:
            if config.get("dataset_type") != DATASET_TYPE:
                raise ValueError(f"{self.root} holds a {config.get('dataset_type')!r} dataset, not episodes: "
                                 "record episodes into another folder")
            if config.get("collection") != settings:
                raise ValueError(f"{self.root} was recorded with different settings {config.get('collection')}; now "
                                 f"{settings}. Use another folder or the same settings to resume.")
        elif (self.root / INDEX).exists():
            raise ValueError(f"{self.root} has an {INDEX} but no {CONFIG}: not a folder this writer created")
        (self.root / EPISODES_DIR).mkdir(parents=True, exist_ok=True)
        self.image_size, self.action_space, self.settings = tuple(int(v) for v in image_size), action_space, settings
        self._records = _read_index(self.root)
        self._clean()
        self._write_config()

    def _clean(self) -> None:
        """Keep only complete episodes: a torn index line, temp folders and unindexed episode folders go."""
        body = "".join(json.dumps(r) + "\n" for r in self._records)
        index = self.root / INDEX
        if not index.exists() or index.read_text(encoding="utf-8") != body:
            _atomic_write_bytes(index, body.encode())
        keep = {Path(r["dir"]).name for r in self._records}
        for path in (self.root / EPISODES_DIR).iterdir():
            name = path.name
            ours = (name.startswith(".") and name.endswith(".tmp")) or (len(name) == 6 and name.isdigit())
            if path.is_dir() and ours and name not in keep:
                logger.info("removing incomplete episode folder %s", path)
                shutil.rmtree(path)

    def _write_config(self) -> None:
        config = {"dataset_type": DATASET_TYPE, "format_version": FORMAT_VERSION, "image_size": list(self.image_size),
                  "action_space": self.action_space, "num_episodes": len(self._records),
                  "num_frames": sum(r["num_steps"] + 1 for r in self._records), "index": INDEX,
                  "collection": self.settings}
        _atomic_write_bytes(self.root / CONFIG, (json.dumps(config, indent=2) + "\n").encode())

    def num_complete(self) -> int:
        return len(self._records)

    def write(self, index: int, episode: Episode) -> None:
        if index != len(self._records):
            raise ValueError(f"episodes are written in order: expected episode {len(self._records)}, got {index}")
        episode.check()
        if tuple(episode.frames.shape[1:3]) != self.image_size:
            raise ValueError(f"frames are {episode.frames.shape[1:3]}, the dataset holds {self.image_size}")
        final = self.root / _episode_dir(index)
        tmp = final.with_name(f".{final.name}.tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        for t, frame in enumerate(episode.frames):
            _atomic_write_bytes(tmp / f"{t:06d}.png", _png_bytes(np.ascontiguousarray(frame)))
        buf = io.BytesIO()
        np.savez(buf, **episode.step_arrays())
        _atomic_write_bytes(tmp / STEPS_FILE, buf.getvalue())
        fsync_dir(tmp)
        os.replace(tmp, final)
        fsync_dir(final.parent)
        rec = {"index": index, "dir": _episode_dir(index), "num_steps": episode.num_steps, "seed": int(episode.seed),
               "scene": str(episode.scene), "goal": [float(v) for v in episode.goal],
               "return": float(np.sum(episode.rewards, dtype=np.float64)),
               "success": bool(episode.terminated[-1]), "terminated": bool(episode.terminated[-1]),
               "truncated": bool(episode.truncated[-1]), **episode.extra}
        with open(self.root / INDEX, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(rec) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self._records.append(rec)

    def close(self) -> None:
        self._write_config()


class EpisodeFolder:
    """Reads an episode folder: its complete episodes, their frames and step arrays.

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
        self.episodes = _read_index(self.root)
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

    def steps(self, i: int) -> dict[str, np.ndarray]:
        """The step arrays of episode ``i`` (see the module docstring)."""
        with np.load(self.root / self.episodes[i]["dir"] / STEPS_FILE) as data:
            return {k: data[k] for k in _STEP_ARRAYS}

    def load(self, i: int) -> Episode:
        """Episode ``i`` with its frames decoded."""
        from PIL import Image

        rec = self.episodes[i]
        frames = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in self.frame_files(i)])
        extra = {k: v for k, v in rec.items() if k not in EPISODE_KEYS}
        return Episode(frames=frames, **self.steps(i), seed=rec["seed"], scene=rec["scene"],
                       goal=np.asarray(rec["goal"], np.float64), extra=extra)

    def describe(self) -> dict[str, Any]:
        return {"path": str(self.root.resolve()), "kind": DATASET_TYPE, "num_episodes": len(self),
                "num_frames": self.num_frames, "image_size": list(self.image_size),
                "action_space": self.config.get("action_space"), "collection": self.config.get("collection")}

"""Episode shard sets: whole episodes as webdataset tar shards (``btnk-env collect --mode episodes
--format shards``), with the parallel, resume and damage guarantees of panorama shard sets.

Layout (a shard set of :mod:`btnk_env.formats.shards`; every sample is one frame)::

    out_dir/
      index.json            the shard index; each shard entry adds "episodes": [first episode, count];
                            "collection" holds the recording settings plus "dataset_type": "episodes",
                            "action_space", "episodes_per_shard" and "num_shards"
      shard-000000.tar      episodes 0 .. E-1 (E = --episodes-per-shard), frame by frame:
        <key>.png           (H, W, 3) RGB, lossless: the observation before action t (the last: after)
        <key>.json          the frame's SAMPLE_KEYS ("episode", "step" = t); frames t < T add
                            "action", "reward", "terminated", "truncated" (of the action taken there);
                            the last frame (t == T) adds "episode_record", the episode's record
                            (an episodes.jsonl line of the folder format, without "dir")
      index-part-00001-of-00004.json    one machine's part (--num-shards 4), merged by --merge-index

Frame ``t`` of episode ``e`` has the global index ``e * (max_steps + 1) + t`` and the key
:func:`~btnk_env.formats.sample_key` of it, so keys and a shard's ``first`` are known before any
episode is played (shard ``k`` starts at ``k * E * (max_steps + 1)``): parts never overlap and the
files are the same however the recording is split or interrupted. Indices are sparse (an episode
shorter than ``max_steps`` leaves a gap); ``count`` is a shard's frames, ``num_samples`` the set's.

One sample per frame, not one per episode: every sample is a frame (a PNG and its record), so what
reads panorama shard sets reads these unchanged (finetuning's :class:`btnk_env.training.shard_stream.ShardStream`,
``btnk-env eval``, ``webdataset.WebDataset(urls).decode("rgb").to_tuple("png", "json")``), and a
shard streams to disk as its episodes are played (one episode in memory). An episode is its run of
consecutive samples with one ``episode`` (:class:`EpisodeShards`).

Writing (:class:`EpisodeShardWriter`): shard ``k`` is written to a hidden temporary file while its
episodes are played, fsynced and renamed when the last one is done, then the index is rewritten
atomically: a SIGKILL loses at most the open shard's episodes, which a rerun plays again (an episode
depends on its index alone, :mod:`btnk_env.collection.episodes`). Ownership and locking are the shard
set's (:func:`~btnk_env.formats.claim` with the settings, one ``fcntl.flock`` per part index).

Damage (:class:`EpisodeShards`): a listed shard that is missing, of another size than its entry, or
not a whole tar, and an episode whose frames or records do not add up (a step missing, a record
without its keys, actions outside the action space, non-finite rewards) cost themselves alone: they
are skipped and reported by name and count; the writer records a missing or damaged shard again.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from btnk_env.formats.common import (DatasetFormatError, skipped_note, IMAGE_EXT, INDEX, RECORD_EXT, SHARDS_KIND, claim,
                                     exclusive_lock, is_locked, is_shard_spec, part_index_name, png_bytes, read_json,
                                     sample_key, shard_name)
from btnk_env.formats.episodes import (DATASET_TYPE, EPISODE_KEYS, Episode, EpisodeFolder, check_step_values,
                                       episode_record, step_shapes)
from btnk_env.formats.shards import (OpenShard, ShardEntry, ShardSet, iter_shard, load_index_entries, open_shard_set,
                                     remove_stale_temporaries, write_index)

__all__ = ["EpisodeShardWriter", "EpisodeShards", "is_episode_shards", "open_episodes", "frame_index"]

logger = logging.getLogger(__name__)

#: the last frame's key holding the episode's record
RECORD_KEY = "episode_record"
_STEP_KEYS = ("action", "reward", "terminated", "truncated")


def frame_index(episode: int, step: int, max_steps: int) -> int:
    """Global index of frame ``step`` of ``episode`` in a recording of at most ``max_steps`` steps.

    Example:
        >>> frame_index(0, 3, 10), frame_index(2, 0, 10)
        (3, 22)
    """
    return episode * (max_steps + 1) + step


def _frame_records(index: int, episode: Episode, max_steps: int) -> Iterator[dict[str, Any]]:
    """The JSON record of each of the ``T+1`` frames of episode ``index`` (see the module docstring)."""
    t_end = episode.num_steps
    for t in range(t_end + 1):
        rec: dict[str, Any] = {"index": frame_index(index, t, max_steps), "scene": str(episode.scene),
                               "seed": int(episode.seed), "position": [float(v) for v in episode.positions[t]],
                               "heading": float(episode.headings[t]), "episode": index, "step": t}
        if t < t_end:
            rec.update(action=int(episode.actions[t]), reward=float(episode.rewards[t]),
                       terminated=bool(episode.terminated[t]), truncated=bool(episode.truncated[t]))
        else:
            rec[RECORD_KEY] = episode_record(index, episode)
        yield rec


# ---------------------------------------------------------------------------- writing
class EpisodeShardWriter:
    """Writes episodes into a shard set (layout in the module docstring), resuming what is there.

    The folder must be new, empty, or a shard set this writer created with the same settings
    (checked before any work); the writer holds the lock of its part's index until :meth:`close`.
    With ``parts > 1`` it writes the shards ``k % parts == part`` into ``index-part-*`` (merged by
    :func:`~btnk_env.formats.shards.merge_indexes`).

    Args:
        root: the shard set's folder (created if needed).
        image_size: ``(H, W)`` of the frames.
        action_space: ``repr`` of the world's action space (``"Discrete(3)"``).
        settings: the recording settings, with ``max_steps``; a folder recorded with other settings
            is refused (resuming must reproduce the same episodes).
        num_episodes: episodes in the whole set (all parts).
        episodes_per_shard: ``E``: shard ``k`` holds episodes ``k*E .. k*E+E-1``.
        part, parts: this writer's part of the set.

    Example:
        >>> import tempfile
        >>> root = tempfile.mkdtemp()
        >>> w = EpisodeShardWriter(root, (16, 32), "Discrete(3)", {"max_steps": 4}, num_episodes=3, episodes_per_shard=2)
        >>> ep = Episode(np.zeros((3, 16, 32, 3), np.uint8), np.array([0, 1]), np.zeros(2), np.array([False, True]),
        ...              np.zeros(2, bool), np.zeros((3, 3)), np.zeros(3), seed=0, scene="s", goal=np.zeros(3))
        >>> for i in w.missing(3):
        ...     w.write(i, ep)
        >>> w.close()
        >>> data = EpisodeShards(root)
        >>> len(data), data.num_frames, [e.episodes for e in data.shards.shards]
        (3, 9, [(0, 2), (2, 1)])
    """

    def __init__(self, root: "str | os.PathLike", image_size: tuple[int, int], action_space: str, settings: dict,
                 num_episodes: int, episodes_per_shard: int = 8, part: int = 0, parts: int = 1) -> None:
        if num_episodes < 1 or episodes_per_shard < 1:
            raise ValueError(f"num_episodes and episodes_per_shard must be >= 1, got {num_episodes}, {episodes_per_shard}")
        if not 0 <= part < parts:
            raise ValueError(f"need 0 <= part < parts, got part={part}, parts={parts}")
        self.image_size = tuple(int(v) for v in image_size)
        self.num_episodes, self.per_shard, self.max_steps = int(num_episodes), int(episodes_per_shard), int(settings["max_steps"])
        self.settings = {**settings, "dataset_type": DATASET_TYPE, "action_space": action_space, "format": "shards",
                         "episodes_per_shard": self.per_shard, "num_shards": int(parts)}
        self.root = claim(root, SHARDS_KIND, self.settings)  # every part of one set brings the same settings
        self.index_path = self.root / part_index_name(part, parts)
        self._index_settings = {**self.settings, "shard_index": part} if parts > 1 else self.settings
        self._lock = exclusive_lock(self.root, f".{self.index_path.name}.lock")
        self._lock.__enter__()
        try:
            self.mine = [k for k in range(-(-self.num_episodes // self.per_shard)) if k % parts == part]
            remove_stale_temporaries(self.root, [shard_name(k) for k in self.mine])  # what a killed writer of this part left
            kept = {e.file: e for e in load_index_entries(self.index_path, self._index_settings, self.image_size)}
            self.entries = {k: kept[shard_name(k)] for k in self.mine
                            if shard_name(k) in kept and kept[shard_name(k)].episodes == self._episodes(k)}
            self._write_index()
        except BaseException:
            self._lock.__exit__(None, None, None)
            raise
        self._open: "tuple[OpenShard, int, int] | None" = None  # (shard, k, next episode)

    def _episodes(self, k: int) -> tuple[int, int]:
        """``(first episode, count)`` of shard ``k``."""
        first = k * self.per_shard
        return first, min(self.per_shard, self.num_episodes - first)

    def _write_index(self) -> None:
        write_index(self.index_path, list(self.entries.values()), self.image_size, self._index_settings,
                    complete=len(self.entries) == len(self.mine), num_episodes=self.num_episodes)

    @property
    def num_stored(self) -> int:
        """Episodes of this part stored in complete shards."""
        return sum(e.episodes[1] for e in self.entries.values())

    def num_complete(self) -> int:
        """Episodes ``0 .. n-1`` are stored (the first missing index; see :meth:`missing`)."""
        return next((i for i in range(self.num_episodes) if i // self.per_shard not in self.entries),
                    self.num_episodes)

    def missing(self, total: int) -> list[int]:
        """The episodes of this part's shards that are not stored, in order: what a resumed recording plays."""
        if total != self.num_episodes:
            raise ValueError(f"this writer holds a set of {self.num_episodes} episodes, not {total}")
        return [i for k in self.mine if k not in self.entries for i in range(self._episodes(k)[0], sum(self._episodes(k)))]

    def write(self, index: int, episode: Episode) -> None:
        """Add episode ``index`` to its shard (episodes of a shard come in order); the shard is
        committed with its last episode."""
        episode.check()
        if tuple(episode.frames.shape[1:3]) != self.image_size:
            raise ValueError(f"frames are {episode.frames.shape[1:3]}, the dataset holds {self.image_size}")
        if episode.num_steps > self.max_steps:
            raise ValueError(f"episode {index} has {episode.num_steps} steps, the settings allow {self.max_steps}")
        k = index // self.per_shard
        if k not in self.mine or k in self.entries:
            raise ValueError(f"episode {index} is not one to write here; write the missing ones ({self.missing(self.num_episodes)[:5]} ...)")
        if self._open is None:
            self._open = (OpenShard(self.root / shard_name(k)), k, self._episodes(k)[0])
        shard, open_k, expected = self._open
        if (open_k, expected) != (k, index):
            raise ValueError(f"episode {index} comes out of order: shard {open_k} waits for episode {expected}")
        for t, rec in enumerate(_frame_records(index, episode, self.max_steps)):
            shard.add(sample_key(rec["index"]), png_bytes(np.ascontiguousarray(episode.frames[t])), rec)
        first, count = self._episodes(k)
        if index + 1 < first + count:
            self._open = (shard, k, index + 1)
            return
        self._open = None
        size = shard.commit()
        self.entries[k] = ShardEntry(shard.path.name, frame_index(first, 0, self.max_steps), shard.count, size,
                                     episodes=(first, count))
        self._write_index()

    def close(self) -> None:
        """Drop an unfinished shard (its episodes are not stored), write the index, release the folder."""
        try:
            if self._open is not None:
                self._open[0].abort()
                self._open = None
            self._write_index()
        finally:
            self._lock.__exit__(None, None, None)


# ---------------------------------------------------------------------------- reading
def _episode_runs(path: Path) -> Iterator[tuple[int | None, list[tuple[str, dict]]]]:
    """``(episode, [(key, record with "png" bytes)])`` per run of consecutive samples of one episode
    of the shard ``path`` (episode ``None``: a sample whose record is not readable)."""
    run: list[tuple[str, dict]] = []
    current: Any = object()
    for key, sample in iter_shard(path):
        try:
            rec = read_json(sample.get(RECORD_EXT, b""), f"{path} sample {key}")
            episode = rec["episode"] if isinstance(rec, dict) and isinstance(rec.get("episode"), int) else None
        except DatasetFormatError:
            rec, episode = {}, None
        if episode != current and run:
            yield current, run
            run = []
        current = episode
        run.append((key, {**(rec if isinstance(rec, dict) else {}), "png": sample.get(IMAGE_EXT)}))
    if run:
        yield current, run


def _check_episode(episode: int | None, run: list[tuple[str, dict]], action_space: Any, max_steps: int,
                   where: str) -> tuple[dict, dict[str, np.ndarray]]:
    """The record and step arrays of one episode's samples, validated (see the module docstring)."""
    if episode is None:
        raise DatasetFormatError(f"{where} sample {run[0][0]}: a record that is not JSON or has no integer 'episode'")
    where = f"{where} episode {episode}"
    recs = [r for _, r in run]
    if [r.get("step") for r in recs] != list(range(len(recs))) or len(recs) < 2:
        raise DatasetFormatError(f"{where}: its frames are not steps 0..T in order (found steps "
                                 f"{[r.get('step') for r in recs][:8]})")
    record = recs[-1].get(RECORD_KEY)
    if not isinstance(record, dict) or any(k not in record for k in EPISODE_KEYS if k != "dir"):
        raise DatasetFormatError(f"{where}: the last frame holds no complete episode record")
    t_end = len(recs) - 1
    if record["index"] != episode or record["num_steps"] != t_end or t_end > max_steps:
        raise DatasetFormatError(f"{where}: its record says episode {record['index']!r} of {record['num_steps']!r} "
                                 f"steps; the shard holds {t_end} steps (at most {max_steps})")
    for (key, r) in run:
        if not r.get("png") or r.get("index") != frame_index(episode, r["step"], max_steps) or key != sample_key(r["index"]):
            raise DatasetFormatError(f"{where} step {r['step']}: no PNG, or its key or index is not the frame's")
    try:
        steps = {"actions": np.asarray([r["action"] for r in recs[:-1]]),
                 "rewards": np.asarray([r["reward"] for r in recs[:-1]], np.float32),
                 "terminated": np.asarray([r["terminated"] for r in recs[:-1]], bool),
                 "truncated": np.asarray([r["truncated"] for r in recs[:-1]], bool),
                 "positions": np.asarray([r["position"] for r in recs], np.float64),
                 "headings": np.asarray([r["heading"] for r in recs], np.float64)}
    except (KeyError, TypeError, ValueError) as err:
        raise DatasetFormatError(f"{where}: a frame record lacks or garbles {err}") from None
    for name, shape in step_shapes(t_end).items():
        if steps[name].shape != shape:
            raise DatasetFormatError(f"{where}: {name} has shape {steps[name].shape}, not {shape}")
    steps["actions"] = check_step_values(steps, action_space, where)["actions"].astype(np.int64)
    return record, steps


class EpisodeShards:
    """Reads an episode shard set: its complete episodes, their frames and step arrays, with the
    interface of :class:`~btnk_env.formats.episodes.EpisodeFolder`.

    Args:
        spec: a folder with ``index.json``, an index file, a ``.tar`` or a brace pattern.
        keep_frames: keep every frame's PNG bytes from the first read (what ``btnk-env encode``
            decodes; about 40 KB per 128x256 frame); else :meth:`frame_sources` reads the shard again.

    Attributes:
        episodes: the records of the complete episodes, by index (each with its ``shard``).
        damaged: one line per damaged shard or episode that was skipped (logged with their count).

    Raises:
        ValueError: ``spec`` is not an episode shard set, or holds no complete episode.
    """

    def __init__(self, spec: "str | os.PathLike", keep_frames: bool = False) -> None:
        self.shards: ShardSet = open_shard_set(spec, check=False)  # a damaged shard costs its episodes alone
        self.root = self.shards.root
        settings = self.shards.settings or {}
        if settings.get("dataset_type") != DATASET_TYPE:
            raise ValueError(f"{spec} is a shard set of single panoramas, not episodes: record episodes with "
                             "btnk-env collect --mode episodes --format shards")
        self.settings = settings
        self.image_size = tuple(self.shards.image_size or ())
        self.max_steps = int(settings["max_steps"])
        self.config = {"dataset_type": DATASET_TYPE, "image_size": list(self.image_size),
                       "action_space": settings.get("action_space"), "collection": settings}
        if any(is_locked(self.root, f".{p.name}.lock") for p in [self.root / INDEX, *self.root.glob("index-part-*.json")]):
            logger.warning("%s is still being recorded: reading the episodes complete so far", self.root)
        found: dict[int, tuple[dict, dict, list | None]] = {}
        self.damaged: list[str] = []
        for entry in self.shards.shards:
            path = self.shards.path(entry)
            if not path.is_file() or path.stat().st_size != entry.bytes:
                self.damaged.append(f"{path} is missing or has another size than its index entry ({entry.bytes} bytes)")
                continue
            try:
                runs = list(_episode_runs(path))
            except DatasetFormatError as err:
                self.damaged.append(str(err))
                continue
            for episode, run in runs:
                try:
                    record, steps = _check_episode(episode, run, settings.get("action_space"), self.max_steps, str(path))
                    if episode in found:
                        raise DatasetFormatError(f"{path} episode {episode} is stored twice (also in "
                                                 f"{found[episode][0]['shard']})")
                except DatasetFormatError as err:
                    self.damaged.append(str(err))
                    continue
                frames = [r["png"] for _, r in run] if keep_frames else None
                found[episode] = ({**record, "shard": entry.file}, steps, frames)
        if self.damaged:
            logger.warning(skipped_note(self.root, len(self.damaged), "damaged shard(s) or episode(s)",
                                        "every other episode is kept", self.damaged))
        order = sorted(found)
        self.episodes = [found[e][0] for e in order]
        self._steps = [found[e][1] for e in order]
        self._frames = [found[e][2] for e in order]
        if not self.episodes:
            raise ValueError(f"{spec} holds no complete episodes: record some with btnk-env collect --mode episodes "
                             f"--format shards --out {self.root} --num-episodes N")

    def __len__(self) -> int:
        return len(self.episodes)

    @property
    def num_frames(self) -> int:
        return sum(r["num_steps"] + 1 for r in self.episodes)

    @functools.lru_cache(maxsize=1)  # noqa: B019 - one shard, read again by consecutive episodes
    def _shard_frames(self, file: str) -> dict[int, list[bytes]]:
        return {e: [r["png"] for _, r in run] for e, run in _episode_runs(self.root / file)}

    def frame_sources(self, i: int) -> list[bytes]:
        """The PNG bytes of the ``T+1`` frames of episode ``i``, in order."""
        if self._frames[i] is not None:
            return self._frames[i]
        rec = self.episodes[i]
        return self._shard_frames(rec["shard"])[rec["index"]]

    def steps(self, i: int) -> dict[str, np.ndarray]:
        """The step arrays of episode ``i`` (as :meth:`EpisodeFolder.steps <btnk_env.formats.episodes.EpisodeFolder.steps>`)."""
        return dict(self._steps[i])

    def load(self, i: int) -> Episode:
        """Episode ``i`` with its frames decoded."""
        from btnk_env.models.image_file import read_image

        rec = self.episodes[i]
        frames = np.stack([read_image(png) for png in self.frame_sources(i)])
        extra = {k: v for k, v in rec.items() if k not in EPISODE_KEYS and k != "shard"}
        return Episode(frames=frames, **self.steps(i), seed=rec["seed"], scene=rec["scene"],
                       goal=np.asarray(rec["goal"], np.float64), extra=extra)

    def describe(self) -> dict[str, Any]:
        return {"path": str(Path(self.root).resolve()), "kind": DATASET_TYPE, "format": "shards",
                "num_episodes": len(self), "num_frames": self.num_frames, "image_size": list(self.image_size),
                "action_space": self.settings.get("action_space"), "collection": self.settings}


def is_episode_shards(spec: "str | os.PathLike") -> bool:
    """Whether ``spec`` names a shard set of recorded episodes (its index's settings say so)."""
    if not is_shard_spec(str(spec)):
        return False
    try:
        return (open_shard_set(spec, check=False).settings or {}).get("dataset_type") == DATASET_TYPE
    except DatasetFormatError:
        return False


def open_episodes(path: "str | os.PathLike", keep_frames: bool = False) -> "EpisodeFolder | EpisodeShards":
    """The episode dataset at ``path``: an episode shard set, else an episode folder.

    Raises:
        ValueError: neither, or no complete episode.
    """
    if is_shard_spec(str(path)):
        return EpisodeShards(path, keep_frames)
    return EpisodeFolder(path)

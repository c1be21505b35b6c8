"""What frame ``i`` of a collection is, and the worker processes that render ranges of frames.

The pose of frame ``i`` is a function of the plan and ``i`` only (``poses``: a generator seeded
with ``(seed, i)``; ``walk``: segment ``i // frames_per_scene`` replayed from its seeded start;
``trajectory``: the ``i``-th pose), so any split of the frames over processes, machines or
resumed runs writes the same pixels. Segment ``s = i // frames_per_scene`` is taken in scene
``scenes[(s // len(seeds)) % len(scenes)]`` with seed ``seeds[s % len(seeds)]``: every seed of
a scene before the next scene (a Habitat scene loads once per ``len(seeds)`` segments).

Workers are started with the ``spawn`` method and build their environment (and so their OpenGL /
EGL context) inside the new process from a picklable factory: a GL context is never inherited
across ``fork`` (which fails with ``EGL_BAD_CONTEXT`` in habitat-sim and MuJoCo).
"""

from __future__ import annotations

import functools
import logging
import multiprocessing as mp
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from btnk_env import formats as F

__all__ = ["Plan", "Driver", "make_gym_env", "run_units", "death_reason"]

logger = logging.getLogger(__name__)

WALK_ACTION_PROBS = (0.6, 0.2, 0.2)  # move_forward, turn_left, turn_right


@dataclass(frozen=True)
class Plan:
    """Which scene, seed and pose each frame index gets."""

    mode: str
    seeds: Sequence[int]  # a tuple, or compact SeedRanges
    frames_per_scene: int
    trajectory: tuple[dict, ...] | None = None
    scenes: tuple[str, ...] | None = None
    """Scenes passed to ``env.reset(options={"scene": ...})`` (Habitat); ``None``: the env's own."""

    def segment(self, i: int) -> tuple[str | None, int]:
        """``(scene, seed)`` of frame ``i`` (``scene`` ``None`` for the environment's own)."""
        if self.mode == "trajectory":
            step = self.trajectory[i]
            return step.get("scene"), int(step.get("seed", self.seeds[0]))
        s = i // self.frames_per_scene
        scene = self.scenes[(s // len(self.seeds)) % len(self.scenes)] if self.scenes else None
        return scene, self.seeds[s % len(self.seeds)]


class Driver:
    """Puts an environment at the pose of frame ``i``; returns the observation and the record.

    Args:
        env: the unwrapped environment (``reset``, ``step``, ``set_pose``, ``get_pose``,
            ``sample_navigable_pose``, ``scene_id``).
        plan: the :class:`Plan`.
    """

    def __init__(self, env: Any, plan: Plan) -> None:
        self.env, self.plan = env, plan
        self._loaded: tuple[str | None, int] | None = None
        self._walk: tuple[int, int, np.random.Generator] | None = None  # (segment start, last frame, rng)

    def _load(self, scene: str | None, seed: int) -> None:
        if (scene, seed) != self._loaded:
            self.env.reset(seed=seed, options={"scene": scene} if scene is not None else None)
            self._loaded = (scene, seed)

    def frame(self, i: int) -> tuple[np.ndarray, dict]:
        """``(rgb (H, W, 3) uint8, record)`` of frame ``i``; ``record`` holds :data:`formats.SAMPLE_KEYS` and ``mode``."""
        plan, fps = self.plan, self.plan.frames_per_scene
        scene, seed = plan.segment(i)
        self._load(scene, seed)
        start = i if plan.mode == "trajectory" else (i // fps) * fps
        if plan.mode == "trajectory":
            step = plan.trajectory[i]
            obs = self.env.set_pose(step["position"], float(step["heading"]))
        elif plan.mode == "poses":
            position, heading = self.env.sample_navigable_pose(np.random.default_rng([seed, i]))
            obs = self.env.set_pose(position, heading)
        elif self._walk is None or self._walk[0] != start or self._walk[1] != i - 1:
            # walk: a segment starts at a seeded pose and takes seeded random actions; a frame
            # reached out of order (a resume, another worker) replays its segment from the start
            rng = np.random.default_rng([seed, start])
            position, heading = self.env.sample_navigable_pose(rng)
            obs = self.env.set_pose(position, heading)
            self._walk = (start, start, rng)
            for _ in range(start + 1, i + 1):
                obs = self._walk_step()
        else:
            obs = self._walk_step()
        rgb = np.asarray(obs["rgb"] if isinstance(obs, dict) else obs, dtype=np.uint8)
        position, heading = self.env.get_pose()
        record = {"index": i, "scene": self.env.scene_id, "seed": seed,
                  "position": [float(v) for v in position], "heading": float(heading), "mode": plan.mode,
                  "episode": i // fps if plan.mode != "trajectory" else 0, "step": i - start if plan.mode != "trajectory" else i}
        return rgb, record

    def _walk_step(self):
        start, last, rng = self._walk
        obs = self.env.step(int(rng.choice(3, p=WALK_ACTION_PROBS)))[0]
        self._walk = (start, last + 1, rng)
        return obs


def make_gym_env(env_id: str, height: int, env_kwargs: dict | None = None) -> Any:
    """``gymnasium.make(env_id, height=height, **env_kwargs)`` (a picklable factory with ``functools.partial``)."""
    import gymnasium as gym

    import btnk_env  # noqa: F401  (registers the built-in environments)

    return gym.make(env_id, height=height, **(env_kwargs or {}))


# ---------------------------------------------------------------------------- units of work
@dataclass(frozen=True)
class Unit:
    """Frames ``start .. stop-1``, written as PNG files (``shard is None``) or as shard ``shard``."""

    root: str
    start: int
    stop: int
    shard: int | None = None
    size: tuple[int, int] | None = None
    """``(H, W)`` every frame must have (the collection's settings say so)."""


def run_unit(driver: Driver, unit: Unit) -> tuple[F.ShardEntry | None, list[dict]]:
    """Render and store one unit; returns its shard entry (shards) and its records."""
    root = Path(unit.root)
    records: list[dict] = []

    def frame(i: int) -> tuple[np.ndarray, dict]:
        rgb, rec = driver.frame(i)
        if unit.size is not None and tuple(rgb.shape[:2]) != tuple(unit.size):
            raise ValueError(f"the environment renders {rgb.shape[0]}x{rgb.shape[1]} panoramas, the collection is "
                             f"{unit.size[0]}x{unit.size[1]}: pass the environment's height to collect_panoramas")
        return rgb, rec

    if unit.shard is None:
        for i in range(unit.start, unit.stop):
            rgb, rec = frame(i)
            rec = {"index": i, "file": F.frame_file(i), **{k: v for k, v in rec.items() if k != "index"}}
            F.atomic_write_bytes(root / rec["file"], F.png_bytes(rgb))
            records.append(rec)
        return None, records
    from btnk_env.formats.shards import write_shard

    def samples():
        for i in range(unit.start, unit.stop):
            rgb, rec = frame(i)
            records.append(rec)
            yield F.sample_key(i), rgb, rec

    name = F.shard_name(unit.shard)
    count, size = write_shard(root / name, samples())
    return F.ShardEntry(name, unit.start, count, size), records


_WORKER: dict[str, Any] = {}


def _die_with_parent() -> None:
    """Linux: SIGKILL this worker when the collector dies, so no orphan keeps writing (best effort)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _init_worker(factory: Callable[[], Any], plan: Plan) -> None:
    """Build the worker's environment; an error is kept and raised by the worker's first unit, so
    the collector gets the exception itself rather than a broken pool."""
    import faulthandler

    faulthandler.enable()  # a crash in a native library prints the Python stack before the process dies
    _die_with_parent()
    os.environ.setdefault("LP_NUM_THREADS", "1")  # one llvmpipe thread per worker: the workers are the parallelism
    try:
        env = factory()  # the GL/EGL context is created here, in the spawned process
    except Exception as err:
        _WORKER["error"] = err
        return
    _WORKER["env"] = env
    _WORKER["driver"] = Driver(env.unwrapped, plan)


def _worker_run(unit: Unit) -> tuple[F.ShardEntry | None, list[dict]]:
    if "error" in _WORKER:
        raise _WORKER["error"]
    return run_unit(_WORKER["driver"], unit)


def death_reason(exitcodes: Sequence[int | None]) -> str:
    """Why worker processes ended, from their exit codes (negative: the signal that killed them).

    Example:
        >>> death_reason([-11, -15]), death_reason([1])
        ('killed by signal SIGSEGV (exit code -11)', 'exited with status 1')
    """
    import signal

    def one(code: int) -> str:
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"killed by signal {name} (exit code {code})"
        return f"exited with status {code}"

    codes = [c for c in exitcodes if c not in (None, 0)]
    own = [c for c in codes if c != -15] or codes  # the pool SIGTERMs the other workers once one died
    return ", ".join(dict.fromkeys(one(c) for c in own)) or "ended without an exit code"


def run_units(units: Sequence[Unit], plan: Plan, workers: int, env: Any = None,
              factory: Callable[[], Any] | None = None, ordered: bool = True
              ) -> Iterator[tuple[F.ShardEntry | None, list[dict]]]:
    """Results of :func:`run_unit` for each unit: in this process on ``env`` (``workers == 1``), or in
    ``workers`` spawned processes that each build an environment with ``factory``.

    Args:
        ordered: yield in the order of ``units`` (else as they finish).
    """
    if workers <= 1 or len(units) <= 1:
        if env is None:
            env = factory()
            try:
                yield from (run_unit(Driver(env.unwrapped, plan), u) for u in units)
            finally:
                env.close()
        else:
            driver = Driver(env.unwrapped, plan)
            for u in units:
                yield run_unit(driver, u)
        return
    if factory is None:
        raise ValueError("workers > 1 needs a picklable environment factory or a Gymnasium id, not an environment "
                         "instance (a GL context cannot move to another process)")
    yield from _run_pool(list(units), plan, workers, factory, ordered)


MAX_POOL_RESTARTS = 5


def _run_pool(units: list[Unit], plan: Plan, workers: int, factory: Callable[[], Any], ordered: bool
              ) -> Iterator[tuple[F.ShardEntry | None, list[dict]]]:
    """Run units in spawned worker processes; a worker that dies (a crash in a native library)
    breaks the pool: its unfinished units run again in a new pool (their output is a function of
    the unit only, so a retry writes the same bytes), up to :data:`MAX_POOL_RESTARTS` times."""
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    ctx = mp.get_context("spawn")
    todo = dict(enumerate(units))
    buffered: dict[int, Any] = {}
    next_out, restarts = 0, 0
    while todo:
        pool = ProcessPoolExecutor(min(workers, len(todo)), mp_context=ctx, initializer=_init_worker,
                                   initargs=(factory, plan))
        processes = pool._processes  # the worker processes, for their exit codes once one died
        broken = False
        try:
            futures = {pool.submit(_worker_run, todo[i]): i for i in sorted(todo)}
            running = set(futures)
            while running and not broken:
                finished, running = wait(running, return_when=FIRST_COMPLETED)
                broken = any(isinstance(f.exception(), BrokenProcessPool) for f in finished)
                if broken:  # keep what finished before the pool broke
                    finished |= {f for f in running if f.done()}
                for fut in sorted(finished, key=futures.get):
                    if fut.exception() is not None:
                        if isinstance(fut.exception(), BrokenProcessPool):
                            continue
                        raise fut.exception()
                    result = fut.result()
                    i = futures[fut]
                    del todo[i]
                    if not ordered:
                        yield result
                        continue
                    buffered[i] = result
                    while next_out in buffered:
                        yield buffered.pop(next_out)
                        next_out += 1
        finally:
            dead = dict(processes or {})
            pool.shutdown(wait=True, cancel_futures=True)
        if broken:
            restarts += 1
            reason = death_reason([p.exitcode for p in dead.values()])
            if restarts > MAX_POOL_RESTARTS:
                raise RuntimeError(f"collection worker processes died {restarts} times (last: {reason}); what was "
                                   "stored is kept (re-run the same command to resume); the workers' messages are above")
            logger.warning("a collection worker died: %s; running its %d unfinished units again in new workers "
                           "(restart %d of at most %d)", reason, len(todo), restarts, MAX_POOL_RESTARTS)


def factory_for(env_id: str, height: int, env_kwargs: dict | None) -> Callable[[], Any]:
    """A picklable factory of ``gymnasium.make(env_id, height=..., **env_kwargs)``."""
    return functools.partial(make_gym_env, env_id, height, env_kwargs)

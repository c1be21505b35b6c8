"""Training of the goal-distance head (:class:`btnk_env.models.goal_distance.GoalDistance`), the planning cost.

``btnk-env train-goal-distance --config configs/goal_distance_rooms.yaml [key=value ...]``.

Data (rendered once into ``io.out_dir/data.npz``, then reused by a resumed run): in each training layout
of the built-in world, episodes that take a few random actions from the world's start pose and then follow
the breadth-first shortest path to the goal (:func:`btnk_env.imagine.plan_to_goal`). Every frame is
labelled with its exact shortest-path length to the goal (the path's remaining actions; a fresh search
from each random-prefix pose), and a few goal views are rendered at the goal at random headings (the
heading does not matter for reaching a position, so the head must learn to ignore it). The frames are
encoded with the encoder, and the dynamics model imagines from every window of each episode along its
recorded actions (``data.imagine_horizon`` steps): the head scores imagined latents when it plans, so it
is trained on them too, with the true labels of the frames they stand for.

Batches pair a real or imagined latent with a goal view of the same episode and regress
``min(steps-to-go, model.max_steps)`` (Huber loss). A batch is drawn by a generator seeded with
``(train.seed, step)``, so a run resumed from ``checkpoint-latest.pth`` ends with the weights of the
uninterrupted run. The final head (``io.out_dir/final``) records both models' parameter hashes.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from btnk_env.models.goal_distance import GoalDistance, GoalDistanceConfig
from btnk_env.training import checkpointing as ckpt
from btnk_env.training.config import ConfigError, load_config, to_dict, to_yaml
from btnk_env.training.lr_sched import lr_at
from btnk_env.training.online_data import check_layout_seeds, parse_layout_seeds
from btnk_env.training.run_log import MetricsWriter

logger = logging.getLogger(__name__)

DATA_FILE = "data.npz"


@dataclass
class GDModelConfig:
    width: int = 256
    depth: int = 3
    max_steps: float = 30.0


@dataclass
class GDDataConfig:
    encoder: str = "panorama-rooms-small"
    dynamics: str = "panorama-rooms-small-dynamics"
    world: str = "single_room"
    height: int = 128
    layouts: str = "100-179"
    """Training layout seeds of the built-in world (never the held-out 1000-1019)."""
    episodes_per_layout: int = 3
    random_prefix: int = 12
    """Each episode starts with 0..random_prefix random actions before the shortest path."""
    goal_views: int = 3
    """Views rendered at the goal per episode, each at a random heading."""
    imagine_horizon: int = 10
    cache: Optional[str] = None
    """The ``data.npz`` of an earlier run rendered with the same data settings, read instead of rendering
    again (e.g. to try other model or training settings), or several, comma-separated (runs over other
    layouts: their episodes are joined); null: ``io.out_dir/data.npz``, rendered if absent."""


@dataclass
class GDTrainConfig:
    steps: int = 4000
    batch_size: int = 256
    lr: float = 1e-3
    min_lr: float = 1e-5
    weight_decay: float = 0.01
    warmup_steps: int = 100
    imagined_fraction: float = 0.5
    """Share of each batch drawn from imagined latents (the rest from encoded frames)."""
    seed: int = 0
    resume: Optional[str] = "auto"
    """``auto``: continue from ``io.out_dir/checkpoint-latest.pth`` if present; a path; or null."""


@dataclass
class GDIOConfig:
    out_dir: str = "runs/goal_distance"
    log_every: int = 100
    checkpoint_every: int = 1000


@dataclass
class GoalDistanceTrainConfig:
    """The whole config of ``btnk-env train-goal-distance`` (``configs/goal_distance_rooms.yaml`` is a view of it)."""

    model: GDModelConfig = field(default_factory=GDModelConfig)
    data: GDDataConfig = field(default_factory=GDDataConfig)
    train: GDTrainConfig = field(default_factory=GDTrainConfig)
    io: GDIOConfig = field(default_factory=GDIOConfig)


def load_goal_distance_config(yaml_path=None, overrides: Sequence[str] = ()) -> GoalDistanceTrainConfig:
    """Schema <- YAML <- dotlist overrides (:func:`btnk_env.training.config.load_config`)."""
    return load_config(yaml_path, overrides, GoalDistanceTrainConfig)


# ---------------------------------------------------------------------- data
def render_episodes(cfg: GDDataConfig, encoder, dyn, progress: bool = False) -> Dict[str, np.ndarray]:
    """Render, label, encode and imagine the training episodes (see the module docstring).

    Returns:
        ``real (N, D)`` float32 latents with ``real_steps (N,)`` and ``real_episode (N,)``;
        ``imagined (M, D)`` with ``imagined_steps``, ``imagined_episode``; ``goals (G, D)`` goal-view
        latents with ``goal_episode (G,)``.
    """
    from btnk_env.envs.panorama_rooms import PanoramaRoomsEnv
    from btnk_env.imagine import encode_frames, plan_to_goal
    from btnk_env.planning.goals import goal_view

    seeds = check_layout_seeds(parse_layout_seeds(cfg.layouts))
    env = PanoramaRoomsEnv(height=cfg.height, world=cfg.world)
    k = dyn.config.context
    out = {n: [] for n in ("real", "real_steps", "real_episode", "imagined", "imagined_steps", "imagined_episode",
                           "goals", "goal_episode")}
    episode = 0
    try:
        from tqdm import tqdm

        for layout in tqdm(seeds, disable=not progress, desc="goal-distance data", unit="layout"):
            for e in range(cfg.episodes_per_layout):
                rng = np.random.default_rng([layout, e, 0x60A1])
                obs, info = env.reset(seed=int(rng.integers(2**31 - 1)), options={"layout_seed": int(layout)})
                frames, steps, actions = [obs], [], []
                for _ in range(int(rng.integers(cfg.random_prefix + 1))):
                    try:
                        steps.append(len(plan_to_goal(env)))
                    except ValueError:
                        break
                    a = int(rng.integers(3))
                    obs, _, terminated, _, info = env.step(a)
                    actions.append(a)
                    frames.append(obs)
                    if terminated:
                        break
                try:
                    path = plan_to_goal(env) if not info["success"] else []
                except ValueError:  # a pose the search cannot leave (boxed in by furniture): no label
                    continue
                steps += list(range(len(path), -1, -1))
                for a in path:
                    obs, *_ = env.step(a)
                    frames.append(obs)
                    actions.append(a)
                goal = info["goal_position"]
                views = [goal_view(env, goal, float(rng.uniform(-math.pi, math.pi))) for _ in range(cfg.goal_views)]
                z = encode_frames(encoder, np.stack(frames + views))  # (T + V, D)
                real, goals = z[:len(frames)], z[len(frames):]
                out["real"].append(real.numpy())
                out["real_steps"].append(np.asarray(steps, np.float32))
                out["goals"].append(goals.numpy())
                for n, count in (("real_episode", len(frames)), ("goal_episode", len(views))):
                    out[n].append(np.full(count, episode, np.int64))
                imagined, labels = imagine_windows(dyn, real, torch.as_tensor(actions), cfg.imagine_horizon)
                out["imagined"].append(imagined.numpy())
                out["imagined_steps"].append(np.asarray(steps, np.float32)[labels])
                out["imagined_episode"].append(np.full(len(labels), episode, np.int64))
                episode += 1
    finally:
        env.close()
    return {n: np.concatenate(v) for n, v in out.items()}


@torch.no_grad()
def imagine_windows(dyn, latents: torch.Tensor, actions: torch.Tensor, horizon: int):
    """Imagine from every frame of an episode along its recorded actions, as the planner does.

    Args:
        latents: ``(T, D)`` encoded frames; actions: ``(T - 1,)`` the actions between them.

    Returns:
        ``(imagined (M, D), frame (M,) int64)``: each imagined latent and the frame it stands for.
    """
    from btnk_env.planning.policy import padded_context

    t = len(latents)
    starts = [s for s in range(t - 1)]
    if not starts or horizon < 1:
        return torch.zeros(0, latents.shape[1]), np.zeros(0, np.int64)
    zs, hist, futs, lens = [], [], [], []
    for s in starts:
        z, a = padded_context(latents[:s + 1], actions[:s], dyn.config.context)
        n = min(horizon, t - 1 - s)
        fut = torch.zeros(horizon, dtype=torch.long)
        fut[:n] = actions[s:s + n]
        zs.append(z), hist.append(a), futs.append(fut), lens.append(n)
    imagined = dyn.rollout(torch.stack(zs), torch.stack(hist), torch.stack(futs))  # (S, H, D)
    keep = [(i, h) for i, n in enumerate(lens) for h in range(n)]
    rows = torch.stack([imagined[i, h] for i, h in keep])
    frame = np.asarray([starts[i] + h + 1 for i, h in keep], np.int64)
    return rows, frame


def _read_cache(path: Path) -> Dict[str, np.ndarray]:
    if not path.is_file():
        raise FileNotFoundError(f"data.cache: {path}: no such file (the data.npz of an earlier run)")
    return dict(np.load(path))


def join_episodes(parts: Sequence[Dict[str, np.ndarray]]) -> Dict[str, np.ndarray]:
    """Several :func:`render_episodes` results as one, their episode numbers made distinct."""
    out = {n: [] for n in parts[0]}
    offset = 0
    for part in parts:
        for n, v in part.items():
            out[n].append(v + offset if n.endswith("_episode") else v)
        offset += 1 + max(int(part[n].max(initial=-1)) for n in part if n.endswith("_episode"))
    return {n: np.concatenate(v) for n, v in out.items()}


# ---------------------------------------------------------------------- training
class GoalDistanceTrainer:
    """Builds the data (or reads its cache), the head and the optimizer; :meth:`fit` trains."""

    def __init__(self, cfg: GoalDistanceTrainConfig, progress: bool = False) -> None:
        from btnk_env.imagine import load_pair
        from btnk_env.training.encode import model_sha256
        from btnk_env.training.run_folder import claim_run_folder
        from btnk_env.training import distributed as D

        self.cfg = cfg
        self.out_dir = Path(cfg.io.out_dir)
        self._run_folder = claim_run_folder(D.init_distributed("auto", "cpu", 60), self.out_dir, cfg.train.resume, False)
        dyn, encoder = load_pair(cfg.data.dynamics, cfg.data.encoder, 3)
        cache = self.out_dir / DATA_FILE
        if cfg.data.cache:
            self.data = join_episodes([_read_cache(Path(p.strip())) for p in cfg.data.cache.split(",")])
        elif cache.is_file():
            self.data = dict(np.load(cache))
        else:
            self.data = render_episodes(cfg.data, encoder, dyn, progress)
            from btnk_env.models.files import atomic_path

            with atomic_path(cache, suffix=".npz") as tmp:
                np.savez(tmp, **self.data)
        m = cfg.model
        torch.manual_seed(cfg.train.seed)
        self.model = GoalDistance(GoalDistanceConfig(
            latent_dim=encoder.latent_dim, width=m.width, depth=m.depth, max_steps=m.max_steps,
            encoder=cfg.data.encoder, encoder_sha256=model_sha256(encoder),
            dynamics=cfg.data.dynamics, dynamics_sha256=model_sha256(dyn)))
        self.model.set_normalization(dyn.latent_mean, dyn.latent_std)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=0.0, weight_decay=cfg.train.weight_decay)
        self.step = 0
        path = ckpt.resume_path(self.out_dir, cfg.train.resume)
        if path is not None:
            state = ckpt.load_checkpoint(path)
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.step = int(state["step"])
        self._goals_of = {}
        for i, e in enumerate(self.data["goal_episode"]):
            self._goals_of.setdefault(int(e), []).append(i)

    def _batch(self, step: int):
        """``(z (B, D), g (B, D), target (B,))`` of optimizer step ``step``."""
        d, t = self.data, self.cfg.train
        g = np.random.default_rng([t.seed, step])
        n_im = int(round(t.batch_size * t.imagined_fraction)) if len(d["imagined"]) else 0
        ri = g.integers(len(d["real"]), size=t.batch_size - n_im)
        ii = g.integers(len(d["imagined"]), size=n_im) if n_im else np.zeros(0, np.int64)
        z = np.concatenate([d["real"][ri], d["imagined"][ii]])
        steps = np.concatenate([d["real_steps"][ri], d["imagined_steps"][ii]])
        episodes = np.concatenate([d["real_episode"][ri], d["imagined_episode"][ii]])
        gi = [self._goals_of[int(e)][int(g.integers(len(self._goals_of[int(e)])))] for e in episodes]
        target = np.minimum(steps, self.cfg.model.max_steps)
        return torch.from_numpy(z).float(), torch.from_numpy(d["goals"][gi]).float(), torch.from_numpy(target).float()

    def _save(self) -> None:
        ckpt.save_checkpoint(self.out_dir / ckpt.LATEST, {
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(), "step": self.step, "config": to_dict(self.cfg)})

    def fit(self, stop_after: Optional[int] = None) -> Dict[str, float]:
        """Train to ``train.steps`` (or up to ``stop_after``); returns the last metrics."""
        try:
            return self._fit(stop_after)
        finally:
            if self._run_folder is not None:
                self._run_folder.release()
                self._run_folder = None

    def _fit(self, stop_after: Optional[int]) -> Dict[str, float]:
        from btnk_env.models.files import atomic_write_text

        c, t = self.cfg, self.cfg.train
        atomic_write_text(self.out_dir / "config.yaml", to_yaml(c))
        writer = MetricsWriter(self.out_dir)
        end = t.steps if stop_after is None else min(stop_after, t.steps)
        last: Dict[str, float] = {}
        t0 = time.time()
        self.model.train()
        while self.step < end:
            lr = lr_at(self.step, t.lr, t.steps, t.warmup_steps, t.min_lr)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            z, g, target = self._batch(self.step)
            pred = self.model(z, g)
            loss = F.smooth_l1_loss(pred, target)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.step += 1
            last = {"step": self.step, "loss": loss.item(), "mae_steps": (pred - target).abs().mean().item(),
                    "lr": lr, "time_s": round(time.time() - t0, 2)}
            if self.step % c.io.log_every == 0 or self.step == end:
                writer.write(last)
            if self.step % c.io.checkpoint_every == 0 or self.step == end:
                self._save()
        writer.close()
        self.model.eval()
        if self.step >= t.steps:
            self.model.save_pretrained(self.out_dir / "final")
        return last


# ---------------------------------------------------------------------- command line
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config (a view of GoalDistanceTrainConfig), e.g. configs/goal_distance_rooms.yaml")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.steps=100 data.layouts=100-199")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        cfg = load_goal_distance_config(args.config, args.overrides)
        trainer = GoalDistanceTrainer(cfg, progress=True)
    except (ConfigError, FileNotFoundError, ValueError) as err:
        print(f"btnk-env train-goal-distance: {err}")
        return 2
    last = trainer.fit()
    print(f"step {trainer.step}: loss {last.get('loss', float('nan')):.4f}, mean error {last.get('mae_steps', float('nan')):.2f} "
          f"steps; head in {trainer.out_dir / 'final'}")
    return 0


__all__ = ["GoalDistanceTrainConfig", "GoalDistanceTrainer", "imagine_windows", "join_episodes", "load_goal_distance_config", "render_episodes"]

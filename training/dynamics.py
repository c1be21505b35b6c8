"""Training loop of the latent dynamics model (:class:`btnk_env.models.dynamics.LatentDynamics`).

``btnk-env train-dynamics --config configs/dynamics_rooms.yaml [key=value ...]`` (or under
``torchrun --nproc_per_node=N -m btnk_env train-dynamics ...``). The data is a latent episode dataset
of ``btnk-env encode`` (docs/latent_datasets.md), read as :class:`btnk_env.training.latent_episodes.LatentWindows`
of ``K + H`` frames: the loss is the teacher-forced one-step MSE plus ``train.open_loop_weight`` times
the ``H``-step open-loop MSE (:func:`btnk_env.models.dynamics.open_loop_loss`), in standardized latent units.

The loop reuses the MAE trainer's pieces: the structured-config conventions of
:mod:`btnk_env.training.config` (dataclasses are the source of truth, YAML files are omegaconf views, a typo'd
key is an error naming it), atomic checkpoints (:mod:`btnk_env.training.checkpointing`), the warm-up + cosine
schedule (:mod:`btnk_env.training.lr_sched`), metrics files (:mod:`btnk_env.training.run_log`) and the process group
(:mod:`btnk_env.training.distributed`). Batches are drawn by a generator seeded with ``(seed, step, rank)``
and the model has no dropout, so a run resumed from ``checkpoint-latest.pth`` computes exactly the
weights of the uninterrupted run.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from btnk_env.models.dynamics import KINDS, DynamicsConfig, LatentDynamics, open_loop_loss
from btnk_env.models.files import atomic_write_text
from btnk_env.training.run_folder import claim_run_folder
from btnk_env.training import checkpointing as ckpt
from btnk_env.training import distributed as D
from btnk_env.training.config import ConfigError, DistConfig, load_config, to_dict, to_yaml
from btnk_env.training.dynamics_eval import num_actions_of
from btnk_env.training.latent_episodes import LatentWindows
from btnk_env.formats.latents import LatentDataset
from btnk_env.training.lr_sched import lr_at
from btnk_env.training.run_log import MetricsWriter

logger = logging.getLogger(__name__)


def _check(section: str, values: Dict[str, Any], rule: str) -> None:
    """Raise :class:`ConfigError` naming ``section.key`` for the first value breaking ``rule``:
    ``"> 0"`` or ``">= 0"`` (NaN and infinity break both)."""
    for key, v in values.items():
        if not (math.isfinite(v) and (v > 0 if rule == "> 0" else v >= 0)):
            raise ConfigError(f"{section}.{key} must be {rule}, got {v}")


@dataclass
class DynModelConfig:
    kind: str = "transformer"
    """``transformer`` or ``gru``."""
    context: int = 4
    width: int = 256
    depth: int = 2
    heads: int = 4

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"model.kind must be one of {list(KINDS)}, got {self.kind!r}")
        _check("model", {"context": self.context, "width": self.width, "depth": self.depth, "heads": self.heads}, "> 0")


@dataclass
class DynDataConfig:
    path: str = "???"
    """A latent episode folder written by ``btnk-env encode``."""
    horizon: int = 8
    """``H``: open-loop steps per training window (windows are ``context + horizon`` frames)."""

    def __post_init__(self) -> None:
        _check("data", {"horizon": self.horizon}, "> 0")


@dataclass
class DynOptimConfig:
    lr: float = 1e-3
    min_lr: float = 1e-5
    weight_decay: float = 0.01
    warmup_steps: int = 100
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        _check("optim", {"lr": self.lr, "grad_clip": self.grad_clip}, "> 0")
        _check("optim", {"min_lr": self.min_lr, "weight_decay": self.weight_decay, "warmup_steps": self.warmup_steps}, ">= 0")
        if self.min_lr > self.lr:
            raise ConfigError(f"optim.min_lr ({self.min_lr}) must not exceed optim.lr ({self.lr})")


@dataclass
class DynTrainConfig:
    steps: int = 3000
    batch_size: int = 64
    open_loop_weight: float = 1.0
    seed: int = 0
    device: str = "auto"
    resume: Optional[str] = "auto"
    """``auto``: continue from ``io.out_dir/checkpoint-latest.pth`` if present; a path; or null."""
    overwrite: bool = False
    """Start over in an ``io.out_dir`` that holds a run (its own files are removed); needs ``resume: null``."""

    def __post_init__(self) -> None:
        _check("train", {"steps": self.steps, "batch_size": self.batch_size}, "> 0")
        _check("train", {"open_loop_weight": self.open_loop_weight}, ">= 0")


@dataclass
class DynIOConfig:
    out_dir: str = "runs/dynamics"
    log_every: int = 50
    checkpoint_every: int = 500
    progress: bool = True

    def __post_init__(self) -> None:
        _check("io", {"log_every": self.log_every, "checkpoint_every": self.checkpoint_every}, "> 0")


@dataclass
class DynamicsTrainConfig:
    """The whole config of ``btnk-env train-dynamics`` (``configs/dynamics_rooms.yaml`` is a view of it)."""

    model: DynModelConfig = field(default_factory=DynModelConfig)
    data: DynDataConfig = field(default_factory=DynDataConfig)
    optim: DynOptimConfig = field(default_factory=DynOptimConfig)
    train: DynTrainConfig = field(default_factory=DynTrainConfig)
    io: DynIOConfig = field(default_factory=DynIOConfig)
    dist: DistConfig = field(default_factory=DistConfig)


def load_dynamics_config(yaml_path=None, overrides: Sequence[str] = ()) -> DynamicsTrainConfig:
    """Schema <- YAML <- dotlist overrides, through :func:`btnk_env.training.config.load_config` (the same
    checks and one-line errors as the MAE configs).

    Raises:
        ConfigError: unknown key (named), wrong type, ``data.path`` missing.
    """
    return load_config(yaml_path, overrides, DynamicsTrainConfig)


def latent_stats(data: LatentDataset) -> tuple:
    """Per-dimension mean and std ``(D,)`` float32 of every latent of the dataset."""
    z = np.asarray(data.latents, np.float64)
    return torch.from_numpy(z.mean(0).astype(np.float32)), torch.from_numpy(z.std(0).astype(np.float32))


class DynamicsTrainer:
    """Builds the model, data and optimizer from a :class:`DynamicsTrainConfig`; :meth:`fit` runs it."""

    def __init__(self, cfg: DynamicsTrainConfig, progress: bool = False) -> None:
        self.cfg, self.progress = cfg, progress
        self.ctx = D.init_distributed(cfg.dist.backend, cfg.train.device, cfg.dist.timeout_s)
        self.device = self.ctx.device
        self.out_dir = Path(cfg.io.out_dir)
        self._run_folder = claim_run_folder(self.ctx, self.out_dir, cfg.train.resume, cfg.train.overwrite)  # locked
        m = cfg.model
        self.data = LatentDataset(cfg.data.path)
        self.data.check_finite()  # NaN latents would train to a NaN loss: refused, naming the file
        meta = self.data.meta if hasattr(self.data, "meta") else {}
        self.windows = LatentWindows(self.data, window=m.context + cfg.data.horizon)
        num_actions = num_actions_of(self.data)
        torch.manual_seed(cfg.train.seed)
        dcfg = DynamicsConfig(latent_dim=int(self.data.latents.shape[1]), num_actions=num_actions, context=m.context,
                              kind=m.kind, width=m.width, depth=m.depth, heads=m.heads,
                              encoder=str(meta.get("model", "")), encoder_sha256=str(meta.get("model_sha256", "")))
        self.model = LatentDynamics(dcfg)
        self.step = 0
        state = self._resume_state()
        if state is not None:
            self.model = LatentDynamics(DynamicsConfig.from_dict(state["model_config"]))
            self.model.load_state_dict(state["model"])
        else:
            self.model.set_normalization(*latent_stats(self.data))
        self.model.to(self.device).train()
        o = cfg.optim
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=0.0, weight_decay=o.weight_decay)
        if state is not None:
            self.optimizer.load_state_dict(state["optimizer"])
            self.step = int(state["step"])
        self.ddp: nn.Module = self.model
        if self.ctx.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)

    def _resume_state(self) -> Optional[Dict[str, Any]]:
        path = ckpt.resume_path(self.out_dir, self.cfg.train.resume)
        if path is None:
            return None
        logger.info("resuming from %s", path)
        return ckpt.load_checkpoint(path)

    def _batch(self, step: int) -> tuple:
        """The windows of optimizer step ``step`` on this rank: ``(B, K+H, D)`` latents, ``(B, K+H)`` actions."""
        g = torch.Generator().manual_seed(self.cfg.train.seed * 1_000_003 + step * 1009 + self.ctx.rank)
        idx = torch.randint(len(self.windows), (self.cfg.train.batch_size,), generator=g)
        items = [self.windows[int(i)] for i in idx]
        z = torch.stack([it["latents"] for it in items]).to(self.device)
        a = torch.stack([it["actions"] for it in items]).clamp_min(0).to(self.device)  # -1 (episode end) is never used as input
        return z, a

    def _save(self, name: str) -> None:
        if not self.ctx.is_main:
            return
        ckpt.save_checkpoint(self.out_dir / name, {
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "model_config": self.model.config.to_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "config": to_dict(self.cfg),
        })

    def fit(self, stop_after: Optional[int] = None) -> Dict[str, float]:
        """Train to ``train.steps`` (or only up to step ``stop_after``, for tests); returns the last
        metrics. The run folder is released at the end, also on an error."""
        try:
            return self._fit(stop_after)
        finally:
            self.close()

    def _fit(self, stop_after: Optional[int]) -> Dict[str, float]:
        c, o = self.cfg, self.cfg.optim
        writer = MetricsWriter(self.out_dir) if self.ctx.is_main else None
        if self.ctx.is_main:
            atomic_write_text(self.out_dir / "config.yaml", to_yaml(c))
        bar = None
        if self.progress and self.ctx.is_main:
            from tqdm import tqdm

            bar = tqdm(total=c.train.steps, initial=self.step, desc="train-dynamics")
        std = self.model.latent_std
        last: Dict[str, float] = {}
        end = c.train.steps if stop_after is None else min(stop_after, c.train.steps)
        t0 = time.time()
        while self.step < end:
            lr = lr_at(self.step, o.lr, c.train.steps, o.warmup_steps, o.min_lr)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            z, a = self._batch(self.step)
            tf, ol = open_loop_loss(self.ddp, z, a, std)
            loss = tf + c.train.open_loop_weight * ol
            if not torch.isfinite(loss):
                raise RuntimeError(f"non-finite dynamics loss at step {self.step}; lower optim.lr")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if o.grad_clip:
                nn.utils.clip_grad_norm_(self.model.parameters(), o.grad_clip)
            self.optimizer.step()
            self.step += 1
            last = {"step": self.step, "loss": loss.item(), "teacher_forced": tf.item(), "open_loop": ol.item(),
                    "lr": lr, "time_s": round(time.time() - t0, 2)}
            if writer is not None and (self.step % c.io.log_every == 0 or self.step == end):
                writer.write(last)
            if self.step % c.io.checkpoint_every == 0 or self.step == end:
                self._save(ckpt.LATEST)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{float(loss):.4f}")
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close()
        if self.ctx.is_main and self.step >= c.train.steps:
            self.model.save_pretrained(self.out_dir / "final")
        return last

    def close(self) -> None:
        """Release the run folder (done by :meth:`fit`; for a trainer that is built but never fitted)."""
        if self._run_folder is not None:
            self._run_folder.release()
            self._run_folder = None


def train_dynamics(cfg: DynamicsTrainConfig, progress: bool = False, stop_after: Optional[int] = None) -> DynamicsTrainer:
    """Run (or resume) a training; returns the trainer (``.model``, ``.step``)."""
    trainer = DynamicsTrainer(cfg, progress=progress)
    trainer.fit(stop_after=stop_after)
    return trainer


# ---------------------------------------------------------------------- command line
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config (a view of DynamicsTrainConfig), e.g. configs/dynamics_rooms.yaml")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.steps=100 data.path=...")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = load_dynamics_config(args.config, args.overrides)  # input errors: one line via btnk_env.models.errors.run_cli
    trainer = DynamicsTrainer(cfg, progress=cfg.io.progress)
    last = trainer.fit()
    if trainer.ctx.is_main:
        print(f"step {trainer.step}: loss {last.get('loss', float('nan')):.4f}; weights in {trainer.out_dir / 'final'}")
    D.shutdown()
    return 0


__all__ = ["DynamicsTrainConfig", "DynamicsTrainer", "load_dynamics_config", "train_dynamics"]

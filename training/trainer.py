"""The finetune loop: one process or many (``torchrun``), resumable to the exact step.

One optimizer step = ``train.accum_iter`` micro-batches of ``train.batch_size`` images per process;
the learning rate is set before each step (warm-up, then half-cycle cosine); the loss is
:func:`btnk_env.training.losses.bottleneck_losses`. Data order, augmentation and dropout are functions of
the seed, the epoch and the step, and a checkpoint stores the RNG state of every rank at a step
boundary, so a run resumed from any checkpoint (mid-epoch included) computes the same weights as
the uninterrupted run. Rank 0 alone writes files.

Example:
    >>> import tempfile, numpy as np
    >>> from PIL import Image
    >>> from btnk_env.training.config import load_config
    >>> d = tempfile.mkdtemp()
    >>> for i in range(4):
    ...     Image.fromarray(np.full((64, 64, 3), 40 * i, np.uint8)).save(f"{d}/{i}.png")
    >>> cfg = load_config(overrides=[f"data.path={d}", f"io.out_dir={d}/run", "model.preset=test",
    ...     "model.img_size=[64,64]", "train.batch_size=2", "train.epochs=1", "io.snapshot_every=null"])
    >>> result = train(cfg)
    >>> result.step, (result.out_dir / "checkpoint-latest.pth").is_file()
    (2, True)
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from btnk_env.models import BtnkMAE, BtnkMAEConfig
from btnk_env.models.checkpoint import load_state_dict_strict
from btnk_env.training import checkpointing as ckpt
from btnk_env.training import distributed as D
from btnk_env.training.config import DEFAULT_PRESET, TrainConfig, to_dict, to_yaml
from btnk_env.training.datasets import DatasetError, collate_skip, dataset_from_config
from btnk_env.training.init_checks import check_against_checkpoint, check_warmup
from btnk_env.training.losses import bottleneck_losses
from btnk_env.training.lr_sched import lr_at, param_groups, peak_lr, set_lr
from btnk_env.models.files import atomic_write_text
from btnk_env.training.run_folder import claim_run_folder
from btnk_env.models.image_file import save_png
from btnk_env.training.run_log import MetricsWriter, snapshot_grid
from btnk_env.training.sampler import EpochBatchSampler
from btnk_env.training.shard_stream import ShardStream

logger = logging.getLogger(__name__)

#: Parameters that cannot change the output (the cross-attention's query norm: a single key makes
#: the queries irrelevant; MAE's mask token: nothing is masked). Frozen so DDP sees no unused ones.
FROZEN = ("decoder.mask_token", "decoder.patch_recon.q_norm.weight", "decoder.patch_recon.q_norm.bias")

Hook = Callable[["Trainer", Dict[str, Any]], None]


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; a ``checkpoint-crash.pth`` holds the state before that step."""


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    step: int
    """Optimizer steps done in total."""
    out_dir: Path
    final_dir: Optional[Path]
    """``save_pretrained`` folder of the final weights (rank 0), loadable by ``BtnkMAE.from_pretrained``."""
    last_metrics: Dict[str, Any] = field(default_factory=dict)
    skipped_images: List[str] = field(default_factory=list)
    """Keys of images that could not be decoded (each skipped, never replaced)."""


def build_model(mcfg: Any) -> BtnkMAE:
    """The model ``model.init`` names, at ``model.img_size``, in train mode."""
    overrides = {k: getattr(mcfg, k) for k in ("num_heads", "decoder_num_heads", "act_fn") if getattr(mcfg, k) is not None}
    hw = mcfg.img_hw
    if mcfg.init == "scratch":
        model = BtnkMAE(mcfg.preset or DEFAULT_PRESET, img_size=hw, **overrides)
    elif mcfg.init.startswith("mae:"):
        model = BtnkMAE.from_mae(mcfg.init[4:], mcfg.preset or DEFAULT_PRESET, img_size=hw, **overrides)
    else:  # the stored architecture wins: head counts only where the checkpoint does not store them
        source = mcfg.init[len("pretrained:"):]
        model = BtnkMAE.from_pretrained(source, **{k: v for k, v in overrides.items() if k != "act_fn"})
        check_against_checkpoint(mcfg, model.config, source)
        model.set_img_size(hw)
    return model.train()


def prepare_model(model: BtnkMAE, dropout: Optional[float]) -> BtnkMAE:
    """Apply the dropout override and freeze the parameters in :data:`FROZEN`."""
    if dropout is not None:
        for module in model.modules():
            if isinstance(module, nn.Dropout):
                module.p = float(dropout)
    for name, param in model.named_parameters():
        param.requires_grad_(name not in FROZEN)
    return model


class Trainer:
    """Builds everything from a :class:`TrainConfig` and runs :meth:`fit`.

    Args:
        cfg: the config.
        hooks: called as ``hook(trainer, row)`` after every optimizer step (``row``: that step's metrics).
        progress: show a tqdm bar on rank 0 (command lines pass ``cfg.io.progress``).
    """

    def __init__(self, cfg: TrainConfig, hooks: Sequence[Hook] = (), progress: bool = False) -> None:
        self.cfg, self.hooks, self.progress = cfg, list(hooks), progress
        t = cfg.train
        self.ctx = D.init_distributed(cfg.dist.backend, t.device, cfg.dist.timeout_s)
        self.device = self.ctx.device
        if t.precision == "fp16" and self.device.type != "cuda":
            raise ValueError("train.precision=fp16 needs CUDA; use train.precision=bf16 on the CPU")
        self.out_dir = Path(cfg.io.out_dir)
        self._run_folder = claim_run_folder(self.ctx, self.out_dir, self.cfg.train.resume, self.cfg.train.overwrite)
        try:
            self._build(cfg)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release the run folder (done by :meth:`fit`; for a trainer that is built but never fitted)."""
        if getattr(self, "_run_folder", None) is not None:
            self._run_folder.release()
            self._run_folder = None

    def _build(self, cfg: TrainConfig) -> None:
        t = cfg.train
        torch.manual_seed(t.seed)
        state = self._resume_state()
        if state is not None:
            self.model = BtnkMAE(BtnkMAEConfig.from_dict(state["model_config"]))
            load_state_dict_strict(self.model, state["model"], str(state["_path"]))
            if not state.get("_full", False):  # a new image size: the weights only, a new run from them
                self.model.set_img_size(cfg.model.img_hw)
        else:
            self.model = build_model(cfg.model)
        prepare_model(self.model.to(self.device).train(), cfg.model.dropout)
        o = cfg.optim
        self.optimizer = torch.optim.AdamW(param_groups(self.model, o.weight_decay, o.encoder_lr_scale), lr=0.0,
                                           betas=tuple(o.betas))
        self.scaler = torch.amp.GradScaler("cuda", enabled=t.precision == "fp16")
        self.dataset = dataset_from_config(cfg.data, self.model.img_size)
        if isinstance(self.dataset, ShardStream):  # streamed: the stream is its own sampler
            self.dataset.configure(t.batch_size, self.ctx.world_size, self.ctx.rank, t.seed, cfg.data.num_workers)
            self.sampler: Any = self.dataset
        else:
            self.sampler = EpochBatchSampler(len(self.dataset), t.batch_size, self.ctx.world_size, self.ctx.rank, t.seed)
        self.updates_per_epoch = self.sampler.batches_per_epoch // t.accum_iter
        if self.updates_per_epoch == 0:
            raise DatasetError(
                f"{len(self.dataset)} images make {self.sampler.batches_per_epoch} micro-batches per epoch, fewer than "
                f"train.accum_iter={t.accum_iter}; lower train.accum_iter or train.batch_size"
            )
        self.total_steps = t.epochs * self.updates_per_epoch
        self.warmup = o.warmup_iters if o.warmup_iters is not None else round(o.warmup_epochs * self.updates_per_epoch)
        check_warmup(self.warmup, self.total_steps, f"optim.warmup_iters={o.warmup_iters}" if o.warmup_iters is not None
                     else f"optim.warmup_epochs={o.warmup_epochs} x {self.updates_per_epoch} steps per epoch")
        self.peak_lr = peak_lr(o.blr, t.batch_size * t.accum_iter * self.ctx.world_size, o.lr)
        self.step = 0
        if state is not None and state.get("_full", False):
            self.optimizer.load_state_dict(state["optimizer"])
            if state.get("scaler"):
                self.scaler.load_state_dict(state["scaler"])
            self.step = int(state["step"])
        self.ddp = self.model
        if self.ctx.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        rngs = (state or {}).get("rng") if (state or {}).get("_full") else None
        if rngs and len(rngs) == self.ctx.world_size:
            ckpt.set_rng_state(rngs[self.ctx.rank])
        else:
            if rngs:
                logger.warning("resuming with %d processes from a %d-process run: dropout RNG reseeded",
                               self.ctx.world_size, len(rngs))
            torch.manual_seed(t.seed * 1000 + self.ctx.rank + 1 + self.step)
        self.skipped: List[str] = []
        self.writer: Optional[MetricsWriter] = None
        self.last_metrics: Dict[str, Any] = {}

    # ------------------------------------------------------------------ resume
    def _resume_state(self) -> Optional[Dict[str, Any]]:
        resume = self.cfg.train.resume
        path = ckpt.resume_path(self.out_dir, resume)
        if path is None:
            if not resume:
                return None
            logger.info("train.resume=auto: no checkpoint in %s, starting a new run", self.out_dir)
            return None
        state = ckpt.load_checkpoint(path)
        state["_path"] = path
        saved_hw = BtnkMAEConfig.from_dict(state["model_config"]).img_hw
        state["_full"] = tuple(saved_hw) == tuple(self.cfg.model.img_hw)
        if not state["_full"]:
            logger.warning("%s was trained at %s, this run is at %s: loading its weights only (new optimizer and schedule)",
                           path, saved_hw, self.cfg.model.img_hw)
        else:
            logger.info("resuming from %s at step %d", path, int(state["step"]))
            before = (state.get("config") or {}).get("train", {})
            now = self.cfg.train
            changed = [k for k in ("batch_size", "accum_iter", "epochs", "seed") if k in before and before[k] != getattr(now, k)]
            if changed or state.get("world_size", self.ctx.world_size) != self.ctx.world_size:
                logger.warning("resuming with changed %s: the run will not match an uninterrupted one",
                               changed + (["world_size"] if state.get("world_size") != self.ctx.world_size else []))
        return state

    # ------------------------------------------------------------------ checkpoints
    def _state(self) -> Optional[Dict[str, Any]]:
        rngs = D.all_gather_objects(self._rng_at_step)  # collective: every rank calls it
        if not self.ctx.is_main:
            return None
        return {
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "model_config": self.model.config.to_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
            "epoch": self.step // self.updates_per_epoch,
            "step": self.step,
            "world_size": self.ctx.world_size,
            "rng": rngs,
            "config": to_dict(self.cfg),
        }

    def save(self, name: str = ckpt.LATEST, extra: Optional[Dict[str, Any]] = None) -> Optional[Path]:
        """Write a checkpoint of the state at the current step boundary (rank 0 writes; collective)."""
        state = self._state()
        if state is None:
            return None
        return ckpt.save_checkpoint(self.out_dir / name, {**state, **(extra or {})})

    # ------------------------------------------------------------------ one step
    def _autocast(self):
        p = self.cfg.train.precision
        if p == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16 if p == "bf16" else torch.float16)

    def _micro_step(self, images: torch.Tensor, sync: bool) -> Dict[str, float]:
        t = self.cfg.train
        images = images.to(self.device, non_blocking=True)
        with (contextlib.nullcontext() if sync or not self.ctx.enabled else self.ddp.no_sync()):
            with self._autocast():
                out = self.ddp(images, full_mae=t.full_mae_loss_coeff > 0)
            terms = bottleneck_losses(self.model, images, out, t.btnk_loss_coeff, t.full_mae_loss_coeff, t.norm_pix_loss)
            self.scaler.scale(terms["loss"] / t.accum_iter).backward()
        return {k: float(v.detach()) for k, v in terms.items()}

    def _finish_step(self, sums: torch.Tensor) -> Dict[str, Any]:
        """All-reduce the step's statistics, stop on a non-finite loss, else update the weights."""
        o, t = self.cfg.optim, self.cfg.train
        total = D.all_reduce_sum(sums)  # loss, btnk, full, micro-batches, images, newly skipped
        n = max(float(total[3]), 1.0)
        row = {"step": self.step + 1, "epoch": round((self.step + 1) / self.updates_per_epoch, 4),
               "lr": self.peak_lr_now, "lr_encoder": self.peak_lr_now * o.encoder_lr_scale,
               "loss": float(total[0]) / n, "loss_btnk": float(total[1]) / n}
        if t.full_mae_loss_coeff > 0:
            row["loss_full_mae"] = float(total[2]) / n
        if not all(math.isfinite(row[k]) for k in ("loss", "loss_btnk") + (("loss_full_mae",) if "loss_full_mae" in row else ())):
            path = self.save(ckpt.CRASH, {"error": f"non-finite loss at step {self.step + 1}"})
            losses = ", ".join(f"{k}={row[k]}" for k in row if k.startswith("loss"))
            raise NonFiniteLossError(
                f"non-finite loss at step {self.step + 1} (epoch {self.step // self.updates_per_epoch}): {losses}. "
                f"The state before this step is saved in {path or self.out_dir / ckpt.CRASH}. Lower optim.blr, "
                f"use train.precision=fp32 or bf16, set optim.clip_grad, or check the data."
            )
        if o.clip_grad is not None:
            self.scaler.unscale_(self.optimizer)
            row["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), o.clip_grad))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self._rng_at_step = ckpt.get_rng_state()
        row["images"] = int(total[4])
        self._skipped_total += int(total[5])
        row["skipped_images"] = self._skipped_total
        return row

    # ------------------------------------------------------------------ outputs
    def _snapshot(self, images: torch.Tensor) -> None:
        self.model.eval()
        with torch.no_grad():
            x = images[:4].to(self.device)
            recon = self.model.reconstruct(x)
        self.model.train()
        path = save_png(self.out_dir / "snapshots" / f"step{self.step:07d}.png", snapshot_grid(x, recon))
        if self.writer is not None:
            self.writer.image("snapshot", path, self.step)

    def _after_step(self, row: Dict[str, Any], images: torch.Tensor, bar: Any) -> None:
        io = self.cfg.io
        self.last_metrics = row
        if self.writer is not None and (self.step % io.log_every == 0 or self.step == self.stop_step):
            self.writer.write(row)
        if self.ctx.is_main and io.snapshot_every and self.step % io.snapshot_every == 0 and images.numel():
            self._snapshot(images)
        end_of_epoch = self.step % self.updates_per_epoch == 0
        if end_of_epoch or (io.save_every_steps and self.step % io.save_every_steps == 0) or self.step == self.stop_step:
            self.save()
        epochs_done = self.step // self.updates_per_epoch
        if end_of_epoch and epochs_done % io.save_every == 0:
            self.save(ckpt.epoch_name(epochs_done))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{row['lr']:.2e}")
        for hook in self.hooks:
            hook(self, row)

    # ------------------------------------------------------------------ the loop
    def fit(self) -> TrainResult:
        """Train until ``train.epochs`` (or ``train.max_steps``) and export ``out_dir/final``; the run
        folder is released at the end, also on an error."""
        try:
            return self._fit()
        finally:
            self.close()

    def _fit(self) -> TrainResult:
        t = self.cfg.train
        self.stop_step = min(self.total_steps, t.max_steps or self.total_steps)
        self._rng_at_step = ckpt.get_rng_state()
        self._skipped_total = 0
        bar = None
        if self.ctx.is_main:
            atomic_write_text(self.out_dir / "config.yaml", to_yaml(self.cfg))
            io = self.cfg.io
            self.writer = MetricsWriter(self.out_dir, io.tensorboard, io.wandb, io.wandb_project, io.run_name, to_dict(self.cfg),
                                        resume_step=self.step)
            if self.progress:
                from tqdm.auto import tqdm

                bar = tqdm(total=self.stop_step, initial=self.step, desc="train", unit="step", dynamic_ncols=True)
        logger.info("training %d steps (%d per epoch, peak lr %.3g, warm-up %d) on %s x%d",
                    self.stop_step, self.updates_per_epoch, self.peak_lr, self.warmup, self.device, self.ctx.world_size)
        try:
            self._loop(bar)
        except KeyboardInterrupt:
            if not self.ctx.enabled:  # one process: the state at the last step boundary is consistent
                self.save()
                logger.warning("interrupted: saved %s at step %d", self.out_dir / ckpt.LATEST, self.step)
            raise
        finally:
            if bar is not None:
                bar.close()
            if self.writer is not None:
                self.writer.close()
        final = None
        if self.ctx.is_main:
            final = self.model.save_pretrained(self.out_dir / "final")
        D.barrier()
        return TrainResult(self.step, self.out_dir, final, self.last_metrics, sorted(set(self.skipped)))

    def _loop(self, bar: Any) -> None:
        t = self.cfg.train
        o = self.cfg.optim
        while self.step < self.stop_step:
            epoch = self.step // self.updates_per_epoch
            self.sampler.set_epoch(epoch, (self.step % self.updates_per_epoch) * t.accum_iter)
            if isinstance(self.dataset, ShardStream):
                loader = self.dataset.loader(pin_memory=self.device.type == "cuda")
            else:
                loader = DataLoader(self.dataset, batch_sampler=self.sampler, num_workers=self.cfg.data.num_workers,
                                    collate_fn=collate_skip, pin_memory=self.device.type == "cuda",
                                    generator=torch.Generator().manual_seed(t.seed + epoch))
            micro, sums = 0, torch.zeros(6, dtype=torch.float64)
            started = time.perf_counter()
            for images, skipped in loader:
                if micro == 0:
                    self.peak_lr_now = lr_at(self.step, self.peak_lr, self.total_steps, self.warmup, o.min_lr)
                    set_lr(self.optimizer, self.peak_lr_now)
                    sums.zero_()
                if skipped:
                    self.skipped.extend(skipped)
                    sums[5] += len(skipped)
                if images.numel() == 0:
                    raise DatasetError(f"every image of a batch was unreadable ({skipped}); check the dataset")
                terms = self._micro_step(images, sync=micro == t.accum_iter - 1)
                sums[:5] += torch.tensor([terms["loss"], terms["loss_btnk"], terms.get("loss_full_mae", 0.0), 1, len(images)],
                                         dtype=torch.float64)
                micro += 1
                if micro < t.accum_iter:
                    continue
                row = self._finish_step(sums)
                row["images_per_s"] = round(row["images"] / max(time.perf_counter() - started, 1e-9), 2)
                micro, started = 0, time.perf_counter()
                self._after_step(row, images, bar)
                if self.step >= self.stop_step or self.step % self.updates_per_epoch == 0:
                    break


def train(cfg: TrainConfig, hooks: Sequence[Hook] = (), progress: bool = False) -> TrainResult:
    """Run a training from a config (one process, or one rank of a ``torchrun`` group)."""
    return Trainer(cfg, hooks=hooks, progress=progress).fit()

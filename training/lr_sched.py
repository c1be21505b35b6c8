"""Optimizer parameter groups and the per-step learning rate (MAE's recipe).

- Peak rate ``lr = blr * effective_batch / 256`` with ``effective_batch = batch_size * accum_iter * world_size``.
- Linear warm-up from 0 over ``warmup`` optimizer steps, then a half-cycle cosine down to ``min_lr``
  at the last step, evaluated every optimizer step (the original evaluates it per iteration too).
- Four AdamW groups: encoder / decoder x decay / no decay. The encoder's groups run at
  ``encoder_lr_scale`` (0.1 in the original) of the decoder's rate; norms, biases, 1-D parameters,
  the CLS/mask tokens and the decoder's learned queries get no weight decay (MAE's ``add_weight_decay``).
  (The original builds the 0.1 encoder group but its ``adjust_learning_rate`` then overwrites every
  group with the same rate; here the fraction holds for the whole run.)

Example:
    >>> [round(lr_at(s, peak=1.0, total=10, warmup=2, min_lr=0.0), 3) for s in (0, 1, 2, 6, 9)]
    [0.0, 0.5, 1.0, 0.5, 0.038]
"""

from __future__ import annotations

import math
from typing import Dict, List

import torch

NO_DECAY_NAMES = ("cls_token", "mask_token", "learned_embed", "pos_embed")


def peak_lr(blr: float, effective_batch: int, lr: float | None = None) -> float:
    """The peak learning rate: ``lr`` if given, else ``blr * effective_batch / 256``."""
    return float(lr) if lr is not None else blr * effective_batch / 256


def lr_at(step: int, peak: float, total: int, warmup: int, min_lr: float = 0.0) -> float:
    """Learning rate before optimizer step ``step`` (0-based) of ``total``."""
    if step < warmup:
        return peak * step / warmup
    span = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / span)
    return min_lr + (peak - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def param_groups(model: torch.nn.Module, weight_decay: float, encoder_lr_scale: float) -> List[Dict]:
    """AdamW groups of the trainable parameters, each with an ``lr_scale`` and its ``weight_decay``."""
    groups: Dict[tuple, Dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        part = "encoder" if name.startswith("encoder.") else "decoder"
        no_decay = param.ndim <= 1 or name.endswith(".bias") or name.rsplit(".", 1)[-1] in NO_DECAY_NAMES
        key = (part, not no_decay)
        if key not in groups:
            groups[key] = {
                "params": [], "names": [], "weight_decay": weight_decay if not no_decay else 0.0,
                "lr_scale": encoder_lr_scale if part == "encoder" else 1.0, "group_name": f"{part}_{'decay' if not no_decay else 'no_decay'}",
            }
        groups[key]["params"].append(param)
        groups[key]["names"].append(name)
    return [groups[k] for k in sorted(groups)]


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's rate to ``lr * group['lr_scale']``."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)

"""Checks that stop a run before any work when its config contradicts itself or its start:

- :func:`check_against_checkpoint`: with ``model.init=pretrained:...`` the stored architecture
  wins. A ``model.act_fn``, ``model.preset`` or head count that disagrees with the checkpoint, or
  an ``img_size`` that is not a multiple of its patch, is an error naming both values and the
  fix (the weights would load into another architecture, or be silently changed by it).
- :func:`check_warmup`: a warm-up at least as long as the run's schedule never reaches the peak
  learning rate (the run trains at a fraction of it throughout).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List

from btnk_env.models import BtnkMAEConfig
from btnk_env.models.checkpoint import CONFIG_FILE
from btnk_env.models.config import PRESETS
from btnk_env.models.hub import bundled_path
from btnk_env.training.config import ConfigError

__all__ = ["ARCH_FIELDS", "check_against_checkpoint", "check_warmup"]

ARCH_FIELDS = ("embed_dim", "depth", "num_heads", "patch_size", "decoder_embed_dim", "decoder_depth", "decoder_num_heads")
"""The fields of a preset that are the architecture (``img_size`` is the training resolution)."""


def _stored_heads(source: str) -> dict:
    """Head counts a ``save_pretrained`` folder (or its ``.safetensors``) stores; ``{}`` for
    checkpoints that do not store them (original ``.pth``: there the config supplies them)."""
    path = Path(source) if Path(source).exists() else bundled_path(source)
    if path is None:
        return {}
    folder = path if path.is_dir() else path.parent
    config = folder / CONFIG_FILE
    if not (path.is_dir() or path.suffix == ".safetensors") or not config.is_file():
        return {}
    try:
        stored = json.loads(config.read_text()).get("config", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return {k: stored[k] for k in ("num_heads", "decoder_num_heads") if k in stored}


def check_against_checkpoint(mcfg: Any, config: BtnkMAEConfig, source: str) -> None:
    """Raise :class:`ConfigError` listing every ``model.*`` key that disagrees with ``config``,
    the architecture the checkpoint ``source`` (a path, release or bundled name) holds.

    Example:
        >>> from btnk_env.training.config import ModelConfig
        >>> check_against_checkpoint(ModelConfig(init="pretrained:m", act_fn="relu"), BtnkMAEConfig.from_preset("test"), "m")
        Traceback (most recent call last):
        ...
        btnk_env.training.config.ConfigError: model.init=pretrained:m stores its architecture and it wins: model.act_fn=relu but the checkpoint has act_fn=None. Fix: ...
    """
    problems: List[str] = []
    if mcfg.act_fn is not None and mcfg.act_fn != config.act_fn:
        problems.append(f"model.act_fn={mcfg.act_fn} but the checkpoint has act_fn={config.act_fn}")
    if mcfg.preset is not None:
        preset = {k: v for k, v in PRESETS[mcfg.preset].items() if k in ARCH_FIELDS} if mcfg.preset in PRESETS else {}
        differ = [f"{k} {preset[k]} vs {getattr(config, k)}" for k in ARCH_FIELDS if k in preset and preset[k] != getattr(config, k)]
        if mcfg.preset not in PRESETS:
            problems.append(f"model.preset={mcfg.preset} is not a preset ({sorted(PRESETS)})")
        elif differ:
            problems.append(f"model.preset={mcfg.preset} but the checkpoint's architecture differs ({', '.join(differ)})")
    for key, stored in _stored_heads(source).items():
        value = getattr(mcfg, key)
        if value is not None and value != stored:
            problems.append(f"model.{key}={value} but the checkpoint has {key}={stored}")
    h, w = mcfg.img_hw
    p = config.patch_size
    if h % p or w % p:
        problems.append(f"model.img_size=[{h}, {w}] but the checkpoint's patch is {p} (both sides must be multiples of it)")
    if problems:
        raise ConfigError(
            f"model.init={mcfg.init} stores its architecture and it wins: {'; '.join(problems)}. Fix: remove these keys "
            f"(or set them null: model.preset=null model.act_fn=null) to finetune the checkpoint as stored, or start from "
            f"scratch (model.init=scratch) to train another architecture"
        )


def check_warmup(warmup: int, total_steps: int, where: str) -> None:
    """Raise :class:`ConfigError` when the warm-up (``warmup`` optimizer steps) is at least the
    run's schedule (``total_steps``: ``train.epochs`` times the steps per epoch): the learning
    rate would never reach its peak. ``where``: the config keys that set the warm-up."""
    if total_steps > 0 and warmup >= total_steps:
        raise ConfigError(
            f"the warm-up is {warmup} optimizer steps ({where}) but the whole run is {total_steps} steps: the learning "
            f"rate would never reach its peak; lower optim.warmup_epochs / optim.warmup_iters (e.g. optim.warmup_iters="
            f"{max(0, total_steps // 10)}) or raise train.epochs"
        )

"""Training configuration: dataclasses are the single source of truth.

``configs/*.yaml`` are omegaconf views of :class:`TrainConfig`: they are merged onto
``OmegaConf.structured(TrainConfig)``, so a typo'd key is an error naming the key, and a value
of the wrong type is an error naming the field. Command-line overrides use omegaconf's dotlist
syntax (``train.batch_size=64 optim.blr=1e-4``). Cross-field checks live in ``__post_init__``.

Example:
    >>> cfg = load_config(overrides=["data.path=images", "train.batch_size=8", "model.img_size=[64,64]"])
    >>> cfg.train.batch_size, cfg.model.img_hw
    (8, (64, 64))
    >>> load_config(overrides=["train.batchsize=8"])
    Traceback (most recent call last):
    ...
    btnk_env.training.config.ConfigError: unknown config key 'train.batchsize' ...
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple, Union

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from btnk_env.models.errors import BtnkEnvError

PRECISIONS = ("fp32", "bf16", "fp16")
TRANSFORMS = ("random_resized_crop", "resize")
DATA_KINDS = ("auto", "folder", "panorama", "episodes", "shards", "hf", "render")
DEFAULT_PRESET = "base"
"""The size preset of ``scratch``/``mae:`` inits when ``model.preset`` is not set."""


class ConfigError(BtnkEnvError):
    """A config file or override is invalid; the message names the key and the fix."""


def _positive(key: str, value: float) -> None:
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{key} must be a positive number, got {value}")


def _non_negative(key: str, value: float) -> None:
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{key} must be a finite number >= 0, got {value}")


def _preset_names() -> list:
    from btnk_env.models.config import PRESETS

    return sorted(PRESETS)


@dataclass
class ModelConfig:
    """Which model to train and from which weights."""

    init: str = "scratch"
    """``"scratch"``, ``"mae:<path>"`` (an original MAE checkpoint) or ``"pretrained:<path or
    release name>"`` (a bottleneck MAE: original ``.pth``, ``save_pretrained`` folder, or a
    checkpoint of this trainer)."""
    preset: Optional[str] = None
    """Size preset for ``scratch``/``mae:`` inits (``base``, ``large``, ``huge``, ``small``, ``tiny``,
    ``test``; ``None``: ``base``). With ``pretrained:`` the checkpoint's architecture is used: a
    preset, if set, must match it (else the run stops naming both)."""
    act_fn: Optional[str] = None
    """Activation on the latent (``relu``, ``gelu``, ...); ``None`` keeps the checkpoint's. With
    ``pretrained:`` one that differs from the checkpoint's is an error (the stored one wins)."""
    img_size: List[int] = field(default_factory=lambda: [224, 224])
    """Training resolution ``[H, W]`` (one value means square); the model is set to it with
    ``set_img_size`` after loading (``[512, 512]``: the original panorama recipe,
    ``[256, 512]``: native 2:1 panoramas)."""
    num_heads: Optional[int] = None
    """Encoder head count, for checkpoints with non-standard widths (the tiny golden models: 4)."""
    decoder_num_heads: Optional[int] = None
    """Decoder head count override, as ``num_heads``."""
    dropout: Optional[float] = None
    """Dropout of the bottleneck reconstruction block (the original: 0.1); ``None`` keeps it."""

    def __post_init__(self) -> None:
        if not (self.init == "scratch" or self.init.startswith(("mae:", "pretrained:"))):
            raise ConfigError(f"model.init must be 'scratch', 'mae:<path>' or 'pretrained:<path>', got {self.init!r}")
        if len(self.img_size) not in (1, 2) or any(int(s) <= 0 for s in self.img_size):
            raise ConfigError(f"model.img_size must be [H, W] (or [S]) of positive ints, got {list(self.img_size)}")
        if self.preset is not None and self.init == "scratch" and self.preset not in _preset_names():
            raise ConfigError(f"model.preset must be one of {_preset_names()}, got {self.preset!r}")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout must be in [0, 1), got {self.dropout}")

    @property
    def img_hw(self) -> Tuple[int, int]:
        """``(H, W)`` of the training images."""
        s = [int(v) for v in self.img_size]
        return (s[0], s[0]) if len(s) == 1 else (s[0], s[1])


@dataclass
class DataConfig:
    """Where the training images come from and how they are augmented."""

    path: str = "???"
    """An image folder (searched recursively for PNG/JPEG), a panorama dataset folder (written by
    ``btnk-env collect`` or the original's ``dataset_config.json`` folders), an ``ImageFolder``
    layout (Tiny ImageNet: its ``train/`` is used), an episode folder (``btnk-env collect --mode episodes``),
    a shard set of panoramas or episodes (a folder with ``index.json``, or a brace pattern
    ``data/rooms/shard-{000000..000099}.tar``; streamed, see ``training/shard_stream.py``),
    or ``hf:<name>`` (Hugging Face ``datasets``); for ``kind: render``, the layout seeds of the
    built-in world to render (``0-999``)."""
    kind: str = "auto"
    """``auto`` (shards if the path names a shard set, of panoramas or of episodes; panorama or
    episodes if the folder's ``dataset_config.json`` says so), ``folder``, ``panorama``, ``episodes``
    (the frames of an episode folder's complete episodes), ``shards``, ``hf``, ``render`` (panoramas of the built-in
    world rendered at new random poses every epoch: :mod:`btnk_env.training.online_data`)."""
    split: str = "train"
    """Split of a Hugging Face dataset, or sub-folder of an ``ImageFolder`` root if it exists."""
    transform: str = "auto"
    """``random_resized_crop`` (MAE's: scale ``crop_scale``, bicubic, random flip), ``resize``
    (the whole image to ``model.img_size``, the original panorama recipe) or ``auto``
    (``resize`` for panoramas, ``random_resized_crop`` otherwise)."""
    crop_scale: List[float] = field(default_factory=lambda: [0.2, 1.0])
    """Area range of ``random_resized_crop``."""
    hflip: Optional[bool] = None
    """Random horizontal flip; ``None``: on for ``random_resized_crop``, off for ``resize``."""
    pano_roll: bool = False
    """Random circular horizontal shift (a yaw rotation of an equirectangular panorama)."""
    max_images: Optional[int] = None
    """Use only the first N images (sorted), for quick runs; for ``kind: render``, the panoramas per epoch (required)."""
    num_workers: int = 0
    """DataLoader worker processes."""

    def __post_init__(self) -> None:
        if self.kind not in DATA_KINDS:
            raise ConfigError(f"data.kind must be one of {DATA_KINDS}, got {self.kind!r}")
        if self.transform not in TRANSFORMS + ("auto",):
            raise ConfigError(f"data.transform must be one of {TRANSFORMS + ('auto',)}, got {self.transform!r}")
        lo, hi = (list(self.crop_scale) + [None, None])[:2]
        if len(self.crop_scale) != 2 or not 0 < lo <= hi <= 1:
            raise ConfigError(f"data.crop_scale must be [lo, hi] with 0 < lo <= hi <= 1, got {list(self.crop_scale)}")
        if self.num_workers < 0:
            raise ConfigError(f"data.num_workers must be >= 0, got {self.num_workers}")
        if self.max_images is not None and self.max_images < 1:
            raise ConfigError(f"data.max_images must be >= 1 or null, got {self.max_images}")


@dataclass
class OptimConfig:
    """AdamW and the learning-rate schedule (MAE's recipe)."""

    blr: float = 1e-3
    """Base learning rate; the peak rate is ``blr * effective_batch / 256`` unless ``lr`` is set."""
    lr: Optional[float] = None
    """Absolute peak learning rate (overrides ``blr``)."""
    min_lr: float = 0.0
    """Floor of the half-cycle cosine."""
    weight_decay: float = 0.05
    """Decoupled weight decay (not on norms, biases, tokens and learned queries)."""
    betas: List[float] = field(default_factory=lambda: [0.9, 0.95])
    """AdamW betas."""
    encoder_lr_scale: float = 0.1
    """Encoder learning rate as a fraction of the decoder's (the original: 0.1)."""
    warmup_epochs: float = 0.0
    """Linear warm-up length in epochs (converted to optimizer steps)."""
    warmup_iters: Optional[int] = None
    """Linear warm-up length in optimizer steps (overrides ``warmup_epochs``)."""
    clip_grad: Optional[float] = None
    """Clip the global gradient norm to this value."""

    def __post_init__(self) -> None:
        _positive("optim.blr", self.blr)
        if self.lr is not None:
            _positive("optim.lr", self.lr)
        for name in ("min_lr", "weight_decay", "encoder_lr_scale", "warmup_epochs"):
            _non_negative(f"optim.{name}", getattr(self, name))
        if self.lr is not None and self.min_lr > self.lr:
            raise ConfigError(f"optim.min_lr={self.min_lr} is above optim.lr={self.lr}; the floor must be below the peak")
        if self.warmup_iters is not None and self.warmup_iters < 0:
            raise ConfigError(f"optim.warmup_iters must be >= 0 or null, got {self.warmup_iters}")
        if self.clip_grad is not None:
            _positive("optim.clip_grad", self.clip_grad)
        if len(self.betas) != 2 or not all(math.isfinite(b) and 0 <= b < 1 for b in self.betas):
            raise ConfigError(f"optim.betas must be [b1, b2] in [0, 1), got {list(self.betas)}")


@dataclass
class LoopConfig:
    """The training loop (the ``train`` section)."""

    epochs: int = 100
    """Number of epochs (passes over the dataset)."""
    batch_size: int = 32
    """Images per process per micro-batch."""
    accum_iter: int = 1
    """Micro-batches accumulated per optimizer step."""
    max_steps: Optional[int] = None
    """Stop after this many optimizer steps in total (the schedule still follows ``epochs``)."""
    precision: str = "fp32"
    """``fp32``, ``bf16`` (autocast, CPU or CUDA) or ``fp16`` (autocast + grad scaler, CUDA only)."""
    device: str = "auto"
    """``auto`` (CUDA if available), ``cpu``, ``cuda``."""
    seed: int = 0
    """Seed of initialisation, data order, augmentation and dropout."""
    btnk_loss_coeff: float = 1.0
    """Weight of the reconstruction-from-the-latent loss."""
    full_mae_loss_coeff: float = 1.0
    """Weight of the original's full-MAE loss (MAE's decoder over all tokens); 0 skips it."""
    norm_pix_loss: bool = False
    """Normalize each target patch to zero mean / unit variance (MAE's option)."""
    resume: Optional[str] = None
    """A checkpoint of this trainer to continue from, or ``auto`` (``io.out_dir``'s latest, if any)."""
    overwrite: bool = False
    """Start over in an ``io.out_dir`` that already holds a run, removing that run's checkpoints,
    metrics and final model (without it, such a folder needs ``resume=auto`` or another ``io.out_dir``)."""

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "accum_iter"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"train.precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ConfigError(f"train.device must be auto, cpu or cuda, got {self.device!r}")
        _non_negative("train.btnk_loss_coeff", self.btnk_loss_coeff)
        _non_negative("train.full_mae_loss_coeff", self.full_mae_loss_coeff)
        if self.btnk_loss_coeff + self.full_mae_loss_coeff == 0:
            raise ConfigError("train.btnk_loss_coeff and train.full_mae_loss_coeff must be >= 0, not both 0")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"train.max_steps must be >= 1 or null, got {self.max_steps}")


@dataclass
class IOConfig:
    """Outputs: checkpoints, metrics, snapshots, optional TensorBoard / wandb."""

    out_dir: str = "runs/default"
    """Run folder: checkpoints, ``metrics.jsonl``/``.csv``, ``snapshots/``, ``final/``."""
    save_every: int = 1
    """Keep a numbered checkpoint every K epochs (``checkpoint-latest.pth`` is always written)."""
    save_every_steps: Optional[int] = None
    """Also write ``checkpoint-latest.pth`` every K optimizer steps (mid-epoch)."""
    log_every: int = 10
    """Write a metrics row every K optimizer steps."""
    snapshot_every: Optional[int] = 500
    """Save an input | reconstruction PNG grid every K optimizer steps (``None``: never)."""
    progress: bool = True
    """Show a tqdm progress bar (rank 0, CLI)."""
    tensorboard: bool = False
    """Log to TensorBoard (if ``tensorboard`` is installed)."""
    wandb: bool = False
    """Log to Weights & Biases (if ``wandb`` is installed)."""
    wandb_project: str = "btnk_mae"
    """wandb project name."""
    run_name: Optional[str] = None
    """Run name for wandb (default: the out_dir's name)."""

    def __post_init__(self) -> None:
        for name in ("save_every", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"io.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("save_every_steps", "snapshot_every"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"io.{name} must be >= 1 or null, got {getattr(self, name)}")


@dataclass
class DistConfig:
    """Distributed data parallel (started by ``torchrun``, read from its environment)."""

    backend: str = "auto"
    """``auto`` (NCCL on CUDA, Gloo on CPU), ``nccl`` or ``gloo``."""
    timeout_s: int = 1800
    """Collective timeout."""

    def __post_init__(self) -> None:
        if self.backend not in ("auto", "nccl", "gloo"):
            raise ConfigError(f"dist.backend must be auto, nccl or gloo, got {self.backend!r}")
        if self.timeout_s < 1:
            raise ConfigError(f"dist.timeout_s must be >= 1, got {self.timeout_s}")


@dataclass
class TrainConfig:
    """Everything a training run needs; ``configs/*.yaml`` are views of this."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: LoopConfig = field(default_factory=LoopConfig)
    io: IOConfig = field(default_factory=IOConfig)
    dist: DistConfig = field(default_factory=DistConfig)


PathLike = Union[str, "os.PathLike[str]"]


def _schema(schema: type = None):
    return OmegaConf.structured(schema or TrainConfig)


def _explain(err: OmegaConfBaseException, source: str, schema: type = None) -> ConfigError:
    key = getattr(err, "full_key", None) or ""
    if isinstance(err, ConfigKeyError) or "not in struct" in str(err) or "Key '" in str(err) and "not in" in str(err):
        section = key.rsplit(".", 1)[0] if "." in key else ""
        known = ""
        try:
            node = OmegaConf.select(_schema(schema), section) if section else _schema(schema)
            known = f"; known keys of {section or 'the config'}: {sorted(node.keys())}"
        except Exception:  # pragma: no cover - best effort hint
            pass
        return ConfigError(f"unknown config key {key!r} in {source}{known}")
    if isinstance(err, ValidationError):
        return ConfigError(f"bad value for {key!r} in {source}: {str(err).splitlines()[0]}")
    return ConfigError(f"invalid config in {source}: {err}")


def _shipped_config(name: str) -> Optional[Path]:
    """The shipped config ``name`` (``btnk-env config list``), or ``None``."""
    from btnk_env.recipes import config_dir

    path = config_dir() / (name if name.endswith(".yaml") else f"{name}.yaml")
    return path if path.is_file() else None


def merge_config(yaml_path: Optional[PathLike] = None, overrides: Sequence[str] = (), schema: type = None):
    """The merged omegaconf ``DictConfig`` (schema <- yaml <- dotlist), unvalidated cross-fields.

    ``schema``: the config dataclass (default :class:`TrainConfig`; the world-model trainer passes its own).
    """
    cfg = _schema(schema)
    if yaml_path is not None:
        path = Path(yaml_path)
        if not path.is_file() and path.suffix in ("", ".yaml") and len(path.parts) == 1:
            path = _shipped_config(path.name) or path  # a shipped config by name: --config smoke_cpu
        if not path.is_file():
            raise ConfigError(f"config file not found: {path} (the shipped configs: btnk-env config list)")
        try:
            cfg = OmegaConf.merge(cfg, OmegaConf.load(path))
        except OmegaConfBaseException as err:
            raise _explain(err, str(path), schema) from None
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{path} does not fit the config: {err}") from None
        except yaml.YAMLError as err:  # also a python/object tag: the safe loader never constructs one
            raise ConfigError(f"{path} is not a valid YAML config: {' '.join(str(err).split())[:300]}") from None
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ConfigError(f"overrides must be key=value (dotlist), got {bad}; e.g. train.batch_size=64")
    if overrides:
        try:
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
        except OmegaConfBaseException as err:
            raise _explain(err, "the command-line overrides", schema) from None
        except (TypeError, ValueError) as err:  # omegaconf: "Cannot merge incompatible container types"
            raise ConfigError(f"the command-line overrides do not fit the config: {err}; e.g. optim.betas=[0.9,0.95]") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"an override is not a valid value: {' '.join(str(err).split())[:200]}; quote "
                              f"strings, write lists as [a,b]") from None
    return cfg


def load_config(yaml_path: Optional[PathLike] = None, overrides: Sequence[str] = (), schema: type = None) -> Any:
    """Load a :class:`TrainConfig` (or another ``schema`` dataclass) from an optional YAML file
    plus dotlist overrides.

    Raises:
        ConfigError: unknown key (named), wrong type, missing ``data.path`` or an invalid value.
    """
    schema = schema or TrainConfig
    cfg = merge_config(yaml_path, overrides, schema)
    try:
        obj = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as err:
        if "missing mandatory value" in str(err).lower():
            key = getattr(err, "full_key", None) or "a required key"
            raise ConfigError(f"{key} must be set (in the YAML or as {key}=...)") from None
        raise _explain(err, str(yaml_path or "the config"), schema) from None
    assert isinstance(obj, schema)
    return obj


def to_dict(cfg: Any) -> dict:
    """Plain nested dict (for checkpoints and logs)."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]


def from_dict(values: dict) -> TrainConfig:
    """Inverse of :func:`to_dict` (unknown keys are errors)."""
    try:
        return OmegaConf.to_object(OmegaConf.merge(_schema(), OmegaConf.create(values)))  # type: ignore[return-value]
    except OmegaConfBaseException as err:
        raise _explain(err, "the stored config") from None


def to_yaml(cfg: Any) -> str:
    """YAML text of a config (written next to the checkpoints as ``config.yaml``)."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


__all__ = [
    "ConfigError", "DataConfig", "DistConfig", "IOConfig", "LoopConfig", "ModelConfig", "OptimConfig",
    "TrainConfig", "from_dict", "load_config", "merge_config", "to_dict", "to_yaml",
]

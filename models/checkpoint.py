"""Reading checkpoints safely and mapping them onto :class:`models.BtnkMAE`.

Three layouts are understood:

- the original btnk_mae training format: ``{"enc_model", "dec_model", "optimizer", "epoch",
  "scaler", "cfg"}`` where ``cfg`` is a pickled omegaconf ``DictConfig``;
- the original MAE format ``{"model": MaskedAutoencoderViT state dict}``;
- this project's format: ``model.safetensors`` + ``config.json`` (:func:`save_pretrained`);
- this project's training checkpoint ``{"model", "model_config", ...}`` (``training/checkpointing.py``).

:func:`load_pretrained`, :func:`load_mae` and :func:`save_pretrained` are what
``BtnkMAE.from_pretrained``, ``BtnkMAE.from_mae`` and ``BtnkMAE.save_pretrained`` call.

Pickles are read with ``torch.load(weights_only=True)``: only tensors, containers and the few
inert omegaconf classes the original stores are allowed, so a checkpoint can never run code.
Every load is strict: missing, unexpected and mis-shaped keys raise :class:`CheckpointError`.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import math
import os
import pickle
import re
import typing
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

import torch

from btnk_env.models.config import STANDARD_HEADS, BtnkMAEConfig
from btnk_env.models.errors import BtnkEnvError
from btnk_env.models.files import atomic_path, atomic_write_text, claim_dir
from btnk_env.models.hub import BUNDLED, RELEASES, bundled_path, download_release, release_filename
from btnk_env.models.hub_push import download_repo, repo_id_of
from btnk_env.models.pos_embed import sincos_pos_embed

StateDict = Dict[str, torch.Tensor]
PathLike = Union[str, "os.PathLike[str]"]

CONFIG_FILE = "config.json"
"""The config file of a :func:`save_pretrained` folder."""
WEIGHTS_FILE = "model.safetensors"
"""The weights file of a :func:`save_pretrained` folder."""
MODEL_TYPE = "btnk_mae"
FORMAT_VERSION = 1

logger = logging.getLogger(__name__)


class CheckpointError(BtnkEnvError):
    """A checkpoint cannot be read or does not fit the model; the message says why and what to do."""


def _omegaconf_safe_globals() -> list:
    try:
        from omegaconf import DictConfig, ListConfig
        from omegaconf.base import ContainerMetadata, Metadata
        from omegaconf.nodes import AnyNode, BooleanNode, FloatNode, IntegerNode, StringNode
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        return []
    return [DictConfig, ListConfig, ContainerMetadata, Metadata, AnyNode, BooleanNode, FloatNode,
            IntegerNode, StringNode, typing.Any, dict, list, collections.defaultdict, collections.OrderedDict]


def load_file(path: "str | os.PathLike[str]") -> Dict[str, Any]:
    """Load a ``.pth``/``.pt`` checkpoint without executing code.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: truncated/corrupt file, not a PyTorch checkpoint, or a pickle that asks
            for anything but tensors and plain containers (for example a malicious payload).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): an interrupted download? Download it again.")
    with open(path, "rb") as fh:
        head = fh.read(64)
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):  # zip (torch.save) or legacy pickle
        looks_html = head.lstrip().lower().startswith((b"<!doctype", b"<html"))
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint"
            + (" but an HTML page (a '/blob/' link saves the web page; use '/resolve/')" if looks_html else "")
            + ". Download it again."
        )
    try:
        with torch.serialization.safe_globals(_omegaconf_safe_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        names = re.findall(r"GLOBAL ([\w.]+ [\w.]+)|Unsupported global: GLOBAL ([\w.]+)", str(err))
        what = ", ".join(a or b for a, b in names) or "objects other than tensors"
        raise CheckpointError(
            f"refusing to load {path}: its pickle asks for {what}, which could run code. Only "
            f"checkpoints made of tensors and plain containers are loaded; if you trust this file, "
            f"convert it once with torch.load(weights_only=False) and save its state dicts."
        ) from None
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except Exception as err:  # noqa: BLE001 - a damaged file fails anywhere in the unpickler: all mean "corrupt"
        raise CheckpointError(
            f"cannot read {path} as a PyTorch checkpoint ({type(err).__name__}: {str(err)[:200]}). "
            f"The file is truncated or corrupt, or is not a checkpoint (an HTML page saved from a "
            f"'/blob/' link?). Download it again."
        ) from None
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a checkpoint dict")
    return dict(obj)


def config_from_saved(values: Any, overrides: Mapping[str, Any], source: str) -> BtnkMAEConfig:
    """The config this project stored (``config.json``'s ``config``, a checkpoint's ``model_config``).

    Every field must be there (``BtnkMAEConfig.to_dict`` writes them all): a missing ``act_fn``
    would otherwise load as "no activation" and a missing size as a default, silently.
    ``overrides`` may supply what is missing.
    """
    if not isinstance(values, Mapping):
        raise CheckpointError(f"{source}: the stored model config is a {type(values).__name__}, not a mapping")
    fields = [f.name for f in dataclasses.fields(BtnkMAEConfig)]
    missing = [k for k in fields if k not in values and k not in overrides]
    if missing:
        raise CheckpointError(
            f"{source}: the stored model config has no {missing}; this format stores every field (save_pretrained "
            f"writes them all), so a missing one is not guessed. Add it to the file (\"act_fn\": null means no "
            f"activation) or pass it: from_pretrained(path, {missing[0]}=...)"
        )
    try:
        return BtnkMAEConfig.from_dict({**values, **overrides})
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{source}: the stored model config is invalid: {err}") from None


def _plain(obj: Any) -> Any:
    """omegaconf containers -> plain dicts/lists (other values unchanged)."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(obj, (DictConfig, ListConfig)):
            return OmegaConf.to_container(obj, resolve=False)
    except ImportError:  # pragma: no cover
        pass
    return obj


def _count_blocks(sd: Mapping[str, torch.Tensor], prefix: str) -> int:
    idx = {int(m.group(1)) for k in sd if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}
    return max(idx) + 1 if idx else 0


def _heads(width: int, override: Optional[int], field: str) -> int:
    if override is not None:
        return int(override)
    if width in STANDARD_HEADS:
        return STANDARD_HEADS[width]
    raise CheckpointError(
        f"the checkpoint's width {width} is not a standard ViT size, so its head count cannot be "
        f"read from the tensors; pass it: from_pretrained(path, {field}=...)"
    )


def _require(sd: Mapping[str, torch.Tensor], key: str, where: str) -> torch.Tensor:
    if key not in sd:
        raise CheckpointError(f"{where} has no tensor {key!r}: not a bottleneck MAE / MAE checkpoint")
    return sd[key]


def infer_original_config(
    enc: Mapping[str, torch.Tensor], dec: Mapping[str, torch.Tensor], cfg: Optional[Mapping[str, Any]], **overrides: Any
) -> BtnkMAEConfig:
    """Sizes of an original btnk_mae checkpoint from its tensors and stored ``cfg``.

    Widths, depths, patch size, MLP ratio and the patch count come from the tensors; the
    activation and (non-square) image size from ``cfg["model"]``; head counts from the standard
    ViT table. ``overrides`` (config field names) win over everything.
    """
    model_cfg = dict((cfg or {}).get("model") or {})
    proj = _require(enc, "mae_encoder.patch_embed.proj.weight", "enc_model")
    embed_dim, patch = int(proj.shape[0]), int(proj.shape[-1])
    fc1 = _require(enc, "mae_encoder.blocks.0.mlp.fc1.weight", "enc_model")
    dec_embed = _require(dec, "mae_decoder.decoder_embed.weight", "dec_model")
    n_patches = int(_require(dec, "learned_embed", "dec_model").shape[1])
    values: Dict[str, Any] = dict(
        embed_dim=embed_dim,
        depth=_count_blocks(enc, "mae_encoder.blocks."),
        patch_size=patch,
        mlp_ratio=fc1.shape[0] / embed_dim,
        decoder_embed_dim=int(dec_embed.shape[0]),
        decoder_depth=_count_blocks(dec, "mae_decoder.decoder_blocks."),
        act_fn=model_cfg.get("act_fn"),
    )
    size = model_cfg.get("img_size")
    if size is None or (_grid_count(size, patch) != n_patches):
        side = round(n_patches**0.5) * patch
        if (side // patch) ** 2 != n_patches:
            raise CheckpointError(
                f"the checkpoint has {n_patches} decoder queries, not a square grid; pass img_size=(H, W)"
            )
        size = side
    values["img_size"] = tuple(size) if isinstance(size, (list, tuple)) else int(size)
    values.update(overrides)
    values["num_heads"] = _heads(embed_dim, overrides.get("num_heads"), "num_heads")
    values["decoder_num_heads"] = _heads(values["decoder_embed_dim"], overrides.get("decoder_num_heads"), "decoder_num_heads")
    try:
        return BtnkMAEConfig(**values)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"the checkpoint's sizes do not form a valid config: {err}") from None


def _grid_count(size: Any, patch: int) -> int:
    h, w = (size, size) if isinstance(size, int) else size
    return (h // patch) * (w // patch)


def _check_fixed_table(table: torch.Tensor, dim: int, grid, cls_token: bool, name: str) -> None:
    expected = sincos_pos_embed(dim, grid, cls_token=cls_token)
    if table.shape != expected.shape or not torch.allclose(table.float(), expected, atol=1e-4):
        raise CheckpointError(
            f"the checkpoint's {name} {tuple(table.shape)} is not the fixed sin-cos table of a "
            f"{grid[0]}x{grid[1]} grid; pass the right img_size=(H, W)"
        )


def convert_original(enc: Mapping[str, torch.Tensor], dec: Mapping[str, torch.Tensor], config: BtnkMAEConfig) -> StateDict:
    """Original ``enc_model``/``dec_model`` state dicts -> a ``BtnkMAE`` state dict.

    The fixed sin-cos tables are checked against the config's grid and dropped (they are
    recomputed, not stored).
    """
    out: StateDict = {}
    for key, value in enc.items():
        if key == "pos_embed":
            _check_fixed_table(value, config.embed_dim, config.grid_size, True, "enc_model.pos_embed")
        elif key.startswith("mae_encoder."):
            out["encoder." + key[len("mae_encoder."):]] = value
        else:
            out["encoder." + key] = value
    for key, value in dec.items():
        if key == "pos_embed":
            _check_fixed_table(value, config.embed_dim, config.grid_size, False, "dec_model.pos_embed")
        elif key == "mae_decoder.decoder_pos_embed":
            _check_fixed_table(value, config.decoder_embed_dim, config.grid_size, True, "decoder_pos_embed")
        elif key.startswith("mae_decoder."):
            out["decoder." + key[len("mae_decoder."):]] = value
        else:
            out["decoder." + key] = value
    return out


def to_original(state_dict: Mapping[str, torch.Tensor], config: BtnkMAEConfig) -> Dict[str, StateDict]:
    """``BtnkMAE`` state dict -> ``{"enc_model": ..., "dec_model": ...}`` in the original layout
    (sin-cos tables included), loadable by the original code."""
    enc: StateDict = {"pos_embed": sincos_pos_embed(config.embed_dim, config.grid_size, cls_token=True)}
    dec: StateDict = {
        "pos_embed": sincos_pos_embed(config.embed_dim, config.grid_size),
        "mae_decoder.decoder_pos_embed": sincos_pos_embed(config.decoder_embed_dim, config.grid_size, cls_token=True),
    }
    for key, value in state_dict.items():
        group, _, rest = key.partition(".")
        if group == "encoder":
            enc[rest if rest == "cls_token" else "mae_encoder." + rest] = value
        elif group == "decoder":
            top = rest == "learned_embed" or rest.startswith("patch_recon.")
            dec[rest if top else "mae_decoder." + rest] = value
    return {"enc_model": enc, "dec_model": dec}


#: MAE checkpoint prefixes -> BtnkMAE prefixes (fixed tables are checked, then dropped).
_MAE_ENCODER = ("cls_token", "patch_embed.", "blocks.", "norm.")
_MAE_DECODER = ("decoder_embed.", "mask_token", "decoder_blocks.", "decoder_norm.", "decoder_pred.")


def convert_mae(model: Mapping[str, torch.Tensor], config: BtnkMAEConfig) -> StateDict:
    """MAE ``MaskedAutoencoderViT`` state dict -> the parts of a ``BtnkMAE`` state dict it provides."""
    out: StateDict = {}
    unknown = []
    mae_grid = None
    for key, value in model.items():
        if key in ("pos_embed", "decoder_pos_embed"):
            n = value.shape[1] - 1
            mae_grid = (round(n**0.5),) * 2
            dim = config.embed_dim if key == "pos_embed" else config.decoder_embed_dim
            _check_fixed_table(value, dim, mae_grid, True, key)
        elif key.startswith(_MAE_ENCODER):
            out["encoder." + key] = value
        elif key.startswith(_MAE_DECODER):
            out["decoder." + key] = value
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(f"unexpected keys in the MAE checkpoint: {unknown[:10]}")
    return out


def load_state_dict_strict(module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], source: str,
                           allow_missing: tuple = ()) -> None:
    """``module.load_state_dict`` that names every missing, unexpected or mis-shaped key.

    Keys starting with a prefix in ``allow_missing`` may be absent (they keep their init).
    """
    own = module.state_dict()
    not_tensors = [k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(f"{source}: entries {not_tensors[:8]} are not tensors")
    dtypes = [f"{k}: {v.dtype}" for k, v in state_dict.items()
              if k in own and own[k].is_floating_point() and not v.is_floating_point()]
    if dtypes:
        raise CheckpointError(
            f"{source} stores weights that are not floating point ({len(dtypes)}): {dtypes[:8]}; weights must be "
            f"float32, float16, bfloat16 or float64. The file was not written by save_pretrained, or is damaged."
        )
    wide = [k for k, v in state_dict.items() if k in own and v.dtype == torch.float64]
    if wide:
        logger.warning("%s stores %d tensors as float64; loaded as the model's %s", source, len(wide), own[wide[0]].dtype)
    missing = [k for k in own if k not in state_dict and not k.startswith(allow_missing)]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
              for k, v in state_dict.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {missing[:8]}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {unexpected[:8]}")
        if shapes:
            parts.append(f"shape mismatches ({len(shapes)}): {shapes[:8]}")
        raise CheckpointError(
            f"{source} does not fit this model: " + "; ".join(parts)
            + ". Check that the checkpoint and the config (preset, sizes, img_size) belong together."
        )
    module.load_state_dict(state_dict, strict=not allow_missing)


# ---------------------------------------------------------------------------- whole models
def save_pretrained(model: torch.nn.Module, directory: PathLike, dtype: Optional[torch.dtype] = None) -> Path:
    """Write ``config.json`` and ``model.safetensors`` of ``model`` (a ``BtnkMAE``) into
    ``directory`` (atomically per file); ``dtype`` stores the weights at that precision.

    ``directory`` must be new, empty, or a model folder written here (it is marked as such,
    :mod:`btnk_env.models.files`); a folder of other files is refused.
    """
    from safetensors.torch import save_file

    directory = claim_dir(directory, "model", "choose a new folder for the model", _legacy_model_folder)
    state = {k: v.detach().to(dtype or v.dtype).contiguous().cpu() for k, v in model.state_dict().items()}
    meta = {"model_type": MODEL_TYPE, "format_version": FORMAT_VERSION, "config": model.config.to_dict()}
    with atomic_path(directory / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp), metadata={"model_type": MODEL_TYPE})
    atomic_write_text(directory / CONFIG_FILE, json.dumps(meta, indent=2) + "\n")
    return directory


def _legacy_model_folder(folder: Path) -> bool:
    """A folder an earlier version's ``save_pretrained`` wrote (before folders were marked)."""
    names = {p.name for p in folder.iterdir()}
    if not names <= {CONFIG_FILE, WEIGHTS_FILE} or CONFIG_FILE not in names:
        return False
    try:
        return json.loads((folder / CONFIG_FILE).read_text()).get("model_type") == MODEL_TYPE
    except (OSError, ValueError, AttributeError):
        return False


def load_pretrained(model_cls: type, name_or_path: PathLike, *, map_location: Any = "cpu", **overrides: Any) -> Any:
    """A ``model_cls`` (``BtnkMAE``) from a folder, ``.safetensors``, original or training
    ``.pth``, release name or bundled model, in eval mode on ``map_location``."""
    path = Path(os.fspath(name_or_path))
    repo_id = repo_id_of(str(name_or_path))
    if repo_id is not None:  # hf:owner/name, a model pushed with push_to_hub
        path = download_repo(repo_id)
    elif not path.exists():
        bundled = bundled_path(str(name_or_path))
        if bundled is not None:
            path = bundled
        elif release_filename(str(name_or_path)) is not None:
            path = download_release(str(name_or_path))
        else:
            raise FileNotFoundError(
                f"{str(name_or_path)!r} is not a file, a folder, a release name {sorted(RELEASES)} "
                f"or a bundled model {sorted(BUNDLED)}"
            )
    if path.is_dir() or path.suffix == ".safetensors":
        config, weights = _read_safetensors_config(path, overrides)
        model = build_for_weights(model_cls, config, weights)  # sizes checked before any allocation
        state, source = _read_safetensors_state(weights)
    else:
        config, state, source = _read_pickle(path, overrides)
        model = model_cls(config)
    load_state_dict_strict(model, state, source)
    return model.to(map_location).eval()


def load_mae(model_cls: type, path: PathLike, preset_or_config: Any = "base", **overrides: Any) -> Any:
    """A ``model_cls`` (``BtnkMAE``) started from an original MAE checkpoint; the bottleneck parts
    (decoder queries, cross-attention) keep their fresh initialisation."""
    model = model_cls(preset_or_config, **overrides).train(False)
    obj = load_file(path)
    if "model" not in obj:
        raise CheckpointError(f"{path} has keys {sorted(obj)[:8]}; an MAE checkpoint has 'model'")
    state = convert_mae(obj["model"], model.config)
    load_state_dict_strict(model, state, str(path), allow_missing=("decoder.learned_embed", "decoder.patch_recon."))
    return model


MAX_SAFETENSORS_HEADER = 100 << 20
"""A ``.safetensors`` header (JSON) larger than this is refused (the safetensors library's own limit)."""


_SAFETENSORS_ITEMSIZE = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2,
                         "U16": 2, "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


def safetensors_shapes(path: PathLike) -> Dict[str, tuple]:
    """``{name: shape}`` of a ``.safetensors`` file from its header alone (no tensor is read).

    Every tensor's bytes lie inside the file and are exactly as many as its shape and dtype need,
    so the elements of the shapes returned never exceed the file's size.

    Raises:
        CheckpointError: the header is not one (too short or long, not JSON), or a tensor's bytes
            lie beyond the end of the file (truncated) or do not match its shape.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            n = int.from_bytes(fh.read(8), "little")
            if not 2 <= n <= min(size - 8, MAX_SAFETENSORS_HEADER):
                raise ValueError(f"header of {n} bytes in a file of {size}")
            header = json.loads(fh.read(n))
        shapes = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            shape, (begin, end) = tuple(int(v) for v in info["shape"]), info["data_offsets"]
            if not 0 <= begin <= end <= size - 8 - n:
                raise ValueError(f"tensor {name!r} ends at byte {8 + n + end} of {size}")
            if math.prod(shape) * _SAFETENSORS_ITEMSIZE[info["dtype"]] != end - begin or min(shape, default=0) < 0:
                raise ValueError(f"tensor {name!r} of shape {shape[:8]} ({info['dtype']}) holds {end - begin} bytes")
            shapes[name] = shape
    except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError) as err:
        raise CheckpointError(f"cannot read {path}: {type(err).__name__}: {str(err)[:160]}. The file is truncated or "
                              "corrupt; download or save it again") from None
    return shapes


class _ElementLimit(torch.overrides.TorchFunctionMode):
    """While building a model: refuse, before it allocates, a tensor that takes the elements created so
    far over ``limit`` (``build_for_weights``: a config asking for far more than its weights hold)."""

    SIZED = (torch.empty, torch.zeros, torch.ones, torch.rand, torch.randn)  # f(*size) or f(size)
    COUNTED_AFTER = (torch.arange, torch.linspace, torch.eye, torch.tensor, torch.randint, torch.empty_strided)

    def __init__(self, limit: int, refuse: Any) -> None:
        super().__init__()
        self.limit, self.refuse, self.created = limit, refuse, 0

    def _add(self, n: int) -> None:
        self.created += n
        if self.created > self.limit:
            self.refuse(self.created)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.SIZED or func is torch.full:
            size = kwargs.get("size", args[0] if func is torch.full or (len(args) == 1 and not isinstance(args[0], int))
                              else args)
            self._add(math.prod(int(v) for v in ((size,) if isinstance(size, int) else size)))
        out = func(*args, **kwargs)
        if func in self.COUNTED_AFTER and isinstance(out, torch.Tensor):
            self._add(out.numel())
        return out


#: elements a model build may create beyond twice its weights' (buffers such as position tables)
BUILD_SLACK_ELEMENTS = 16 << 20


def build_for_weights(build: Any, config: Any, weights: PathLike) -> Any:
    """``build(config)``, checked against the weights' header: the tensors the build creates may hold
    at most twice the elements the weights hold (plus :data:`BUILD_SLACK_ELEMENTS`), refused before
    the one that would go over is allocated, so a ``config.json`` with huge sizes costs nothing;
    then every tensor's shape must be the one the header records.

    Raises:
        CheckpointError: names the first tensor whose shape (or presence) differs, or the sizes, and the fix.
    """
    found = safetensors_shapes(weights)
    held = sum(math.prod(s) for s in found.values())

    def refuse(created: int) -> None:
        raise CheckpointError(f"{weights}: the config beside them builds a model of more than {created} elements, the "
                              f"weights hold {held}: config.json and the weights disagree; use the files saved together")

    with _ElementLimit(2 * held + BUILD_SLACK_ELEMENTS, refuse):
        model = build(config)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for name in sorted(set(expected) | set(found)):
        if expected.get(name) != found.get(name):
            raise CheckpointError(
                f"{weights}: {name} is {found.get(name, 'absent')} in the weights but {expected.get(name, 'absent')} "
                f"by the config beside them: config.json and the weights disagree; use the files saved together")
    return model


def _read_safetensors_config(path: Path, overrides: dict) -> tuple:
    """``(config, weights path)`` of a safetensors folder or file."""
    folder, weights = (path, path / WEIGHTS_FILE) if path.is_dir() else (path.parent, path)
    config_path = folder / CONFIG_FILE
    if not config_path.is_file() or not weights.is_file():
        raise CheckpointError(f"{folder} must hold {CONFIG_FILE} and {weights.name} (written by save_pretrained)")
    try:
        meta = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise CheckpointError(f"{config_path} is not valid JSON ({type(err).__name__})") from None
    if not isinstance(meta, dict) or meta.get("model_type") != MODEL_TYPE or "config" not in meta:
        raise CheckpointError(f"{config_path} is not a btnk_mae config (model_type {MODEL_TYPE!r} expected)")
    return config_from_saved(meta["config"], overrides, str(config_path)), weights


def _read_safetensors_state(weights: Path) -> tuple:
    """``(state dict, source name)`` of a ``.safetensors`` file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file as load_safetensors

    safetensors_shapes(weights)  # a truncated file is refused before anything is read
    try:
        state = load_safetensors(str(weights))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"cannot read {weights}: {err}. The file is truncated or corrupt.") from None
    return state, str(weights)


def _read_pickle(path: Path, overrides: dict) -> tuple:
    obj = load_file(path)
    if "enc_model" in obj and "dec_model" in obj:
        enc, dec = obj["enc_model"], obj["dec_model"]
        if "model_config" in obj:
            config = config_from_saved(obj["model_config"], overrides, str(path))
        else:
            config = infer_original_config(enc, dec, _plain(obj.get("cfg")), **overrides)
        state = convert_original(enc, dec, config)
    elif "model" in obj and "model_config" in obj:
        config = config_from_saved(obj["model_config"], overrides, str(path))
        state = obj["model"]
    elif "model" in obj:
        raise CheckpointError(
            f"{path} is an MAE checkpoint ({{'model': ...}}), not a bottleneck MAE; start from it with "
            f"BtnkMAE.from_mae('{path}', 'base')"
        )
    else:
        raise CheckpointError(
            f"{path} has keys {sorted(obj)[:8]}; expected an original btnk_mae checkpoint "
            f"('enc_model', 'dec_model') or this project's training checkpoint ('model', 'model_config')"
        )
    return config, state, str(path)

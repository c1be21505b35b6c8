"""An action-conditioned latent dynamics model: the world model beside the bottleneck MAE.

Given the last ``K`` latents of an episode and the actions taken at them, :class:`LatentDynamics`
predicts the next latent. Latents are standardized per dimension with the training data's mean and
standard deviation (buffers stored with the weights); the network predicts the change from the last
latent (residual), so "nothing changes" is its starting point. Two trunks, chosen by
``DynamicsConfig.kind``: ``"transformer"`` (a small causal transformer over the ``K`` tokens, DINO-WM's
recipe: one token per frame = latent projection + action embedding + position) and ``"gru"`` (a GRU over
the same tokens). Open-loop imagination (:meth:`LatentDynamics.rollout`) feeds predictions back in
place of observed latents.

``models/`` imports nothing from ``btnk_env`` or ``training``.

Example:
    >>> import torch
    >>> model = LatentDynamics(DynamicsConfig(latent_dim=8, num_actions=3, context=4, width=16, depth=1, heads=2))
    >>> z, a = torch.randn(2, 4, 8), torch.randint(0, 3, (2, 4))
    >>> model(z, a).shape                                # the latent after z[:, -1] under a[:, -1]
    torch.Size([2, 8])
    >>> model.rollout(z, a[:, :3], torch.randint(0, 3, (2, 5))).shape   # 5 imagined steps
    torch.Size([2, 5, 8])
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from btnk_env.models.files import atomic_path, atomic_write_text, claim_dir

PathLike = Union[str, "os.PathLike[str]"]

KINDS = ("transformer", "gru")

#: Dynamics models shipped inside this package: name -> folder in ``models/weights``.
BUNDLED_DYNAMICS = {"panorama-rooms-small-dynamics": "panorama_rooms_small_dynamics"}
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


class DynamicsMismatchError(ValueError):
    """A dynamics model does not fit the encoder's latents or the world's actions."""


@dataclass
class DynamicsConfig:
    """Sizes of a :class:`LatentDynamics` and what it was trained for (saved as ``config.json``)."""

    latent_dim: int = 192
    num_actions: int = 3
    context: int = 4
    """``K``: latents (and actions) of history per prediction."""
    kind: str = "transformer"
    width: int = 256
    depth: int = 2
    heads: int = 4
    encoder: str = ""
    """Name of the encoder whose latents it models (e.g. ``panorama-rooms-small``)."""
    encoder_sha256: str = ""
    """sha256 of that encoder's weights file, so a mismatch is detectable."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if min(self.latent_dim, self.num_actions, self.context, self.width, self.depth, self.heads) < 1:
            raise ValueError("latent_dim, num_actions, context, width, depth and heads must be >= 1")
        if self.kind == "transformer" and self.width % self.heads:
            raise ValueError(f"width {self.width} must be divisible by heads {self.heads}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "DynamicsConfig":
        return config_from_dict(cls, values, "dynamics")


def config_from_dict(cls, values: dict, what: str):
    """``cls(**values)`` for a config dataclass read from ``config.json``; an unknown key is a ValueError
    naming it and the known ones (``what`` says whose config, e.g. ``"dynamics"``)."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {what} config keys {unknown}; known: {sorted(known)}")
    return cls(**values)


class LatentDynamics(nn.Module):
    """Predicts the next latent from ``K`` latents and actions (residual, in standardized units).

    Buffers ``latent_mean`` / ``latent_std`` ``(D,)`` standardize the inputs and scale the predicted
    change; set them from the training data with :meth:`set_normalization` before training.
    """

    def __init__(self, config: DynamicsConfig) -> None:
        super().__init__()
        self.config = c = config
        self.register_buffer("latent_mean", torch.zeros(c.latent_dim))
        self.register_buffer("latent_std", torch.ones(c.latent_dim))
        self.latent_in = nn.Linear(c.latent_dim, c.width)
        self.action_embed = nn.Embedding(c.num_actions, c.width)
        if c.kind == "transformer":
            self.pos_embed = nn.Parameter(torch.zeros(c.context, c.width))
            layer = nn.TransformerEncoderLayer(c.width, c.heads, 4 * c.width, dropout=0.0, activation="gelu",
                                               batch_first=True, norm_first=True)
            self.trunk = nn.TransformerEncoder(layer, c.depth, enable_nested_tensor=False)
            self.register_buffer("causal_mask", nn.Transformer.generate_square_subsequent_mask(c.context), persistent=False)
        else:
            self.trunk = nn.GRU(c.width, c.width, num_layers=c.depth, batch_first=True)
        self.norm = nn.LayerNorm(c.width)
        self.head = nn.Linear(c.width, c.latent_dim)
        nn.init.zeros_(self.head.weight)  # start as copy-last
        nn.init.zeros_(self.head.bias)

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @torch.no_grad()
    def set_normalization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Per-dimension ``(D,)`` mean and standard deviation of the training latents."""
        self.latent_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.latent_std.copy_(torch.as_tensor(std, dtype=torch.float32).clamp_min(1e-6))

    def forward(self, latents: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``latents (B, K, D)`` float, ``actions (B, K)`` int (``actions[:, k]`` taken at
        ``latents[:, k]``) -> the next latent ``(B, D)`` after ``latents[:, -1]``."""
        c = self.config
        if latents.ndim != 3 or latents.shape[1:] != (c.context, c.latent_dim) or actions.shape != latents.shape[:2]:
            raise ValueError(f"expected latents (B, {c.context}, {c.latent_dim}) and actions (B, {c.context}), got "
                             f"{tuple(latents.shape)} and {tuple(actions.shape)}")
        x = (latents.float() - self.latent_mean) / self.latent_std  # (B, K, D)
        tokens = self.latent_in(x) + self.action_embed(actions.long())  # (B, K, W)
        if c.kind == "transformer":
            h = self.trunk(tokens + self.pos_embed, mask=self.causal_mask, is_causal=True)  # (B, K, W)
        else:
            h, _ = self.trunk(tokens)
        delta = self.head(self.norm(h[:, -1]))  # (B, D), standardized units
        return latents[:, -1].float() + delta * self.latent_std

    def rollout(self, context: torch.Tensor, context_actions: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Imagine open loop.

        Args:
            context: ``(B, K, D)`` observed latents.
            context_actions: ``(B, K-1)`` the actions taken between them.
            actions: ``(B, H)`` the actions to imagine, the first taken at ``context[:, -1]``.

        Returns:
            ``(B, H, D)`` imagined latents: step ``h`` is the latent after ``actions[:, h]``.
        """
        k = self.config.context
        if context.shape[1] != k or context_actions.shape[1] != k - 1:
            raise ValueError(f"rollout needs {k} context latents and {k - 1} context actions, got "
                             f"{context.shape[1]} and {context_actions.shape[1]}")
        z = context.float()
        a = torch.cat([context_actions.long(), actions[:, :1].long()], 1)  # (B, K)
        out = []
        for h in range(actions.shape[1]):
            nxt = self(z, a)  # (B, D)
            out.append(nxt)
            if h + 1 < actions.shape[1]:
                z = torch.cat([z[:, 1:], nxt[:, None]], 1)
                a = torch.cat([a[:, 1:], actions[:, h + 1:h + 2].long()], 1)
        return torch.stack(out, 1)

    # ------------------------------------------------------------------ files
    def save_pretrained(self, folder: PathLike, dtype: torch.dtype = torch.float32) -> Path:
        """Write ``model.safetensors`` (``dtype``; buffers stay float32) and ``config.json``, each atomically."""
        from safetensors.torch import save_file

        folder = claim_dir(folder, "dynamics-model", "choose a new folder for the model")
        state = {k: (v.detach().to(dtype) if k not in ("latent_mean", "latent_std") else v.detach().float()).contiguous()
                 for k, v in self.state_dict().items()}
        with atomic_path(folder / "model.safetensors") as tmp:
            save_file(state, str(tmp))
        atomic_write_text(folder / "config.json", json.dumps(self.config.to_dict(), indent=2) + "\n")
        return folder

    def push_to_hub(self, repo_id: str, **card: Any) -> str:
        """Upload to the Hub model repository ``repo_id`` with a generated model card (``card``:
        ``training_data``, ``commands``, ``evaluation``, ``description``, ``private``, ``token``;
        see :func:`btnk_env.models.hub_push.push_to_hub`); load it back with ``from_pretrained("hf:" + repo_id)``."""
        from btnk_env.models.hub_push import push_to_hub

        return push_to_hub(self, repo_id, kind="latent_dynamics", **card)

    @classmethod
    def from_pretrained(cls, name_or_path: PathLike) -> "LatentDynamics":
        """Load a :meth:`save_pretrained` folder, a bundled name (:data:`BUNDLED_DYNAMICS`) or a
        Hub model ``hf:owner/name``, in eval mode."""
        from safetensors.torch import load_file

        from btnk_env.models.hub_push import download_repo, repo_id_of

        folder = Path(name_or_path)
        repo_id = repo_id_of(str(name_or_path))
        if repo_id is not None:  # hf:owner/name, pushed with push_to_hub
            folder = download_repo(repo_id)
        elif str(name_or_path) in BUNDLED_DYNAMICS:
            folder = WEIGHTS_DIR / BUNDLED_DYNAMICS[str(name_or_path)]
        if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
            raise FileNotFoundError(f"{name_or_path}: not a dynamics model folder (config.json + model.safetensors) "
                                    f"nor a bundled dynamics model {sorted(BUNDLED_DYNAMICS)}")
        from btnk_env.models.checkpoint import CheckpointError, build_for_weights

        try:
            values = json.loads((folder / "config.json").read_text())
        except (ValueError, RecursionError) as err:
            raise CheckpointError(f"{folder / 'config.json'} is not valid JSON ({type(err).__name__})") from None
        if not isinstance(values, dict):
            raise CheckpointError(f"{folder / 'config.json'} must hold a JSON object of DynamicsConfig fields")
        try:
            config = DynamicsConfig.from_dict(values)
        except TypeError as err:
            raise CheckpointError(f"{folder / 'config.json'}: {err}") from None
        weights = folder / "model.safetensors"
        model = build_for_weights(cls, config, weights)  # sizes checked against the header before allocation
        try:
            state = {k: v.float() for k, v in load_file(str(weights)).items()}
        except Exception as err:  # noqa: BLE001 - safetensors raises its own error types
            raise CheckpointError(f"cannot read {weights}: {str(err)[:160]}. The file is truncated or corrupt") from None
        model.load_state_dict(state, strict=True)
        return model.eval()

    def check_compatible(self, latent_dim: int, num_actions: Optional[int] = None, encoder_sha256: Optional[str] = None) -> None:
        """Raise :class:`DynamicsMismatchError` if the encoder's latent width, the world's number of
        actions or (when both are known) the encoder's weights differ from what this model was trained on."""
        c = self.config
        if int(latent_dim) != c.latent_dim:
            raise DynamicsMismatchError(
                f"the dynamics model predicts {c.latent_dim}-d latents but the encoder gives {latent_dim}-d; "
                f"use the encoder it was trained on ({c.encoder or 'see its config.json'})")
        if num_actions is not None and int(num_actions) != c.num_actions:
            raise DynamicsMismatchError(
                f"the dynamics model knows {c.num_actions} actions but the world has {num_actions}; "
                "use a world with the same action space or train a dynamics model on it")
        if encoder_sha256 and c.encoder_sha256 and encoder_sha256 != c.encoder_sha256:
            raise DynamicsMismatchError(
                f"the dynamics model was trained on latents of encoder sha256 {c.encoder_sha256[:12]}..., "
                f"this encoder is {encoder_sha256[:12]}...; retrain the dynamics model on this encoder's latents")


def open_loop_loss(model: nn.Module, latents: torch.Tensor, actions: torch.Tensor, std: torch.Tensor) -> tuple:
    """Teacher-forced and open-loop losses on windows of ``K + H`` frames.

    Args:
        model: a :class:`LatentDynamics` (or its DDP wrapper), context ``K``.
        latents: ``(B, K + H, D)``; actions: ``(B, K + H)`` (``actions[:, t]`` taken at ``latents[:, t]``).
        std: ``(D,)`` the standardization of the loss.

    Returns:
        ``(teacher_forced, open_loop)`` scalar MSEs in standardized units: one-step predictions of
        ``latents[:, K:]`` from true histories, and an ``H``-step imagination from ``latents[:, :K]``.
    """
    k = (model.module if hasattr(model, "module") else model).config.context
    b, t, d = latents.shape
    h = t - k
    # teacher forcing: every (K)-window of true latents predicts the next true latent
    zw = latents.unfold(1, k, 1)[:, :h].permute(0, 1, 3, 2).reshape(b * h, k, d)  # (B*H, K, D)
    aw = actions.unfold(1, k, 1)[:, :h].reshape(b * h, k)
    target = latents[:, k:].reshape(b * h, d)
    tf = F.mse_loss(model(zw, aw) / std, target / std)
    # open loop: feed predictions back
    z, a, preds = latents[:, :k], actions[:, :k], []
    for i in range(h):
        nxt = model(z, a)
        preds.append(nxt)
        z = torch.cat([z[:, 1:], nxt[:, None]], 1)
        a = torch.cat([a[:, 1:], actions[:, k + i:k + i + 1]], 1) if i + 1 < h else a
    ol = F.mse_loss(torch.stack(preds, 1) / std, latents[:, k:] / std)
    return tf, ol


__all__ = ["BUNDLED_DYNAMICS", "DynamicsConfig", "DynamicsMismatchError", "LatentDynamics", "open_loop_loss"]

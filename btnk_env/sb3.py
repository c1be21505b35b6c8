"""stable-baselines3 integration: the bottleneck-MAE encoder inside the policy.

- :class:`BtnkMAEFeaturesExtractor`: image observation -> latent ``(B, D)`` (optionally projected),
  with the encoder frozen or trainable.
- :func:`lr_scaled` / :class:`LRScaledAdam`: an optimizer class for ``policy_kwargs["optimizer_class"]``
  that trains the encoder at ``lr_scale`` times the policy's learning rate (the original
  finetunes the encoder at 0.1x the decoder's rate). stable-baselines3 builds one optimizer over
  ``policy.parameters()`` and resets every group's ``lr`` to its schedule before each update, so
  the scale cannot live in a group's ``lr``: the extractor marks the encoder's parameters with
  their scale, the optimizer puts them in their own group and applies the scale at each step.
- :func:`btnk_policy_kwargs`: the ``policy_kwargs`` that wire both together.

Frames reach the extractor through :class:`btnk_env.wrappers.ResizeForModel` (uint8 at the
model's input size); stable-baselines3 makes them channel-first and scales them to ``[0, 1]``.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Type, Union

import torch
import torch.nn as nn
from gymnasium import spaces
from stable_baselines3.common.preprocessing import is_image_space_channels_first
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

from btnk_env.models import BtnkMAE
from btnk_env.models.image import normalize

__all__ = ["BtnkMAEFeaturesExtractor", "LRScaledAdam", "btnk_policy_kwargs", "lr_scaled"]

LR_SCALE_ATTR = "_btnk_lr_scale"
"""Attribute the extractor sets on the encoder's parameters; read by :func:`lr_scaled` optimizers."""


class BtnkMAEFeaturesExtractor(BaseFeaturesExtractor):
    """The bottleneck-MAE encoder as a stable-baselines3 features extractor.

    Input: stable-baselines3's preprocessed image batch, ``(B, 3, H, W)`` (or ``(B, H, W, 3)``)
    float in ``[0, 1]`` (``normalize_images=True``, SB3's default) or ``[0, 255]``; ``(H, W)``
    must be a size the model can take (wrap the env with :class:`btnk_env.wrappers.ResizeForModel`).
    ImageNet normalization happens inside. Output: ``(B, D)`` float32 latent, or
    ``(B, projection_dim)`` after a ``Linear + ReLU`` projection.

    Only the encoder (``model.encoder``) joins the policy; the model is shared, not copied, so a
    trainable extractor finetunes the caller's model in place (save it with
    ``model.save_pretrained`` afterwards).

    Args:
        observation_space: ``Box(0, 255, (3, H, W) or (H, W, 3), uint8)``.
        model: a :class:`models.BtnkMAE`, or a name/path for ``BtnkMAE.from_pretrained``.
        trainable: train the encoder with the policy (else frozen: no gradient, eval mode).
        lr_scale: the encoder's learning rate relative to the policy's (applied by an
            :func:`lr_scaled` optimizer, see :func:`btnk_policy_kwargs`).
        projection_dim: width of an optional trainable projection after the latent.
        normalize_images: the policy's ``normalize_images`` (True: inputs are already in ``[0, 1]``).

    Example:
        >>> import numpy as np, torch
        >>> from gymnasium import spaces
        >>> from models import BtnkMAE
        >>> space = spaces.Box(0, 255, (3, 32, 64), np.uint8)   # as SB3 transposes (32, 64, 3)
        >>> extractor = BtnkMAEFeaturesExtractor(space, BtnkMAE("test", img_size=(32, 64)))
        >>> extractor.features_dim, tuple(extractor(torch.rand(2, 3, 32, 64)).shape)
        (64, (2, 64))
    """

    def __init__(
        self,
        observation_space: spaces.Box,
        model: Union[BtnkMAE, str],
        trainable: bool = False,
        lr_scale: float = 0.1,
        projection_dim: Optional[int] = None,
        normalize_images: bool = True,
    ) -> None:
        if isinstance(model, str):
            model = BtnkMAE.from_pretrained(model)
        if not isinstance(model, BtnkMAE):
            raise TypeError(f"model must be a models.BtnkMAE or a name/path for BtnkMAE.from_pretrained, got {type(model).__name__}")
        if lr_scale <= 0:
            raise ValueError(f"lr_scale must be positive, got {lr_scale}")
        if projection_dim is not None and projection_dim <= 0:
            raise ValueError(f"projection_dim must be a positive int or None, got {projection_dim}")
        self.channels_first = _check_space(observation_space, model)
        super().__init__(observation_space, projection_dim or model.latent_dim)
        self.encoder = model.encoder  # reads the image size from its input: the model is not changed
        self.trainable = bool(trainable)
        self.lr_scale = float(lr_scale)
        self.normalize_images = bool(normalize_images)
        self.projection = (
            nn.Sequential(nn.Linear(model.latent_dim, projection_dim), nn.ReLU()) if projection_dim else nn.Identity()
        )
        for p in self.encoder.parameters():
            setattr(p, LR_SCALE_ATTR, self.lr_scale)

    def train(self, mode: bool = True) -> "BtnkMAEFeaturesExtractor":
        """As ``nn.Module.train`` (stable-baselines3 calls it on the policy), but a frozen encoder
        stays in eval mode."""
        super().train(mode)
        if not self.trainable:
            self.encoder.train(False)
        return self

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        """``observations: (B, 3, H, W)`` (or ``(B, H, W, 3)``) float -> features ``(B, features_dim)``."""
        x = observations if self.channels_first else observations.permute(0, 3, 1, 2)  # (B, 3, H, W)
        x = x.float() if self.normalize_images else x.float() / 255.0  # [0, 1]
        x = normalize(x)  # ImageNet-normalized
        if self.trainable:
            latent = self.encoder.forward_latent(x)  # (B, D)
        else:
            with torch.no_grad():
                latent = self.encoder.forward_latent(x)
        return self.projection(latent.float())


def _check_space(space: spaces.Space, model: BtnkMAE) -> bool:
    """Check an image Box the model can take; returns whether it is channel-first."""
    owner = "BtnkMAEFeaturesExtractor"
    if not isinstance(space, spaces.Box) or len(space.shape) != 3:
        raise TypeError(
            f"{owner} expects an image Box (3, H, W) or (H, W, 3), found {space!r}; for Dict observations "
            f"use BtnkMAEObservation(env, model, image_key=...) and a MultiInputPolicy"
        )
    if space.shape[0] == 3 and (space.shape[-1] != 3 or is_image_space_channels_first(space)):
        channels_first = True
    elif space.shape[-1] == 3:
        channels_first = False
    else:
        raise ValueError(f"{owner} expects 3 (RGB) channels, found observation shape {space.shape}")
    hw = space.shape[1:] if channels_first else space.shape[:2]
    p = model.patch_size
    if hw[0] % p or hw[1] % p:
        raise ValueError(
            f"{owner}: images of {hw[0]}x{hw[1]} are not multiples of the patch size {p}; wrap the env with "
            f"btnk_env.wrappers.ResizeForModel(env, model) to resize frames for the model"
        )
    return channels_first


_SCALED_CLASSES: Dict[type, type] = {}


def lr_scaled(optimizer_class: Type[torch.optim.Optimizer] = torch.optim.Adam) -> Type[torch.optim.Optimizer]:
    """An ``optimizer_class`` variant that gives marked parameters their learning-rate scale.

    Parameters carrying ``_btnk_lr_scale`` (set by :class:`BtnkMAEFeaturesExtractor`) go into one
    group per scale, with an ``"lr_scale"`` entry; ``step()`` runs each group at
    ``lr * lr_scale``, whatever ``lr`` stable-baselines3's schedule wrote into the group.

    Example:
        >>> import torch
        >>> a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
        >>> b._btnk_lr_scale = 0.1
        >>> opt = lr_scaled(torch.optim.SGD)([a, b], lr=1.0)
        >>> a.grad, b.grad = torch.ones(1), torch.ones(1)
        >>> opt.step(); round(a.item(), 3), round(b.item(), 3)
        (-1.0, -0.1)
    """
    if optimizer_class in _SCALED_CLASSES:
        return _SCALED_CLASSES[optimizer_class]

    class LRScaled(optimizer_class):  # type: ignore[misc, valid-type]
        def __init__(self, params: Any, *args: Any, **kwargs: Any) -> None:
            params = list(params)
            if params and isinstance(params[0], dict):
                groups = params
            else:
                by_scale: Dict[float, list] = {}
                for p in params:
                    by_scale.setdefault(float(getattr(p, LR_SCALE_ATTR, 1.0)), []).append(p)
                groups = [{"params": ps, "lr_scale": s} for s, ps in by_scale.items()]
            super().__init__(groups, *args, **kwargs)

        @torch.no_grad()
        def step(self, closure: Any = None) -> Any:
            saved = [group["lr"] for group in self.param_groups]
            for group in self.param_groups:
                group["lr"] = group["lr"] * group.get("lr_scale", 1.0)
            try:
                return super().step(closure)
            finally:
                for group, lr in zip(self.param_groups, saved):
                    group["lr"] = lr

    LRScaled.__name__ = LRScaled.__qualname__ = f"LRScaled{optimizer_class.__name__}"
    LRScaled.__module__ = __name__
    _SCALED_CLASSES[optimizer_class] = LRScaled
    return LRScaled


LRScaledAdam = lr_scaled(torch.optim.Adam)
"""Adam with per-parameter learning-rate scales (stable-baselines3's default optimizer, scaled)."""


def btnk_policy_kwargs(
    model: Union[BtnkMAE, str],
    *,
    trainable: bool = False,
    lr_scale: float = 0.1,
    projection_dim: Optional[int] = None,
    normalize_images: bool = True,
    optimizer_class: Type[torch.optim.Optimizer] = torch.optim.Adam,
    **policy_kwargs: Any,
) -> Dict[str, Any]:
    """``policy_kwargs`` for a stable-baselines3 ``CnnPolicy`` with the encoder inside.

    Example:
        >>> from models import BtnkMAE
        >>> kwargs = btnk_policy_kwargs(BtnkMAE("test"), trainable=True, net_arch=[32])
        >>> kwargs["optimizer_class"].__name__, kwargs["features_extractor_kwargs"]["lr_scale"]
        ('LRScaledAdam', 0.1)
    """
    return dict(
        features_extractor_class=BtnkMAEFeaturesExtractor,
        features_extractor_kwargs=dict(
            model=model, trainable=trainable, lr_scale=lr_scale, projection_dim=projection_dim, normalize_images=normalize_images
        ),
        optimizer_class=lr_scaled(optimizer_class),
        normalize_images=normalize_images,
        **policy_kwargs,
    )

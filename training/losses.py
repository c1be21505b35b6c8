"""The training objective: reconstruction through the bottleneck plus the original's full-MAE term.

Both terms are MAE's mean squared error on patches of the (ImageNet-normalized) input:
``loss = btnk_coeff * mse(decode(latent), patchify(x)) + full_mae_coeff * mse(mae_decoder(tokens), patchify(x))``
as in the original ``train_engine.py`` (coefficients 1 and 1 in its finetune/panorama recipes,
1 and 0.1 in its ImageNet recipe). With ``norm_pix_loss`` each target patch is normalized to zero
mean and unit variance first (MAE's option).

Example:
    >>> import torch
    >>> from models import BtnkMAE
    >>> model = BtnkMAE("test")
    >>> images = torch.randn(2, 3, 64, 64)
    >>> out = model(images, full_mae=True)
    >>> terms = bottleneck_losses(model, images, out, btnk_coeff=1.0, full_mae_coeff=0.1)
    >>> sorted(terms), terms["loss"].shape
    (['loss', 'loss_btnk', 'loss_full_mae'], torch.Size([]))
"""

from __future__ import annotations

from typing import Any, Dict

import torch


def patch_targets(model: Any, images: torch.Tensor, norm_pix_loss: bool = False) -> torch.Tensor:
    """``images: (B, 3, H, W)`` normalized -> targets ``(B, N, p * p * 3)`` float32."""
    target = model.patchify(images.float())
    if norm_pix_loss:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1e-6) ** 0.5
    return target


def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over every patch and pixel: ``(B, N, P)``, ``(B, N, P)`` -> scalar float32."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    return (pred.float() - target.float()).pow(2).mean()


def bottleneck_losses(model: Any, images: torch.Tensor, out: Any, btnk_coeff: float = 1.0,
                      full_mae_coeff: float = 1.0, norm_pix_loss: bool = False) -> Dict[str, torch.Tensor]:
    """The weighted loss and its terms (unweighted) for one batch.

    Args:
        model: the (unwrapped) :class:`models.BtnkMAE`, for ``patchify``.
        images: ``(B, 3, H, W)`` float, ImageNet-normalized.
        out: ``model(images, full_mae=full_mae_coeff > 0)`` (a ``BtnkMAEOutput``).

    Returns:
        ``{"loss", "loss_btnk", "loss_full_mae"}`` scalars, float32; ``loss`` carries the gradient.
        ``loss_full_mae`` is absent when the term is off.
    """
    target = patch_targets(model, images, norm_pix_loss)
    terms: Dict[str, torch.Tensor] = {"loss_btnk": reconstruction_loss(out.patches, target)}
    loss = btnk_coeff * terms["loss_btnk"]
    if full_mae_coeff > 0:
        if out.full_mae_patches is None:
            raise ValueError("full_mae_coeff > 0 needs model(images, full_mae=True)")
        terms["loss_full_mae"] = reconstruction_loss(out.full_mae_patches, target)
        loss = loss + full_mae_coeff * terms["loss_full_mae"]
    terms["loss"] = loss
    return terms

"""Transformer building blocks with timm's parameter names (``norm1``, ``attn.qkv``,
``attn.proj``, ``norm2``, ``mlp.fc1``, ``mlp.fc2``), so MAE and btnk_mae checkpoints load as is.

Besides the usual full-sequence forward, :meth:`Block.forward_cls` computes the block's output
for the first (CLS) token only, which is all the last encoder block needs when only the latent
is wanted: its keys and values still see every token, but the query, attention output,
projection and MLP run for one token instead of ``1 + N``.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from btnk_env.models.kernels import linear, linear_add, linear_gelu

LAYER_NORM_EPS = 1e-6


class Attention(nn.Module):
    """Multi-head self-attention (timm ``Attention`` layout: fused ``qkv``, then ``proj``)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``x: (B, L, C)`` -> ``(B, L, C)`` (plus ``residual`` if given, fused where possible)."""
        b, n, c = x.shape
        qkv = linear(x, self.qkv).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, h, L, hd)
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c)  # (B, L, C)
        return self.proj(out) if residual is None else linear_add(out, self.proj, residual)

    def forward_first(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Attention output of the first token only: ``x: (B, L, C)`` -> ``(B, 1, C)``
        (plus ``residual`` ``(B, 1, C)`` if given)."""
        b, n, c = x.shape
        if isinstance(self.qkv, nn.Linear):
            w, bias = self.qkv.weight, self.qkv.bias
            q = F.linear(x[:, :1], w[:c], bias[:c])  # (B, 1, C)
            kv = F.linear(x, w[c:], bias[c:])  # (B, L, 2C)
        else:  # a quantized or otherwise wrapped projection: slice its output instead
            qkv = self.qkv(x)
            q, kv = qkv[:, :1, :c], qkv[..., c:]
        q = q.reshape(b, 1, self.num_heads, self.head_dim).transpose(1, 2)  # (B, h, 1, hd)
        kv = kv.reshape(b, n, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # (2, B, h, L, hd)
        out = F.scaled_dot_product_attention(q, kv[0], kv[1]).transpose(1, 2).reshape(b, 1, c)  # (B, 1, C)
        return self.proj(out) if residual is None else linear_add(out, self.proj, residual)


class Mlp(nn.Module):
    """``fc1 -> GELU -> fc2`` (timm ``Mlp`` names)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``x: (..., C)`` -> ``(..., C)`` (plus ``residual`` if given, fused where possible)."""
        h = linear_gelu(x, self.fc1)
        return self.fc2(h) if residual is None else linear_add(h, self.fc2, residual)


class Block(nn.Module):
    """Pre-norm ViT block: ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``.

    Not timm's ``Block``: this one has the fused linear+GELU / linear+residual CPU kernels and the
    CLS-only :meth:`forward_cls`; timm's differs by up to 2.7e-6 and was slower in 3 of 4 measured
    settings (base, 224x224 and 224x448, batch 1 and 8; 1.4-1.5x at batch 8).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (B, L, C)`` -> ``(B, L, C)``."""
        x = self.attn(self.norm1(x), residual=x)
        return self.mlp(self.norm2(x), residual=x)

    def forward_cls(self, x: torch.Tensor) -> torch.Tensor:
        """Output for the first token only: ``x: (B, L, C)`` -> ``(B, 1, C)``.

        Equal to ``self.forward(x)[:, :1]`` (up to float rounding), at a fraction of the cost.
        """
        x0 = self.attn.forward_first(self.norm1(x), residual=x[:, :1])  # (B, 1, C)
        return self.mlp(self.norm2(x0), residual=x0)

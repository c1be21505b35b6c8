"""The bottleneck decoder: N learned queries read the latent through a single-key
cross-attention, then MAE's decoder blocks predict the pixels of every patch.

Parameter names follow the original ``BtnkMAEDecoder`` (``learned_embed``, ``patch_recon.*``,
and MAE's ``decoder_embed``, ``mask_token``, ``decoder_blocks``, ``decoder_norm``,
``decoder_pred``), so its checkpoints load as they are.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from btnk_env.models.config import BtnkMAEConfig
from btnk_env.models.kernels import linear, linear_add, linear_gelu
from btnk_env.models.layers import LAYER_NORM_EPS, Block
from btnk_env.models.pos_embed import SincosTables, resample_grid_tokens, sincos_pos_embed


class SingleKeyAttention(nn.Module):
    """Cross-attention from any number of queries to ONE key/value (the latent).

    Holds ``torch.nn.MultiheadAttention``'s parameters (``in_proj_weight``, ``in_proj_bias``,
    ``out_proj``) so checkpoints load, but computes the closed form: with a single key the
    softmax is identically 1 for every query and head, so the output for every query is
    ``out_proj(W_v kv + b_v)``. The queries (and the query/key projections) do not matter.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, kv: torch.Tensor) -> torch.Tensor:
        """``kv: (B, D)`` -> ``(B, 1, D)``, the attention output shared by all queries."""
        d = kv.shape[-1]
        value = F.linear(kv, self.in_proj_weight[2 * d:], self.in_proj_bias[2 * d:])  # (B, D)
        return self.out_proj(value).unsqueeze(1)


class PatchReconstruction(nn.Module):
    """Queries ``(B, N, D)`` + latent ``(B, D)`` -> ``(B, N, D)``: pre-norm cross-attention and MLP,
    both residual (the original's ``PatchReconstruction``, dropout 0.1 in training)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, dropout: float = 0.1) -> None:
        super().__init__()
        self.attn = SingleKeyAttention(dim, num_heads)
        self.q_norm = nn.LayerNorm(dim)  # kept for checkpoint compatibility: queries cannot change the output
        self.kv_norm = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))
        self.x_norm = nn.LayerNorm(dim)
        self.drop_attn = nn.Dropout(dropout)
        self.drop_res = nn.Dropout(dropout)

    def forward(self, queries: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """``queries: (1 or B, N, D)``, ``latent: (B, D)`` -> ``(B, N, D)``."""
        x = queries + self.drop_attn(self.attn(self.kv_norm(latent)))  # (B, N, D)
        if self.training:
            return x + self.drop_res(self.mlp(self.x_norm(x)))
        fc1, fc2 = self.mlp[0], self.mlp[3]  # eval: dropout is the identity, fuse GELU and the residual
        return linear_add(linear_gelu(self.x_norm(x), fc1), fc2, x)


class BtnkDecoder(nn.Module):
    """Latent ``(B, D)`` -> patch pixels ``(B, N, p * p * 3)`` on any patch grid; also MAE's
    full-token decoder path.

    ``learned_embed`` holds one learned query per patch of the grid the model was trained at
    (``grid_size``). Decoding at another grid resamples them bicubically (DeiT/timm style):
    under autograd from the parameter itself, so gradients reach it; otherwise once per grid,
    kept until the parameter changes (an optimizer step, ``load_state_dict``, a device move).
    """

    def __init__(self, config: BtnkMAEConfig) -> None:
        super().__init__()
        d, dd = config.embed_dim, config.decoder_embed_dim
        self.grid_size = config.grid_size
        n = config.num_patches
        self.learned_embed = nn.Parameter(torch.zeros(1, n, d))
        nn.init.trunc_normal_(self.learned_embed, std=0.02)
        self.patch_recon = PatchReconstruction(d, config.decoder_num_heads, config.mlp_ratio)
        self.decoder_embed = nn.Linear(d, dd)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dd))  # MAE's; unused by the bottleneck path
        self.decoder_blocks = nn.ModuleList(
            Block(dd, config.decoder_num_heads, config.mlp_ratio) for _ in range(config.decoder_depth)
        )
        self.decoder_norm = nn.LayerNorm(dd, eps=LAYER_NORM_EPS)
        self.decoder_pred = nn.Linear(dd, config.patch_dim)
        self.register_buffer("pos_embed", sincos_pos_embed(d, self.grid_size), persistent=False)
        self.register_buffer(
            "decoder_pos_embed", sincos_pos_embed(dd, self.grid_size, cls_token=True), persistent=False
        )
        self._tables = SincosTables(d)
        self._mae_tables = SincosTables(dd, cls_token=True)
        self._query_source: Optional[Tuple[Tuple[int, int], torch.Tensor]] = None  # see set_grid_size
        self._query_resampled: Optional[torch.Tensor] = None
        self._queries: Dict[Tuple[int, int], Tuple[torch.Tensor, torch.Tensor]] = {}  # grid -> (table seen, queries)

    def set_grid_size(self, grid_size: Tuple[int, int]) -> None:
        """Make ``(gh, gw)`` the trained grid: sin-cos tables recomputed, the learned queries
        bicubically resampled (the same parameter, so optimizers keep tracking it). This is the
        fine-tuning step to a new size (the original's 224 -> 512); decoding at another size
        needs no call (see :meth:`forward`).

        Resampling always starts from the queries as they were last loaded or trained (kept
        aside on the first move), so going back to that grid restores them exactly and
        repeated moves do not accumulate interpolation error.
        """
        old, new = self.grid_size, tuple(grid_size)
        if old == new:
            return
        source_grid, source = self._resampling_source()
        self._query_source = (source_grid, source.clone())
        with torch.no_grad():
            resampled = source.clone() if source_grid == new else resample_grid_tokens(source, source_grid, new)
        self._query_resampled = resampled.clone()
        self.learned_embed.data = resampled
        ref = self.pos_embed
        self.pos_embed = sincos_pos_embed(ref.shape[-1], new).to(ref.device, ref.dtype)
        ref = self.decoder_pos_embed
        self.decoder_pos_embed = sincos_pos_embed(ref.shape[-1], new, cls_token=True).to(ref.device, ref.dtype)
        self.grid_size = new
        self._queries.clear()

    def _resampling_source(self) -> Tuple[Tuple[int, int], torch.Tensor]:
        """``(grid, table)`` to resample queries from: the queries as last loaded or trained.

        After :meth:`set_grid_size` that is the table kept aside before the move (while the
        parameter still holds the resampled copy), else the parameter itself.
        """
        current = self.learned_embed.detach()
        last = self._query_resampled
        if (
            self._query_source is not None
            and last is not None
            and (last.device, last.dtype, last.shape) == (current.device, current.dtype, current.shape)
            and torch.equal(current, last)
        ):
            return self._query_source
        return self.grid_size, current

    def queries(self, grid_size: Tuple[int, int]) -> torch.Tensor:
        """Learned queries plus the sin-cos table of a ``(gh, gw)`` grid: ``(1, gh * gw, D)``."""
        grid = tuple(grid_size)
        if grid == self.grid_size:
            return self.learned_embed + self.pos_embed  # the trained grid: the original's math
        table = self.learned_embed
        if torch.is_grad_enabled() and table.requires_grad:  # training: differentiable, never cached
            return resample_grid_tokens(table, self.grid_size, grid) + self._tables.get(grid, table)
        seen, queries = self._queries.get(grid, (None, None))
        if seen is None or (seen.device, seen.dtype) != (table.device, table.dtype) or not torch.equal(seen, table):
            with torch.inference_mode(False), torch.no_grad():
                source_grid, source = self._resampling_source()
                queries = resample_grid_tokens(source, source_grid, grid) + self._tables.get(grid, table)
                self._queries[grid] = (table.detach().clone(), queries)
        return queries

    def forward(self, latent: torch.Tensor, grid_size: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        """``latent: (B, D)`` -> ``(B, N, p * p * 3)`` predicted patches (normalized pixels) on the
        ``(gh, gw)`` grid ``grid_size`` (default: the trained grid), ``N = gh * gw``."""
        queries = self.queries(self.grid_size if grid_size is None else grid_size)  # (1, N, D)
        x = linear(self.patch_recon(queries, latent), self.decoder_embed)  # (B, N, Dd)
        for blk in self.decoder_blocks:
            x = blk(x)
        return linear(self.decoder_norm(x), self.decoder_pred)

    def forward_full_mae(self, tokens: torch.Tensor, grid_size: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        """MAE's decoder over all encoder tokens: ``(B, 1 + N, D)`` -> ``(B, N, p * p * 3)`` on the
        ``(gh, gw)`` grid ``grid_size`` (default: the trained grid)."""
        grid = self.grid_size if grid_size is None else tuple(grid_size)
        pos = self.decoder_pos_embed if grid == self.grid_size else self._mae_tables.get(grid, self.decoder_pos_embed)
        x = self.decoder_embed(tokens) + pos  # (B, 1 + N, Dd)
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]

"""Model speed: encode/decode images/s, latency, peak memory, FLOPs and the fraction of this
machine's measured matmul peak; the exact fast paths against the plain computation; reduced
precision (bf16, fp16, int8) with its error against fp32.

X
    python -m benchmarks                          # the whole suite (see benchmarks/__main__.py)
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import sdpa_flop_count

from benchmarks.common import best_time, flops_per_call, matmul_candidates, peak_memory_mib, reset_peak_memory
from btnk_env.models import BtnkMAE, frames_to_tensor
from btnk_env.models.kernels import fused_kernels
from btnk_env.models.precision import check_precision, for_inference

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


class PlainDecoder(nn.Module):
    """The original's decoder computation, for comparison: ``nn.MultiheadAttention`` over N
    queries and one key (softmax and all), on the same weights."""

    def __init__(self, model: BtnkMAE) -> None:
        super().__init__()
        dec = model.decoder
        d = model.latent_dim
        self.dec = dec
        self.mha = nn.MultiheadAttention(d, dec.patch_recon.attn.num_heads, batch_first=True)
        self.mha.load_state_dict(dec.patch_recon.attn.state_dict())
        self.mha.to(model.device, model.dtype).eval()

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        dec, recon = self.dec, self.dec.patch_recon
        queries = (dec.learned_embed + dec.pos_embed).expand(latent.shape[0], -1, -1)
        kv = recon.kv_norm(latent).unsqueeze(1)
        attn, _ = self.mha(recon.q_norm(queries), kv, kv)
        x = queries + attn
        x = x + recon.mlp(recon.x_norm(x))
        x = dec.decoder_embed(x)
        for blk in dec.decoder_blocks:
            x = blk(x)
        return dec.decoder_pred(dec.decoder_norm(x))


def measure(model: BtnkMAE, batch: int, reps: int = 3, device: str = "cpu") -> dict:
    """Encode and decode throughput of ``model`` at one batch size."""
    torch.manual_seed(0)
    h, w = model.img_size
    x = torch.randn(batch, 3, h, w, device=device)
    with torch.inference_mode():
        z = model.encode(x)
        reset_peak_memory(device)
        t_enc = best_time(lambda: model.encode(x), device, reps=reps, warmup=1)
        t_dec = best_time(lambda: model.decode(z), device, reps=reps, warmup=1)
        peak = peak_memory_mib(device)
        flops_enc = flops_per_call(lambda: model.encode(x[:1]))
        flops_dec = flops_per_call(lambda: model.decode(z[:1]))
    return {
        "batch": batch,
        "encode_img_s": batch / t_enc,
        "decode_img_s": batch / t_dec,
        "encode_latency_ms": 1000 * t_enc / batch if batch == 1 else None,
        "decode_latency_ms": 1000 * t_dec / batch if batch == 1 else None,
        "encode_gflop_per_img": flops_enc / 1e9,
        "decode_gflop_per_img": flops_dec / 1e9,
        "encode_gflop_s": batch * flops_enc / t_enc / 1e9,
        "decode_gflop_s": batch * flops_dec / t_dec / 1e9,
        "peak_memory_mib": peak,
    }


def fast_vs_plain(model: BtnkMAE, batch: int = 8, reps: int = 5, device: str = "cpu") -> dict:
    """The exact fast paths (CLS-only last block, closed-form cross-attention, fused CPU kernels)
    against the plain computation the original does (all tokens through every block, unfused
    linear layers, ``nn.MultiheadAttention``), timed interleaved in one run, with their largest
    output difference."""
    torch.manual_seed(0)
    x = torch.randn(batch, 3, *model.img_size, device=device)
    plain = PlainDecoder(model)

    def plain_encode() -> torch.Tensor:
        with fused_kernels(False):
            return model.encode_tokens(x)[:, 0]

    def plain_decode() -> torch.Tensor:
        with fused_kernels(False):
            return plain(z)

    with torch.inference_mode():
        z = model.encode(x)
        diff_enc = (model.encode(x) - plain_encode()).abs().max().item()
        diff_dec = (model.decode_patches(z) - plain_decode()).abs().max().item()
        times = {"fast_enc": [], "plain_enc": [], "fast_dec": [], "plain_dec": []}
        for _ in range(reps):  # interleave so that load changes hit both alike
            times["fast_enc"].append(best_time(lambda: model.encode(x), device, reps=1, warmup=0))
            times["plain_enc"].append(best_time(plain_encode, device, reps=1, warmup=0))
            times["fast_dec"].append(best_time(lambda: model.decode_patches(z), device, reps=1, warmup=0))
            times["plain_dec"].append(best_time(plain_decode, device, reps=1, warmup=0))
    best = {k: min(v) for k, v in times.items()}
    return {
        "batch": batch,
        "encode_speedup": best["plain_enc"] / best["fast_enc"],
        "decode_speedup": best["plain_dec"] / best["fast_dec"],
        "encode_max_abs_diff": diff_enc,
        "decode_max_abs_diff": diff_dec,
        "encode_img_s": batch / best["fast_enc"],
        "plain_encode_img_s": batch / best["plain_enc"],
    }


def time_breakdown(model: BtnkMAE, batch: int = 8, reps: int = 3, device: str = "cpu") -> dict:
    """Where fp32 encode time goes, and the best fraction of the matmul peak it could reach.

    The encode runs ``reps`` times with a wall clock around each of its linear-layer calls
    (``qkv``/``proj``/``fc1``/``fc2`` and the last block's CLS-only projections, fused kernels as
    usual) and each attention call; the fastest run is reported. CPU kernels are synchronous, so
    these are the times spent inside those calls; ``other`` is the rest (layer norms, patch
    embedding, reshapes, Python). ``ceiling_fraction`` bounds what any schedule of these kernels
    could reach: the encode's FLOPs over the linear layers' time plus the attention FLOPs at the
    matmul peak rate, i.e. as if everything but the linear layers were free and attention ran
    at peak.
    """
    import btnk_env.models.layers as layers
    if torch.device(device).type != "cpu":
        raise ValueError("the time breakdown times synchronous CPU kernels; run it with device='cpu'")
    torch.manual_seed(0)
    x = torch.randn(batch, 3, *model.img_size, device=device)
    spent = {"linear": 0.0, "attention": 0.0}

    def timed(fn, key):
        def wrapped(*args, **kwargs):
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            spent[key] += time.perf_counter() - start
            return out
        return wrapped

    with torch.inference_mode():
        flops = flops_per_call(lambda: model.encode(x))
        attn = model.encoder.blocks[0].attn
        qkv_shape = (batch, attn.num_heads, model.config.num_patches + 1, attn.head_dim)  # (B, h, 1 + N, d)
        attention_flops = sdpa_flop_count(qkv_shape, qkv_shape, qkv_shape)  # one block's self-attention
        patched = {name: getattr(layers, name) for name in ("linear", "linear_gelu", "linear_add")}
        sdpa, f_linear = F.scaled_dot_product_attention, F.linear
        runs = []
        try:
            for name, fn in patched.items():
                setattr(layers, name, timed(fn, "linear"))
            F.scaled_dot_product_attention = timed(sdpa, "attention")
            F.linear = timed(f_linear, "linear")  # the last block's CLS-only projections
            model.encode(x)  # warm-up (packs the weights)
            for _ in range(reps):
                spent.update(linear=0.0, attention=0.0)
                start = time.perf_counter()
                model.encode(x)
                runs.append((time.perf_counter() - start, dict(spent)))
        finally:
            for name, fn in patched.items():
                setattr(layers, name, fn)
            F.scaled_dot_product_attention, F.linear = sdpa, f_linear
    total, best = min(runs, key=lambda run: run[0])
    attention_flops *= len(model.encoder.blocks) - 1  # + the last block's one-query attention, ~0
    return {
        "batch": batch,
        "encode_ms": 1000 * total,
        "gflop": flops / 1e9,
        "linear_ms": 1000 * best["linear"],
        "linear_gflop_s": (flops - attention_flops) / best["linear"] / 1e9,
        "attention_ms": 1000 * best["attention"],
        "attention_gflop_s": attention_flops / best["attention"] / 1e9,
        "attention_gflop": attention_flops / 1e9,
        "other_ms": 1000 * (total - best["linear"] - best["attention"]),
    }


def peak_fraction_interleaved(model: BtnkMAE, batch: int = 8, rounds: int = 7, device: str = "cpu") -> dict:
    """fp32 encode throughput as a fraction of the fp32 matmul peak, both timed in alternation.

    This machine's speed drifts by 10-15% over minutes (shared host, clock changes), so a peak
    measured at the start of the suite and an encode timed later can disagree by that much. Here
    the fastest matmul of :func:`~benchmarks.common.matmul_candidates` is picked first, then it
    and the encode are timed in alternation ``rounds`` times and the best of each is compared:
    the same number of samples under the same conditions.
    """
    torch.manual_seed(0)
    x = torch.randn(batch, 3, *model.img_size, device=device)
    with torch.inference_mode():
        flops = flops_per_call(lambda: model.encode(x))
        candidates = matmul_candidates(torch.float32, device)
        label, mm_flops, mm = max(candidates, key=lambda c: c[1] / best_time(c[2], device, reps=3))
        t_mm, t_enc = [], []
        model.encode(x)
        for _ in range(rounds):
            t_mm.append(best_time(mm, device, reps=1, warmup=0))
            t_enc.append(best_time(lambda: model.encode(x), device, reps=1, warmup=0))
    peak, achieved = mm_flops / min(t_mm) / 1e9, flops / min(t_enc) / 1e9
    return {"batch": batch, "rounds": rounds, "peak_matmul": label, "peak_gflop_s": peak,
            "encode_gflop_s": achieved, "fraction": achieved / peak}


def ceiling_fraction(breakdown: dict, peak_gflop_s: float) -> float:
    """Encode FLOPs over (the linear layers' time + attention FLOPs at ``peak_gflop_s``), over the peak."""
    seconds = breakdown["linear_ms"] / 1000 + breakdown["attention_gflop"] / peak_gflop_s
    return breakdown["gflop"] / seconds / peak_gflop_s


def real_images(size: tuple[int, int], device: str = "cpu") -> torch.Tensor:
    """The real test images of ``shared/images`` at ``size``, ImageNet-normalized ``(B, 3, H, W)``."""
    import numpy as np
    from PIL import Image

    paths = sorted((SHARED / "images" / "imagenet224").glob("*.png")) + sorted((SHARED / "images" / "habitat_pano").glob("*.png"))
    if not paths:
        raise FileNotFoundError(f"no images under {SHARED / 'images'}")
    frames = np.stack([np.asarray(Image.open(p).convert("RGB").resize(size[::-1], Image.BICUBIC)) for p in paths])
    return frames_to_tensor(frames, device=device)


def psnr_normalized(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB between two ImageNet-normalized batches, compared as [0, 1] pixels."""
    from btnk_env.models import denormalize

    mse = F.mse_loss(denormalize(a.float()).clamp(0, 1), denormalize(b.float()).clamp(0, 1)).item()
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


def precision_table(model: BtnkMAE, batch: int = 8, reps: int = 3, device: str = "cpu",
                    precisions=("fp32", "auto", "bf16", "int8", "fp16")) -> list[dict]:
    """Speed of each precision against fp32 and its error on real images. ``"auto"`` is the
    precision :func:`btnk_env.models.precision.auto_precision` picks here (its row says which). Every
    precision is timed in each of ``reps`` rounds, in turn with fp32, and the best is kept."""
    x = real_images(model.img_size, device)
    bench_x = torch.randn(batch, 3, *model.img_size, device=device)
    rows, runners = [], {}
    with torch.inference_mode():
        ref_latent = model.encode(x)
        ref_images = model.decode(ref_latent)
        z_bench = model.encode(bench_x)
        for name in precisions:
            try:
                runs = check_precision(name, device)
            except ValueError as err:
                rows.append({"precision": name, "skipped": str(err)})
                continue
            m = runners.get(runs) or for_inference(model, runs)
            runners[runs] = m
            latent = m.encode(x).float()
            images = m.decode(latent).float()
            m.decode(z_bench)  # warm-up (packs weights)
            rows.append({
                "precision": name,
                "runs": runs,
                "batch": batch,
                "latent_cosine_min": F.cosine_similarity(latent, ref_latent, dim=-1).min().item(),
                "decode_psnr_vs_fp32_db": psnr_normalized(images, ref_images),
            })
        best = {}
        for _ in range(reps):
            for runs, m in [("fp32", model)] + list(runners.items()):
                for op, fn in (("encode", lambda: m.encode(bench_x)), ("decode", lambda: m.decode(z_bench))):
                    best[(runs, op)] = min(best.get((runs, op), float("inf")), best_time(fn, device, reps=1, warmup=0))
    for row in rows:
        if "runs" in row:
            for op in ("encode", "decode"):
                row[f"{op}_img_s"] = batch / best[(row["runs"], op)]
                row[f"{op}_speedup"] = best[("fp32", op)] / best[(row["runs"], op)]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="base")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    model = BtnkMAE(args.preset).to(args.device).eval()
    rows = [measure(model, int(b), device=args.device) for b in args.batches.split(",")]
    print(f"{args.preset} at {model.img_size[0]}x{model.img_size[1]} on {args.device}")
    for r in rows:
        print(f"  batch {r['batch']:>2}: encode {r['encode_img_s']:7.2f} img/s, decode {r['decode_img_s']:7.2f} img/s")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

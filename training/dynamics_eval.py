"""Evaluate latent dynamics models open loop on held-out episodes, beside copy-last and ridge baselines.

From every rollout start of every held-out episode, ``K`` true latents are the context and each method
imagines ``max(horizons)`` steps under the recorded actions. At each horizon ``h`` (the latent after
``h`` actions) the report gives the latent MSE and cosine similarity against the true latent, and the
PSNR / SSIM (:mod:`btnk_env.training.metrics`) of the imagined latent decoded by the encoder's decoder against
the recorded frame. ``autoencoder`` is the ceiling: the true latent decoded.

``btnk-env eval-dynamics --model panorama-rooms-small-dynamics --data HELD_OUT_LATENTS --train-data
TRAIN_LATENTS --out docs/images/world_model_eval.png --json eval.json``
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch

from btnk_env.models.files import atomic_write_text
from btnk_env.models.rollout import Step, copy_last, imagine
from btnk_env.formats.latents import LatentDataset

HORIZONS = (1, 5, 10, 20, 30)


def num_actions_of(data: LatentDataset) -> int:
    """The number of discrete actions of the episodes' world (``Discrete(n)`` of the source), else max + 1."""
    space = str(((data.meta.get("source") or {}).get("action_space")) or "")
    m = re.fullmatch(r"Discrete\((\d+)\)", space)
    return int(m.group(1)) if m else int(np.asarray(data.actions).max()) + 1


class RidgeDynamics:
    """Ridge regression ``[z_{t-K+1..t}, one_hot(a_t)] -> z_{t+1} - z_t`` (closed form), a linear baseline."""

    def __init__(self, context: int, num_actions: int, lam: float = 1.0) -> None:
        self.context, self.num_actions, self.lam = int(context), int(num_actions), float(lam)
        self.weight: torch.Tensor | None = None  # (K*D + A + 1, D)

    def _features(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """``z (N, K, D)``, ``a (N, K)`` -> ``(N, K*D + A + 1)`` float64 (the last action one-hot, a bias)."""
        onehot = torch.nn.functional.one_hot(a[:, -1].long().clamp_min(0), self.num_actions).double()
        return torch.cat([z.double().flatten(1), onehot, torch.ones(len(z), 1, dtype=torch.float64)], 1)

    def fit(self, data: LatentDataset) -> "RidgeDynamics":
        """Fit on every ``K + 1``-frame window of the episodes."""
        from btnk_env.training.latent_episodes import LatentWindows

        w = LatentWindows(data, window=self.context + 1)
        z = torch.from_numpy(np.stack([np.asarray(data.latents[s:s + self.context + 1], np.float32) for s in w.starts]))
        a = torch.from_numpy(np.stack([np.asarray(data.actions[s:s + self.context], np.int64) for s in w.starts]))
        x = self._features(z[:, :-1], a)
        y = (z[:, -1] - z[:, -2]).double()
        reg = self.lam * torch.eye(x.shape[1], dtype=torch.float64)
        reg[-1, -1] = 0.0  # no penalty on the bias
        self.weight = torch.linalg.solve(x.T @ x + reg, x.T @ y)
        return self

    def __call__(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return (z[:, -1].double() + self._features(z, a) @ self.weight).float()


def rollout_starts(data: LatentDataset, context: int, horizon: int, stride: int) -> List[Tuple[int, int]]:
    """``(episode, first context frame)`` of every rollout of ``context + horizon`` frames, ``stride`` apart."""
    out = []
    for e in range(data.num_episodes):
        n = int(data.offsets[e + 1] - data.offsets[e])
        out += [(e, s) for s in range(0, n - context - horizon + 1, stride)]
    return out


def _frames01(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0


@torch.no_grad()
def evaluate(methods: Dict[str, Step], data: LatentDataset, encoder, context: int,
             horizons: Sequence[int] = HORIZONS, stride: int = 10, progress: bool = False) -> Dict[str, Dict[int, dict]]:
    """Latent MSE / cosine and decoded PSNR / SSIM of each method at each horizon (mean over rollouts).

    Args:
        methods: name -> step function (see :data:`Step`).
        data: held-out latent episodes; its ``source`` episode folder supplies the true frames.
        encoder: the :class:`models.BtnkMAE` whose latents these are (its decoder renders the imagination).
        context: ``K``.

    Returns:
        ``{method: {h: {"latent_mse", "cosine", "psnr", "ssim"}}}`` plus ``"autoencoder"`` (true latents
        decoded: the decoder's ceiling) and ``"_rollouts"``: the number of rollouts.
    """
    from btnk_env.formats.episode_shards import open_episodes
    from btnk_env.video import decode_rollout
    from btnk_env.training.metrics import psnr, ssim

    hmax = max(horizons)
    starts = rollout_starts(data, context, hmax, stride)
    if not starts:
        raise ValueError(f"no held-out episode has {context + hmax} frames: use shorter horizons or longer episodes")
    folder = open_episodes(data.meta["source"]["path"])
    rows = np.array([int(data.offsets[e]) + s for e, s in starts])  # (R,) first context row
    z_all = torch.from_numpy(np.stack([np.asarray(data.latents[r:r + context + hmax], np.float32) for r in rows]))
    a_all = torch.from_numpy(np.stack([np.asarray(data.actions[r:r + context + hmax - 1], np.int64) for r in rows]))
    truth_z = z_all[:, context:]  # (R, H, D)
    hidx = [h - 1 for h in horizons]
    truth_frames = {}
    for e in sorted({e for e, _ in starts}):
        truth_frames[e] = folder.load(e).frames
    frames_true = np.stack([truth_frames[e][[s + context - 1 + h for h in horizons]] for e, s in starts])  # (R, nh, H, W, 3)
    ft = _frames01(frames_true.reshape(-1, *frames_true.shape[2:]))
    preds = {name: imagine(step, z_all[:, :context], a_all) for name, step in methods.items()}
    preds["autoencoder"] = truth_z
    report: Dict[str, Dict[int, dict]] = {}
    names = list(preds)
    it = names
    if progress:
        from tqdm import tqdm

        it = tqdm(names, desc="decode")
    for name in it:
        p = preds[name][:, hidx]  # (R, nh, D)
        t = truth_z[:, hidx]
        mse = ((p - t) ** 2).mean(-1)  # (R, nh)
        cos = torch.nn.functional.cosine_similarity(p, t, dim=-1)
        dec = decode_rollout(encoder, p, batch_size=64)  # (R, nh, H, W, 3)
        fp = _frames01(dec.reshape(-1, *dec.shape[2:]))
        ps = psnr(fp, ft).view(len(starts), -1)
        ss = ssim(fp, ft).view(len(starts), -1)
        report[name] = {h: {"latent_mse": float(mse[:, i].mean()), "cosine": float(cos[:, i].mean()),
                            "psnr": float(ps[:, i].mean()), "ssim": float(ss[:, i].mean())}
                        for i, h in enumerate(horizons)}
    report["_rollouts"] = len(starts)  # type: ignore[assignment]
    return report


def table(report: dict, horizons: Sequence[int] = HORIZONS) -> Tuple[List[str], List[List[str]]]:
    """Columns and rows: one row per method, latent MSE / cosine / PSNR / SSIM at each horizon.
    ``report`` is :func:`evaluate`'s, or the same read back from its JSON (horizons as strings)."""
    cols = ["method"] + [f"h={h}: MSE / cos / PSNR / SSIM" for h in horizons]
    rows = []
    for m in (m for m in report if not m.startswith("_")):
        at = {int(h): r for h, r in report[m].items()}
        rows.append([m] + [f"{r['latent_mse']:.4f} / {r['cosine']:.3f} / {r['psnr']:.2f} / {r['ssim']:.3f}"
                           for r in (at[h] for h in horizons)])
    return cols, rows


def markdown_table(report: dict, horizons: Sequence[int] = HORIZONS) -> str:
    """:func:`table` as Markdown."""
    cols, rows = table(report, horizons)
    lines = ["| " + " | ".join(cols) + " |", "|---|" + "---|" * len(horizons)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


COLORS = {"learned": (220, 60, 40), "ridge": (40, 110, 220), "copy-last": (120, 120, 120), "autoencoder": (40, 160, 60)}


def plot(report: dict, path: "str | Path", horizons: Sequence[int] = HORIZONS) -> Path:
    """Two panels (latent MSE, decoded PSNR vs horizon), one line per method, written as a PNG with PIL."""
    from PIL import Image, ImageDraw

    from btnk_env.models.image_file import save_png

    methods = [m for m in report if not m.startswith("_")]
    w, h, pad = 420, 300, 50
    img = Image.new("RGB", (2 * w, h + 30), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    for panel, (key, title) in enumerate((("latent_mse", "latent MSE (lower is better)"),
                                          ("psnr", "decoded PSNR, dB (higher is better)"))):
        x0 = panel * w
        vals = [report[m][hh][key] for m in methods for hh in horizons]
        lo, hi = min(vals), max(vals)
        lo, hi = lo - 0.05 * (hi - lo + 1e-9), hi + 0.05 * (hi - lo + 1e-9)
        px = lambda hh: x0 + pad + (hh - horizons[0]) / (horizons[-1] - horizons[0]) * (w - 2 * pad)  # noqa: E731
        py = lambda v: 20 + (1 - (v - lo) / (hi - lo)) * (h - 60)  # noqa: E731
        draw.rectangle([x0 + pad, 20, x0 + w - pad, h - 40], outline=(0, 0, 0))
        draw.text((x0 + pad, 4), title, fill=(0, 0, 0))
        for hh in horizons:
            draw.text((px(hh) - 6, h - 36), str(hh), fill=(0, 0, 0))
        for v in (lo, (lo + hi) / 2, hi):
            draw.text((x0 + 2, py(v) - 6), f"{v:.3g}", fill=(0, 0, 0))
        draw.text((x0 + w // 2 - 20, h - 22), "horizon", fill=(0, 0, 0))
        for m in methods:
            pts = [(px(hh), py(report[m][hh][key])) for hh in horizons]
            color = COLORS.get(m, (150, 50, 150))
            draw.line(pts, fill=color, width=2)
            for x, y in pts:
                draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=color)
    for i, m in enumerate(methods):
        draw.text((pad + i * 130, h + 12), f"-- {m}", fill=COLORS.get(m, (150, 50, 150)))
    return save_png(Path(path), np.asarray(img))


# ---------------------------------------------------------------------- command line
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="panorama-rooms-small-dynamics", help="dynamics model folder or bundled name")
    parser.add_argument("--data", required=True, help="held-out latent episodes (btnk-env encode)")
    parser.add_argument("--train-data", required=True, help="training latent episodes (for the ridge baseline)")
    parser.add_argument("--encoder", default=None, help="the encoder (default: the one the dynamics model names)")
    parser.add_argument("--stride", type=int, default=10, help="steps between rollout starts in an episode")
    parser.add_argument("--ridge-lambda", type=float, default=1.0)
    parser.add_argument("--out", default=None, help="plot PNG")
    parser.add_argument("--json", default=None, help="write the report as JSON")


def run(args: argparse.Namespace) -> int:
    from btnk_env.models import BtnkMAE
    from btnk_env.models.dynamics import DynamicsMismatchError, LatentDynamics
    from btnk_env.models.identity import model_sha256

    try:
        dyn = LatentDynamics.from_pretrained(args.model)
        data, train = LatentDataset(args.data), LatentDataset(args.train_data)
        encoder = BtnkMAE.from_pretrained(args.encoder or dyn.config.encoder or "panorama-rooms-small").eval()
        dyn.check_compatible(encoder.latent_dim, num_actions_of(data), model_sha256(encoder))
        dyn.check_compatible(data.latent_dim, None, data.meta.get("model_sha256"))
    except (FileNotFoundError, ValueError, DynamicsMismatchError) as err:
        print(f"btnk-env eval-dynamics: {err}")
        return 2
    ridge = RidgeDynamics(dyn.config.context, dyn.config.num_actions, args.ridge_lambda).fit(train)
    report = evaluate({"learned": dyn, "ridge": ridge, "copy-last": copy_last}, data, encoder, dyn.config.context,
                      stride=args.stride, progress=True)
    print(f"{report['_rollouts']} rollouts of {max(HORIZONS)} steps from {dyn.config.context} context frames\n")
    print(markdown_table(report))
    if args.json:
        atomic_write_text(Path(args.json), json.dumps(report, indent=2) + "\n")
    if args.out:
        print(f"plot: {plot(report, args.out)}")
    return 0


__all__ = ["RidgeDynamics", "copy_last", "evaluate", "imagine", "markdown_table", "num_actions_of", "table", "plot", "rollout_starts"]

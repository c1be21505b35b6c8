"""CPU tiers: the kernel path and ``precision="auto"`` follow the detected tier, here and on an
emulated AVX2-only CPU (a subprocess with ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2``)."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from btnk_env.models import BtnkMAE, frames_to_tensor, kernels
from btnk_env.models import precision as precision_module
from btnk_env.models.hardware import cpu_tier
from btnk_env.models.precision import auto_precision, check_precision, for_inference
from tests.conftest import IMAGES, ROOT

EMULATED_AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}

PROBE = """
import json, logging, torch, torch.nn.functional as F
from btnk_env.models import BtnkMAE, kernels
from btnk_env.models.hardware import cpu_tier
from btnk_env.models.precision import auto_precision, for_inference
records = []
handler = logging.Handler()
handler.emit = records.append
logging.getLogger("btnk_env.models.precision").addHandler(handler)
torch.manual_seed(0)
model = BtnkMAE("test", img_size=(32, 64)).eval()
x = torch.randn(2, 3, 32, 64)
with torch.no_grad():
    latent = model.encode(x)
    bf16 = for_inference(model, "bf16").encode(x).float()
    with kernels.fused_kernels(True):
        fused = model.encode(x)
tier = cpu_tier()
print(json.dumps({
    "capability": torch.backends.cpu.get_cpu_capability(), "tier": tier.name, "avx512": tier.avx512,
    "bf16_units": tier.bf16_units, "lowered": tier.lowered, "fused": kernels.kernel_choice()[0],
    "auto": auto_precision("cpu"), "warnings": [r.getMessage() for r in records],
    "bf16_cosine": F.cosine_similarity(bf16, latent, dim=-1).min().item(),
    "fused_max_diff": (fused - latent).abs().max().item(),
}))
"""


def _probe(**env: str) -> dict:
    full = {k: v for k, v in os.environ.items() if k not in ("BTNK_FUSED_KERNELS", *EMULATED_AVX2)}
    full.update(PYTHONPATH=str(ROOT), **env)
    out = subprocess.run([sys.executable, "-c", PROBE], env=full, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_emulated_avx2_tier_takes_the_plain_path_fp32_auto_and_runs_fp32_for_bf16():
    r = _probe(**EMULATED_AVX2)
    assert r["capability"] in ("AVX2", "DEFAULT") and not r["avx512"] and not r["bf16_units"]
    assert r["fused"] is False and r["auto"] == "fp32"
    assert any("running fp32" in w for w in r["warnings"]), r["warnings"]
    assert r["bf16_cosine"] > 1 - 1e-6  # bf16 asked for: fp32 ran
    assert r["fused_max_diff"] < 1e-5  # the fused kernels forced on still compute the same (oneDNN's AVX2 code)
    if cpu_tier().avx512:  # this machine is above AVX2: the variables lowered it
        assert r["lowered"]


def test_kernel_override_by_environment_variable():
    assert _probe(**EMULATED_AVX2, BTNK_FUSED_KERNELS="1")["fused"] is True
    assert _probe(BTNK_FUSED_KERNELS="0")["fused"] is False


def test_bad_kernel_override_names_the_fix(monkeypatch):
    monkeypatch.setenv("BTNK_FUSED_KERNELS", "fast")
    with pytest.raises(ValueError, match="BTNK_FUSED_KERNELS='fast': use 1"):
        kernels._choose()


def test_kernel_choice_follows_the_tier():
    fused, why = kernels._choose()
    assert fused == (cpu_tier().avx512 and kernels.fused_kernels_available()), why
    assert cpu_tier().name in why


def test_auto_resolves_by_device_and_is_never_int8():
    expected = "bf16" if cpu_tier().bf16_units else "fp32"
    assert auto_precision("cpu") == check_precision("auto", "cpu") == expected
    assert check_precision("int8", "cpu") == "int8"
    if not torch.cuda.is_available():
        assert auto_precision("cuda") == "fp32"
    with pytest.raises(ValueError, match="must be one of \\('auto', 'fp32'"):
        check_precision("fastest", "cpu")


def test_bf16_on_a_cpu_without_bf16_units_runs_fp32_and_says_so_once(tiny_model, monkeypatch, caplog):
    no_units = dataclasses.replace(cpu_tier(), bf16_units=False, amx=False)
    monkeypatch.setattr(precision_module, "cpu_tier", lambda: no_units)
    monkeypatch.setattr(precision_module, "_BF16_NOTED", False)
    with caplog.at_level(logging.WARNING, logger="btnk_env.models.precision"):
        fast = for_inference(tiny_model, "bf16")
        assert check_precision("bf16", "cpu") == "fp32" and check_precision("auto", "cpu") == "fp32"
    assert fast is tiny_model and fast.dtype == torch.float32
    assert caplog.text.count("running fp32") == 1 and "AVX-512 BF16 or AMX" in caplog.text
    caplog.clear()
    with_units = dataclasses.replace(cpu_tier(), bf16_units=True)
    monkeypatch.setattr(precision_module, "cpu_tier", lambda: with_units)
    with caplog.at_level(logging.WARNING, logger="btnk_env.models.precision"):
        for_inference(tiny_model, "bf16")
    assert caplog.text == "" and check_precision("auto", "cpu") == "bf16"


@torch.no_grad()
def test_auto_keeps_the_shipped_model_close_to_fp32_on_real_images():
    from PIL import Image

    model = BtnkMAE.from_pretrained("panorama-rooms-small")
    h, w = model.img_size
    paths = sorted(IMAGES.glob("*/*.png"))
    assert paths, f"no images under {IMAGES}"
    frames = np.stack([np.asarray(Image.open(p).convert("RGB").resize((w, h), Image.BICUBIC)) for p in paths])
    x = frames_to_tensor(frames)  # (B, 3, h, w)
    reference = model.encode(x)
    auto = for_inference(model, "auto")
    assert (auto is model) == (auto_precision("cpu") == "fp32")
    for fast in (auto, for_inference(model, "bf16")):  # bf16 explicitly too (fp32 on a tier without bf16 units)
        cosine = F.cosine_similarity(fast.encode(x).float(), reference, dim=-1)
        assert cosine.min() >= 0.999, cosine


def test_wrappers_and_decode_take_auto(tiny_model):
    from btnk_env.video import decode_rollout
    from btnk_env.wrappers.frames import FrameEncoder

    encoder = FrameEncoder(tiny_model, (32, 64), "cpu", "auto")
    assert encoder.precision == auto_precision("cpu")  # the precision it runs, not "auto"
    latents = encoder.encode(np.zeros((2, 32, 64, 3), np.uint8))
    assert latents.dtype == np.float32 and latents.shape == (2, tiny_model.latent_dim)
    frames = decode_rollout(tiny_model, torch.randn(3, tiny_model.latent_dim), precision="auto")
    assert frames.shape == (1, 3, 32, 64, 3)

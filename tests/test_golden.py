"""The model reproduces the original btnk_mae and MAE code: reference outputs in shared/golden."""

from __future__ import annotations

import json

import pytest
import torch

from btnk_env.models import BtnkMAE, BtnkMAEConfig
from tests.conftest import GOLDEN

ATOL = 1e-5
BTNK = ["btnk_tiny_noact_64", "btnk_tiny_relu_64to128", "btnk_tiny_gelu_p8_32"]


def _load(name: str):
    model = BtnkMAE.from_pretrained(GOLDEN / f"{name}.pth", num_heads=4, decoder_num_heads=4)
    expected = torch.load(GOLDEN / f"{name}.expected.pt", weights_only=True)
    return model, expected


@pytest.mark.parametrize("name", BTNK)
def test_detected_config_matches_reference_sizes(name):
    model, _ = _load(name)
    sizes = json.loads((GOLDEN / f"{name}.json").read_text())["model"]
    for field, value in sizes.items():
        got = getattr(model.config, field)
        assert got == value, f"{field}: detected {got}, reference {value}"


@pytest.mark.parametrize("name", BTNK)
@torch.no_grad()
def test_reproduces_reference_outputs(name):
    model, exp = _load(name)
    x = exp["input"]
    assert not model.training
    torch.testing.assert_close(model.encode_tokens(x), exp["tokens"], atol=ATOL, rtol=0)
    torch.testing.assert_close(model.encode(x), exp["latent"], atol=ATOL, rtol=0)
    torch.testing.assert_close(model.decode_patches(exp["latent"]), exp["patches"], atol=ATOL, rtol=0)
    torch.testing.assert_close(model.decode(exp["latent"]), exp["image"], atol=ATOL, rtol=0)
    torch.testing.assert_close(model.decode_full_mae(exp["tokens"]), exp["full_mae_patches"], atol=ATOL, rtol=0)
    torch.testing.assert_close(model.reconstruct(x), exp["image"], atol=ATOL, rtol=0)
    out = model(x, full_mae=True)
    torch.testing.assert_close(out.full_mae_patches, exp["full_mae_patches"], atol=ATOL, rtol=0)


@torch.no_grad()
def test_from_mae_gives_mae_cls_token_and_decoder():
    ref = json.loads((GOLDEN / "mae_tiny_64.json").read_text())
    config = BtnkMAEConfig(**{k: v for k, v in ref.items() if k in BtnkMAEConfig.__dataclass_fields__})
    model = BtnkMAE.from_mae(GOLDEN / "mae_tiny_64.pth", config)
    exp = torch.load(GOLDEN / "mae_tiny_64.expected.pt", weights_only=True)
    assert exp["mask"].sum() == 0  # unmasked: MAE's decoder saw every token
    torch.testing.assert_close(model.encode(exp["input"]), exp["cls"], atol=ATOL, rtol=0)
    tokens = model.encode_tokens(exp["input"])
    torch.testing.assert_close(model.decode_full_mae(tokens), exp["decoder_pred"], atol=ATOL, rtol=0)


def test_from_mae_keeps_fresh_bottleneck_and_loads_the_rest():
    mae = torch.load(GOLDEN / "mae_tiny_64.pth", weights_only=True)["model"]
    torch.manual_seed(0)
    model = BtnkMAE.from_mae(GOLDEN / "mae_tiny_64.pth", "test")
    torch.testing.assert_close(model.encoder.blocks[1].mlp.fc2.weight, mae["blocks.1.mlp.fc2.weight"])
    torch.testing.assert_close(model.decoder.decoder_pred.bias, mae["decoder_pred.bias"])
    torch.testing.assert_close(model.decoder.mask_token, mae["mask_token"])
    # the bottleneck parts are freshly initialised (xavier, std-0.02 queries), not zeros
    assert model.decoder.learned_embed.std().item() == pytest.approx(0.02, rel=0.3)
    assert model.decoder.patch_recon.attn.in_proj_weight.abs().sum() > 0

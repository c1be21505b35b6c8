"""Model behaviour: closed-form cross-attention, CLS-only last block, any image size, input checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from btnk_env.models import BtnkMAE, BtnkMAEConfig, frames_to_tensor, tensor_to_frames
from btnk_env.models.config import PRESETS
from btnk_env.models.decoder import PatchReconstruction
from btnk_env.models.patch_embed import patchify, unpatchify
from btnk_env.models.pos_embed import sincos_pos_embed
from tests.conftest import GOLDEN


@torch.no_grad()
def test_single_key_attention_equals_multihead_attention():
    torch.manual_seed(0)
    dim, heads = 64, 4
    mha = nn.MultiheadAttention(dim, heads, batch_first=True).eval()
    nn.init.normal_(mha.in_proj_bias)
    recon = PatchReconstruction(dim, heads).eval()
    missing = recon.attn.load_state_dict(mha.state_dict(), strict=True)
    assert not missing.missing_keys and not missing.unexpected_keys
    queries, kv = torch.randn(3, 10, dim), torch.randn(3, dim)
    reference, _ = mha(queries, kv.unsqueeze(1), kv.unsqueeze(1))  # (B, N, D)
    closed_form = recon.attn(kv).expand(-1, 10, -1)
    torch.testing.assert_close(closed_form, reference, atol=1e-6, rtol=1e-5)


@torch.no_grad()
def test_cls_only_last_block_equals_full_sequence(tiny_model):
    x = torch.randn(3, 3, 32, 64)
    torch.testing.assert_close(tiny_model.encode(x), tiny_model.encode_tokens(x)[:, 0], atol=1e-6, rtol=1e-5)


def test_presets_have_expected_latent_sizes():
    assert {n: PRESETS[n]["embed_dim"] for n in ("base", "large", "huge")} == {"base": 768, "large": 1024, "huge": 1280}
    for name in ("base", "large", "huge"):
        cfg = BtnkMAEConfig.from_preset(name)
        assert (cfg.decoder_embed_dim, cfg.decoder_depth) == (512, 8)
    assert BtnkMAEConfig.from_preset("huge").patch_size == 14


def test_config_validation_messages():
    with pytest.raises(ValueError, match="not divisible by the patch size 16"):
        BtnkMAEConfig(img_size=(100, 200))
    with pytest.raises(ValueError, match="num_heads=5 must divide embed_dim=64"):
        BtnkMAEConfig(embed_dim=64, num_heads=5)
    with pytest.raises(ValueError, match="act_fn"):
        BtnkMAEConfig(act_fn="elu")
    with pytest.raises(ValueError, match="unknown BtnkMAEConfig fields"):
        BtnkMAEConfig.from_dict({"embed_dim": 64, "num_heads": 4, "depthh": 2})


def test_sincos_table_for_a_panorama_grid_matches_square_layout():
    # a 2:1 grid keeps MAE's layout: first half encodes the column, second half the row
    square = sincos_pos_embed(32, (4, 4))[0].reshape(4, 4, 32)
    pano = sincos_pos_embed(32, (4, 8))[0].reshape(4, 8, 32)
    torch.testing.assert_close(pano[:, :4], square)


@torch.no_grad()
def test_set_img_size_panorama_native_grid_keeps_parameters():
    torch.manual_seed(0)
    model = BtnkMAE("test").eval()
    params_before = {n: p for n, p in model.named_parameters()}
    weights_before = {n: p.clone() for n, p in model.named_parameters() if n != "decoder.learned_embed"}
    model.set_img_size((64, 128))
    assert model.img_size == (64, 128) and model.grid_size == (4, 8)
    # the same Parameter objects (optimizers keep tracking them), unchanged except resampled queries
    for name, param in model.named_parameters():
        assert param is params_before[name]
        if name in weights_before:
            assert torch.equal(param, weights_before[name])
    assert model.decoder.learned_embed.shape == (1, 32, 64)
    x = torch.randn(2, 3, 64, 128)
    assert model.decode(model.encode(x)).shape == (2, 3, 64, 128)
    # back to the original size: the fixed tables are the same as a model built at that size
    model.set_img_size(64)
    torch.testing.assert_close(model.encoder.pos_embed, sincos_pos_embed(64, (4, 4), cls_token=True))


@torch.no_grad()
def test_resampling_learned_queries_to_same_grid_is_identity_and_upsampling_is_smooth():
    torch.manual_seed(0)
    model = BtnkMAE("test").eval()
    q = model.decoder.learned_embed.clone()
    model.set_img_size(128)
    up = model.decoder.learned_embed.reshape(1, 8, 8, 64)
    # bicubic 2x upsampling keeps the mean of each original cell close to the original value
    down = up.reshape(1, 4, 2, 4, 2, 64).mean(dim=(2, 4)).reshape(1, 16, 64)
    assert (down - q).abs().max() < 0.5 * q.abs().max()


def test_patchify_roundtrip_non_square():
    x = torch.randn(2, 3, 32, 64)
    p = patchify(x, 16)
    assert p.shape == (2, 8, 768)
    assert torch.equal(unpatchify(p, 16, (2, 4)), x)


def test_frames_roundtrip_uint8():
    frames = torch.randint(0, 256, (2, 16, 32, 3), dtype=torch.uint8).numpy()
    assert (tensor_to_frames(frames_to_tensor(frames)) == frames).all()


def test_frames_to_tensor_resizes_with_antialiasing():
    frames = torch.zeros(1, 64, 128, 3, dtype=torch.uint8)
    frames[:, :, ::2] = 255  # 1-pixel stripes: plain subsampling would give all-white or all-black
    x = frames_to_tensor(frames.numpy(), size=(32, 64))
    gray = tensor_to_frames(x)[0].astype(float)
    assert gray.shape == (32, 64, 3)
    assert 100 < gray.mean() < 155 and gray.std() < 20


@pytest.mark.parametrize(
    "bad, error, match",
    [
        (torch.randn(2, 4, 32, 64), ValueError, r"\(B, 3, H, W\)"),
        (torch.randn(3, 32, 64), ValueError, r"\(B, 3, H, W\)"),
        (torch.randint(0, 255, (2, 3, 32, 64), dtype=torch.uint8), TypeError, "frames_to_tensor"),
        (torch.randn(2, 3, 40, 60), ValueError, r"e\.g\. 32x64"),
        (torch.randn(2, 3, 40, 64), ValueError, "not divisible by the patch size 16"),
        (torch.full((1, 3, 32, 64), float("nan")), ValueError, "NaN"),
        (torch.randn(2, 3, 32, 64).index_put_((torch.tensor([1]),) * 4, torch.tensor(float("nan"))), ValueError, "NaN"),
        (torch.randn(2, 3, 32, 64).index_put_((torch.tensor([1]),) * 4, torch.tensor(-float("inf"))), ValueError, "infinite"),
        (torch.zeros(2, 32, 64, 3), ValueError, "frames_to_tensor"),
    ],
)
def test_encode_rejects_bad_images(tiny_model, bad, error, match):
    with pytest.raises(error, match=match):
        tiny_model.encode(bad)


@pytest.mark.parametrize(
    "bad, error, match",
    [
        (torch.randn(2, 32), ValueError, r"\(B, 64\)"),
        (torch.randn(64), ValueError, r"\(B, 64\)"),
        (torch.zeros(2, 64, dtype=torch.long), TypeError, "float"),
        (torch.full((1, 64), float("inf")), ValueError, "NaN or infinite"),
        (torch.randn(3, 64).index_put_((torch.tensor([2]), torch.tensor([5])), torch.tensor(float("nan"))), ValueError, "NaN"),
    ],
)
def test_decode_rejects_bad_latents(tiny_model, bad, error, match):
    with pytest.raises(error, match=match):
        tiny_model.decode(bad)


def test_model_is_trainable_end_to_end(tiny_model):
    tiny_model.train()
    opt = torch.optim.AdamW(tiny_model.parameters(), lr=1e-3)
    x = torch.randn(4, 3, 32, 64)
    losses = []
    for _ in range(5):
        out = tiny_model(x, full_mae=True)
        target = tiny_model.patchify(x)
        loss = ((out.patches - target) ** 2).mean() + ((out.full_mae_patches - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    # gradients reach the encoder through the latent and the bottleneck queries
    assert tiny_model.encoder.patch_embed.proj.weight.grad.abs().sum() > 0
    assert tiny_model.decoder.learned_embed.grad.abs().sum() > 0


@torch.no_grad()
def test_fused_cpu_kernels_equal_plain_path():
    from btnk_env.models.kernels import fused_kernels, fused_kernels_available

    assert fused_kernels_available()  # this PyTorch build (x86 CPU with oneDNN) has them
    model = BtnkMAE.from_pretrained(GOLDEN / "btnk_tiny_relu_64to128.pth", num_heads=4, decoder_num_heads=4)
    x = torch.randn(2, 3, 128, 128)
    with fused_kernels(True):  # forced: runs on every x86 tier (oneDNN has AVX2 kernels too)
        fused = (model.encode_tokens(x), model.encode(x), model.reconstruct(x))
    with fused_kernels(False):  # the plain path under no_grad (in-place GELU, addmm_ residuals)
        plain = (model.encode_tokens(x), model.encode(x), model.reconstruct(x))
    with torch.enable_grad():  # the plain path as autograd runs it
        reference = (model.encode_tokens(x), model.encode(x), model.reconstruct(x))
    for a, b, c in zip(fused, plain, reference):
        torch.testing.assert_close(a, c, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(b, c, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_packed_weights_equal_plain_and_follow_weight_changes():
    from btnk_env.models import kernels

    torch.manual_seed(0)
    layer = torch.nn.Linear(32, 48)
    x = torch.randn(5, 7, 32)
    with torch.no_grad(), kernels.fused_kernels(True):
        previous = kernels.set_weight_packing(True)
        try:
            torch.testing.assert_close(kernels.linear_gelu(x, layer), F.gelu(layer(x)), atol=1e-6, rtol=1e-6)
            assert layer in kernels._PACKED  # the packed copy lives outside the layer
            r = torch.randn(5, 7, 48)
            # in-place edits (an optimizer step, load_state_dict) and new storage repack at the next call
            edits = [lambda: layer.weight.mul_(-2.0),
                     lambda: layer.load_state_dict({"weight": torch.randn(48, 32), "bias": torch.randn(48)}),
                     lambda: layer.double().float()]
            for edit in edits:
                for _ in range(kernels.MIN_USES_PER_PACK):
                    kernels.linear(x, layer)
                packed_before = kernels._PACKED[layer].weight
                edit()
                torch.testing.assert_close(kernels.linear_add(x, layer, r), layer(x) + r, atol=1e-5, rtol=1e-5)
                assert kernels._PACKED[layer].weight is not packed_before and kernels._PACKED[layer].weight is not None
            # a weight that changes between every few calls (act, update, act, ...) stops being packed
            for _ in range(3):
                layer.weight.add_(0.1)
                torch.testing.assert_close(kernels.linear(x, layer), layer(x), atol=1e-6, rtol=1e-6)
            assert kernels._PACKED[layer].weight is None
            kernels.set_weight_packing(False)
            assert len(kernels._PACKED) == 0  # switching off frees the copies
            torch.testing.assert_close(kernels.linear(x, layer), layer(x), atol=1e-6, rtol=1e-6)
            kernels.set_weight_packing(True)
            kernels.linear(x, layer)
            del layer
            import gc

            gc.collect()
            assert len(kernels._PACKED) == 0  # nothing kept alive once the model is gone
            with torch.inference_mode():  # inference tensors have no version counter: used unpacked
                frozen = torch.nn.Linear(32, 48)
                torch.testing.assert_close(kernels.linear(x, frozen), frozen(x), atol=1e-6, rtol=1e-6)
                assert frozen not in kernels._PACKED
        finally:
            kernels.set_weight_packing(previous)


@torch.no_grad()
@pytest.mark.parametrize("fused", [True, False])
def test_forward_hooks_on_linear_layers_still_fire_in_inference(fused):
    from btnk_env.models.kernels import fused_kernels

    torch.manual_seed(0)
    model = BtnkMAE("test").eval()
    x = torch.randn(2, 3, 64, 64)
    with fused_kernels(fused):
        unhooked = model.encode(x)
        seen, kept = [], []
        hooks = [model.encoder.blocks[0].mlp.fc1.register_forward_hook(lambda m, i, o: seen.append(("fc1", o.shape))),
                 model.encoder.blocks[0].mlp.fc1.register_forward_hook(lambda m, i, o: kept.append((o, o.clone()))),
                 model.decoder.decoder_pred.register_forward_pre_hook(lambda m, i: seen.append(("pred", i[0].shape)))]
        hooked = model.encode(x)
        model.decode(hooked)
    for hook in hooks:
        hook.remove()
    assert [name for name, _ in seen] == ["fc1", "pred"]
    torch.testing.assert_close(hooked, unhooked, atol=1e-5, rtol=1e-5)
    output, copy = kept[0]
    assert torch.equal(output, copy)  # a hooked layer's output is not changed in place (no GELU on it)


@torch.no_grad()
def test_cpu_sub_batches_equal_whole_batch(monkeypatch):
    import btnk_env.models.btnk_mae as btnk_mae
    torch.manual_seed(0)
    model = BtnkMAE("test").eval()
    x = torch.randn(7, 3, 64, 64)
    z = torch.randn(7, model.latent_dim)
    whole = model.encode(x), model.decode(z)
    monkeypatch.setattr(btnk_mae, "CPU_SUB_BATCH_TOKENS", 2 * (model.config.num_patches + 1))
    enc_calls, dec_calls = [], []
    encode = model.encoder.forward_latent
    monkeypatch.setattr(model.encoder, "forward_latent", lambda t: enc_calls.append(len(t)) or encode(t))
    model.decoder.register_forward_pre_hook(lambda m, a: dec_calls.append(len(a[0])))
    split = model.encode(x), model.decode(z)
    assert enc_calls == [2, 2, 2, 1] and dec_calls == [2, 2, 2, 1]
    for a, b in zip(whole, split):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    # under autograd the batch runs whole
    enc_calls.clear(), dec_calls.clear()
    with torch.enable_grad():
        model.decode(model.encode(x))
    assert enc_calls == [7] and dec_calls == [7]


@torch.no_grad()
def test_set_img_size_round_trip_restores_queries_exactly():
    torch.manual_seed(0)
    model = BtnkMAE("test").eval()
    original = model.decoder.learned_embed.clone()
    for size in [(64, 128), (128, 256), 96, 64]:
        model.set_img_size(size)
    assert torch.equal(model.decoder.learned_embed, original)
    # after training at the new size, the trained queries become the source
    model.set_img_size((64, 128))
    model.decoder.learned_embed.add_(1.0)
    trained = model.decoder.learned_embed.clone()
    model.set_img_size(64)
    model.set_img_size((64, 128))
    assert torch.equal(model.decoder.learned_embed, trained)


def test_frames_from_read_only_arrays_do_not_warn():
    import warnings

    import numpy as np

    frames = np.zeros((8, 16, 3), np.uint8)
    frames.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert frames_to_tensor(frames).shape == (1, 3, 8, 16)


@torch.no_grad()
def test_the_input_decides_the_size_and_equals_a_model_set_to_it():
    import copy

    torch.manual_seed(0)
    model = BtnkMAE("test").eval()  # trained at 64x64
    keys = list(model.state_dict())
    z = torch.randn(3, model.latent_dim)
    for size in [(64, 128), (32, 32), 96]:
        h, w = (size, size) if isinstance(size, int) else size
        x = torch.randn(2, 3, h, w)
        sized = copy.deepcopy(model).set_img_size(size)
        assert torch.equal(model.encode(x), sized.encode(x))
        assert torch.equal(model.encode_tokens(x), sized.encode_tokens(x))
        decoded = model.decode(z, size=size)
        assert decoded.shape == (3, 3, h, w)
        assert torch.equal(decoded, sized.decode(z))  # resampled on the fly == resampled once, then stored
        assert torch.equal(model.reconstruct(x), sized.reconstruct(x))
    assert model.img_size == (64, 64) and model.decode(z).shape == (3, 3, 64, 64)  # the default is untouched
    assert list(model.state_dict()) == keys and model.decoder.learned_embed.shape == (1, 16, 64)


@torch.no_grad()
def test_resampled_queries_follow_every_change_of_the_learned_table():
    torch.manual_seed(0)
    model = BtnkMAE("test").eval()
    z = torch.randn(2, model.latent_dim)
    before = model.decode(z, size=(64, 128))
    model.decoder.learned_embed.add_(0.5)  # an optimizer step (in place)
    after_step = model.decode(z, size=(64, 128))
    assert not torch.equal(before, after_step)
    model.decoder.learned_embed.data.mul_(2.0)  # even a change that autograd does not see
    after_data = model.decode(z, size=(64, 128))
    assert not torch.equal(after_step, after_data)
    fresh = BtnkMAE("test").eval()
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(fresh.decode(z, size=(64, 128)), after_data)
    model.load_state_dict(BtnkMAE("test").state_dict())
    assert not torch.equal(model.decode(z, size=(64, 128)), after_data)


def test_training_at_another_size_reaches_the_learned_queries():
    torch.manual_seed(0)
    model = BtnkMAE("test").train()
    with torch.inference_mode():  # a cached resampling made under inference mode ...
        model.decode(torch.randn(1, model.latent_dim), size=(64, 128))
    x = torch.randn(2, 3, 64, 128)
    opt = torch.optim.SGD([model.decoder.learned_embed], lr=1.0)
    out = model(x)  # ... does not stand in for the differentiable one
    assert out.patches.shape == (2, 32, 768)
    ((out.patches - model.patchify(x)) ** 2).mean().backward()
    assert model.decoder.learned_embed.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        stale = model.decode_patches(out.latent.detach(), size=(64, 128))
        opt.step()
        assert not torch.equal(model.decode_patches(out.latent.detach(), size=(64, 128)), stale)

"""The benchmark helpers count and attribute work correctly (no speed is asserted here)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmarks import bench_model
from benchmarks.common import flops_per_call, matmul_candidates
from btnk_env.models import BtnkMAE


def test_flop_count_includes_cpu_attention():
    q, k, v = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 8)
    assert flops_per_call(lambda: F.scaled_dot_product_attention(q, k, v)) == 4 * 2 * 3 * 5 * 7 * 8
    x = torch.randn(4, 6)
    layer = torch.nn.Linear(6, 10)
    with torch.no_grad():
        assert flops_per_call(lambda: layer(x)) == 2 * 4 * 6 * 10


def test_matmul_candidates_compute_the_products_they_claim():
    for label, flops, fn in matmul_candidates(torch.float32, n=64):
        m, k, o = (int(s) for s in label.split()[0].split("x"))
        assert flops == 2 * m * k * o
        assert fn().shape == (m, o), label


def test_time_breakdown_accounts_for_the_whole_encode_and_restores_the_model():
    import btnk_env.models.layers as layers
    before = (layers.linear, layers.linear_gelu, layers.linear_add, F.scaled_dot_product_attention, F.linear)
    model = BtnkMAE("test").eval()
    bd = bench_model.time_breakdown(model, batch=2, reps=2)
    assert before == (layers.linear, layers.linear_gelu, layers.linear_add, F.scaled_dot_product_attention, F.linear)
    parts = bd["linear_ms"] + bd["attention_ms"] + bd["other_ms"]
    assert abs(parts - bd["encode_ms"]) < 1e-6 and min(bd["linear_ms"], bd["attention_ms"]) > 0
    attn = model.encoder.blocks[0].attn
    n = model.config.num_patches + 1
    expected = 4 * 2 * attn.num_heads * n * n * attn.head_dim * (len(model.encoder.blocks) - 1)
    assert abs(bd["attention_gflop"] * 1e9 - expected) < 1
    with torch.no_grad():
        assert bd["gflop"] * 1e9 == flops_per_call(lambda: model.encode(torch.randn(2, 3, *model.img_size)))


def test_versus_original_times_both_and_finds_equal_outputs():
    """The side-by-side benchmark runs the original (``shared/upstream``) and this project on the
    same weights: outputs equal within 1e-5, a best-of-rounds and a paired ratio per contender."""
    from benchmarks.bench_original import UPSTREAM, format_table, versus_original
    from tests.conftest import require_shared

    require_shared(UPSTREAM)
    result = versus_original("base", batches=(1,), rounds=2, kernels=("default", "plain"))
    assert [r["contender"] for r in result["rows"]] == ["original", "ours default", "ours plain"]
    original = result["rows"][0]
    assert original["encode_vs_original"] == original["encode_paired"] == 1.0
    for row in result["rows"]:
        for op in ("encode", "decode"):
            assert row[f"{op}_img_s"] > 0 and 0.2 < row[f"{op}_paired"] < 5
    assert result["max_abs_diff"] and max(result["max_abs_diff"].values()) < 1e-5
    assert "paired" in format_table(result)


def test_versus_engines_writes_its_schema_and_renders(tmp_path, monkeypatch):
    import json

    from benchmarks.bench_engines import SCHEMA, bf16_unavailable, format_table, versus_engines
    from benchmarks.render_speed import render
    from btnk_env.models import backends as backends_module
    from btnk_env.models.backends import Route, backend_missing

    engines = [b for b in ("onnxruntime", "openvino") if backend_missing(b) is None]
    if engines:  # the default runs an engine for encode at batch 2: timed there as "default"
        monkeypatch.setattr(backends_module, "_CHOICE", {"fp32": Route({"encode": ((2, engines[0]),)}, "test")})
    result = versus_engines("test", size=(32, 64), batches=(1, 2), rounds=2, precisions=("fp32", "bf16"),
                            loads=("none",))
    assert result["schema"] == SCHEMA and result["machine"]["shared"] is True
    run = result["runs"][0]
    fp32 = [r for r in run["rows"] if r["precision"] == "fp32"]
    assert {r["backend"] for r in fp32} == {"torch", *engines, *(["default"] if engines else [])}
    assert {(r["op"], r["batch"]) for r in fp32 if r["backend"] == "default"} == ({("encode", 2)} if engines else set())
    verdicts = {(c["op"], c["batch"]): c for c in run["default_vs_engines"] if c["precision"] == "fp32"}
    if engines:
        assert set(verdicts) == {(op, b) for op in ("encode", "decode") for b in (1, 2)}
        assert verdicts[("encode", 2)]["default_runs"] == engines[0] and verdicts[("encode", 1)]["default_runs"] == "torch"
        assert "at least as fast" in format_table(result)
    if bf16_unavailable():  # said per cell, with the reason
        assert run["skipped"]["bf16"] == bf16_unavailable() and not any(r["precision"] == "bf16" for r in run["rows"])
        assert "b2 bf16: not available on this tier" in format_table(result)
    run["rows"] = fp32
    assert {(r["op"], r["batch"]) for r in fp32} == {(op, b) for op in ("encode", "decode") for b in (1, 2)}
    assert all(r["paired_vs_torch"] == 1.0 for r in run["rows"] if r["backend"] == "torch")
    for e in (e for e in result["errors"] if e["precision"] == "fp32"):
        assert e["latent_max_abs_diff"] < 1e-5 and e["patches_max_abs_diff"] < 1e-5, e
    path = tmp_path / "engines.json"
    path.write_text(json.dumps(result))
    text = render([path])
    assert "| encode | 2 | fp32 |" in text and result["when"] in text

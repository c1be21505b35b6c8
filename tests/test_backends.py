"""Inference backends (ONNX Runtime, OpenVINO) equal the torch path, are chosen once, and the
thread count is decided once from what the process sees."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from btnk_env.models import backends, threads
from btnk_env.models.backends import EngineModel, backend_choice, check_backend
from btnk_env.models.precision import for_inference
from tests.conftest import ROOT

ENGINES = [pytest.param(name, marks=pytest.mark.skipif(backends.backend_missing(name) is not None,
                                                       reason=str(backends.backend_missing(name))))
           for name in ("onnxruntime", "openvino")]


@pytest.mark.parametrize("backend", ENGINES)
def test_engine_fp32_equals_torch_path(tiny_model, backend):
    torch.manual_seed(1)
    x, z = torch.randn(3, 3, 32, 64), torch.randn(5, tiny_model.latent_dim)
    engine = for_inference(tiny_model, "fp32", backend=backend)
    assert isinstance(engine, EngineModel) and engine.backend == backend
    with torch.inference_mode():
        assert (engine.encode(x) - tiny_model.encode(x)).abs().max() < 1e-5
        assert (engine.encode(x[:1]) - tiny_model.encode(x[:1])).abs().max() < 1e-5  # batch size is dynamic
        assert (engine.encode(torch.randn(2, 3, 64, 128)).shape == (2, tiny_model.latent_dim))  # another size
        assert (engine.decode(z) - tiny_model.decode(z)).abs().max() < 1e-5
        assert (engine.decode(z, size=(64, 128)) - tiny_model.decode(z, size=(64, 128))).abs().max() < 1e-5


@pytest.mark.parametrize("backend", ENGINES)
def test_engine_is_a_snapshot_and_checks_input(tiny_model, backend):
    x = torch.randn(2, 3, 32, 64)
    engine = EngineModel(tiny_model, backend)
    with torch.inference_mode():
        before = engine.encode(x)
    with torch.no_grad():
        tiny_model.encoder.norm.bias.add_(1.0)  # the caller's model changes later: the engine keeps its copy
        assert torch.equal(engine.encode(x), before)
    with pytest.raises(ValueError, match="divisible by the patch"):
        engine.encode(torch.randn(1, 3, 30, 64))


def test_bad_backend_requests_say_what_to_do(tiny_model):
    with pytest.raises(ValueError, match="backend must be one of"):
        for_inference(tiny_model, "fp32", backend="tensorrt")
    with pytest.raises(ValueError, match="onnxruntime is offered in fp32 and int8"):
        check_backend("onnxruntime", "bf16", "cpu")
    with pytest.raises(ValueError, match="runs on the CPU"):
        check_backend("openvino", "fp32", "cuda")
    assert check_backend("auto", "fp32", "cuda").engines == ()


def test_auto_backend_is_chosen_once_and_forced_by_env(monkeypatch):
    monkeypatch.setattr(backends, "_CHOICE", {})
    first = backend_choice("fp32")
    monkeypatch.setenv(backends.ENV_VAR, "openvino")
    assert backend_choice("fp32") is first  # decided once per process
    monkeypatch.setattr(backends, "_CHOICE", {})
    forced = backend_choice("fp32")
    assert forced.why == f"forced by {backends.ENV_VAR}"
    assert forced.backend("encode", 1) == forced.backend("decode", 32) == "openvino"
    assert backend_choice("int8").engines == ()  # openvino has no int8
    monkeypatch.setattr(backends, "_CHOICE", {})
    monkeypatch.setenv(backends.ENV_VAR, "nonsense")
    with pytest.raises(ValueError, match="BTNK_BACKEND"):
        backend_choice("fp32")


def test_auto_backend_follows_the_measured_table_per_op_and_batch(monkeypatch):
    from btnk_env.models.hardware import cpu_tier

    tier = cpu_tier().name
    monkeypatch.delenv(backends.ENV_VAR, raising=False)
    monkeypatch.setattr(backends, "_CHOICE", {})
    monkeypatch.setattr(backends, "MEASURED_FASTEST", {
        (tier, "fp32", "encode"): ((1, "torch"), (8, "openvino")), (tier, "fp32", "decode"): ((32, "onnxruntime"),)})
    monkeypatch.setattr(backends, "backend_missing", lambda name: None)
    route = backend_choice("fp32")
    assert [route.backend("encode", b) for b in (1, 7, 8, 500)] == ["torch", "torch", "openvino", "openvino"]
    assert [route.backend("decode", b) for b in (1, 31, 32)] == ["torch", "torch", "onnxruntime"]
    assert route.engines == ("onnxruntime", "openvino")
    assert route.describe() == "encode: torch, openvino from batch 8; decode: torch, onnxruntime from batch 32"
    assert backend_choice("int8").engines == ()  # not listed: torch
    monkeypatch.setattr(backends, "_CHOICE", {})  # an engine measured faster but not installed: torch there
    monkeypatch.setattr(backends, "backend_missing", lambda name: "openvino not installed" if name == "openvino" else None)
    route = backend_choice("fp32")
    assert route.backend("encode", 8) == "torch" and route.backend("decode", 32) == "onnxruntime"


@pytest.mark.parametrize("engine", ENGINES)
def test_a_route_runs_each_cell_on_its_backend(tiny_model, engine, monkeypatch):
    route = backends.Route({"encode": ((1, "torch"), (3, engine))}, "test")
    monkeypatch.setattr(backends, "_CHOICE", {"fp32": route})
    torch.manual_seed(2)
    x, z = torch.randn(4, 3, 32, 64), torch.randn(4, tiny_model.latent_dim)
    net = for_inference(tiny_model, "fp32")  # the default backend, "auto", follows the route
    assert isinstance(net, EngineModel) and net.route is route
    assert for_inference(tiny_model, "fp32") is net  # the snapshot is kept while the weights stay
    with torch.inference_mode():
        assert torch.equal(net.encode(x[:2]), tiny_model.encode(x[:2]))  # batch 2: the torch path itself
        assert (net.encode(x) - tiny_model.encode(x)).abs().max() < 1e-5  # batch 4: the engine
        assert torch.equal(net.decode(z), tiny_model.decode(z))  # decode is not routed: torch
    assert [key[0] for key in net._runs] == [engine]
    with torch.no_grad():
        tiny_model.encoder.norm.bias.add_(1.0)
    assert for_inference(tiny_model, "fp32") is not net  # the weights changed: a new snapshot


def test_thread_rule():
    assert threads.choose_threads(2, 0.0) == 2
    assert threads.choose_threads(2, 0.9) == 2  # less than a core kept busy
    assert threads.choose_threads(2, 1.0) == 1
    assert threads.choose_threads(2, 11.0) == 1
    assert threads.choose_threads(16, 3.5) == 13


def test_threads_decided_once_and_a_users_choice_kept(monkeypatch):
    monkeypatch.setattr(threads, "_CHOICE", None)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv(threads.ENV_VAR, "3")
    assert threads.inference_threads() == (3, f"set by {threads.ENV_VAR}")
    monkeypatch.setenv(threads.ENV_VAR, "2")
    assert threads.inference_threads()[0] == 3  # once per process
    monkeypatch.setattr(threads, "_CHOICE", None)
    monkeypatch.delenv(threads.ENV_VAR)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads.inference_threads() == (torch.get_num_threads(), "set by OMP_NUM_THREADS")
    monkeypatch.setattr(threads, "_CHOICE", None)
    monkeypatch.setenv(threads.ENV_VAR, "zero")
    with pytest.raises(ValueError, match="BTNK_THREADS"):
        threads.inference_threads()


def test_info_reports_backend_and_threads_chosen():
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "BTNK_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "btnk_env", "info", "--json"], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["inference_threads"].startswith("1 (set by BTNK_THREADS)")
    assert info["backend_auto"].startswith("fp32: ")


def test_frame_reader_threads_give_the_frames_in_order(tmp_path):
    import numpy as np
    from PIL import Image

    from btnk_env.training.frame_reader import read_batches

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (7, 8, 16, 3), dtype=np.uint8)
    files = []
    for i, f in enumerate(frames):
        files.append(tmp_path / f"{i}.png")
        Image.fromarray(f).save(files[-1])
    batches = [[0, 1, 2], [3, 4, 5], [6]]
    for workers in (0, 1, 2):
        got = list(read_batches(files, batches, (8, 16), (8, 16), workers=workers))
        assert [len(b) for b in got] == [3, 3, 1]
        assert np.array_equal(torch.cat(got).numpy(), frames)
    Image.fromarray(frames[0][:4]).save(files[4])  # a frame of another size fails, naming the file
    with pytest.raises(ValueError, match="4.png is 4x16"):
        list(read_batches(files, batches, (8, 16), (8, 16), workers=2))


def test_for_inference_applies_the_thread_decision_once(tiny_model, monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setattr(threads, "_CHOICE", (1, "test"))
    monkeypatch.setattr(threads, "_APPLIED", False)
    try:
        torch.set_num_threads(2)
        for_inference(tiny_model, "fp32", backend="torch")
        assert torch.get_num_threads() == 1
        torch.set_num_threads(2)  # the user's later choice stays
        for_inference(tiny_model, "fp32", backend="torch")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)

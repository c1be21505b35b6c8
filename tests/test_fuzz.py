"""Property tests (hypothesis): every parser and input check either works or raises the error it
documents (a ``ValueError``/``TypeError``/``KeyError`` with a message), never anything else.

Example counts are modest (suite time); docs/reliability.md lists them. A failure prints the
smallest input found.
"""

from __future__ import annotations

import io
import json
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from btnk_env.collection.seeds import SeedError, parse_seeds

def fuzz(examples: int) -> settings:
    """Fixed examples (derandomized: the same inputs on every run and machine), no example database."""
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
EXPECTED = (ValueError, TypeError, KeyError)


def _tmpdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="fuzz"))


# ---------------------------------------------------------------------------- seed ranges
_seed_text = st.text(alphabet="0123456789-, a", max_size=20)


@fuzz(300)
@given(_seed_text)
def test_parse_seeds_accepts_or_names_the_problem(text):
    try:
        seeds = parse_seeds(text)
    except SeedError as err:
        assert str(err)
        return
    assert len(seeds) >= 1 and all(s >= 0 for s in seeds[:50])


@fuzz(200)
@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 50)), min_size=1, max_size=6))
def test_parse_seeds_matches_the_expanded_list(parts):
    text = ",".join(f"{lo}-{lo + n}" if n else str(lo) for lo, n in parts)
    expected = [s for lo, n in parts for s in range(lo, lo + n + 1)]
    seeds = parse_seeds(text)
    assert len(seeds) == len(expected) and list(seeds) == expected
    assert seeds == parse_seeds(str(seeds)) and seeds == expected
    for i in (0, len(expected) // 2, -1):
        assert seeds[i] == expected[i]


# ---------------------------------------------------------------------------- config overrides
_KEYS = ["optim.lr", "optim.blr", "optim.min_lr", "optim.betas", "optim.clip_grad", "train.epochs", "train.batch_size",
         "train.precision", "train.resume", "train.overwrite", "model.img_size", "model.dropout", "data.crop_scale",
         "io.log_every", "io.snapshot_every", "dist.timeout_s", "nosuch.key", "train"]
_VALUES = st.one_of(st.integers(-5, 10**6).map(str), st.floats(allow_nan=True, allow_infinity=True).map(str),
                    st.sampled_from(["null", "true", "[1,2]", "[0.5,0.1]", "[", "{", "${x}", "'a'", "fp16", "]", ""]),
                    st.text(alphabet="[]{}$:,.-0123456789abcxyz' ", max_size=8))


@fuzz(120)
@given(st.lists(st.tuples(st.sampled_from(_KEYS), _VALUES), max_size=3))
def test_config_overrides_load_or_raise_config_error(pairs):
    from btnk_env.training.config import ConfigError, TrainConfig, load_config

    overrides = ["data.path=x"] + [f"{k}={v}" for k, v in pairs]
    try:
        cfg = load_config(overrides=overrides)
    except ConfigError as err:
        assert str(err)
        return
    assert isinstance(cfg, TrainConfig)
    assert cfg.optim.blr > 0 and (cfg.optim.lr is None or cfg.optim.lr > 0) and cfg.train.epochs >= 1


# ---------------------------------------------------------------------------- manifests
_record = st.fixed_dictionaries({}, optional={
    "index": st.one_of(st.integers(-2, 3), st.text(max_size=2), st.none()),
    "file": st.one_of(st.sampled_from(["images/000000.png", "000000.png", "../x", "/etc/passwd", ""]),
                      st.integers(), st.none(), st.lists(st.integers(), max_size=2)),
    "scene": st.text(max_size=3), "seed": st.integers(), "position": st.lists(st.floats(), max_size=3),
    "heading": st.floats(), "mode": st.text(max_size=3)})
_line = st.one_of(_record.map(json.dumps), st.text(max_size=30), st.just("[1, 2]"), st.just("null"))


@fuzz(150)
@given(st.lists(_line, max_size=5), st.booleans())
def test_manifests_read_as_their_complete_frames(lines, torn):
    from btnk_env.collection import load_manifest
    from btnk_env.training.datasets import panorama_files

    root = _tmpdir()
    (root / "images").mkdir()
    from PIL import Image

    Image.new("RGB", (4, 2)).save(root / "images" / "000000.png")
    text = "\n".join(lines) + ("" if torn else "\n")
    (root / "manifest.jsonl").write_text(text)
    records = load_manifest(root)  # a damaged line costs itself alone: never an error, never a crash
    assert all(isinstance(r, dict) and (root / r["file"]).is_file() for r in records)  # a hole costs itself alone
    indices = [r.get("index") for r in records]
    assert all(type(i) is int for i in indices) and indices == sorted(set(indices))
    files = panorama_files(root)
    assert all(Path(f).is_file() for f in files)


# ---------------------------------------------------------------------------- latent files
_SUFFIXES = [".npy", ".npz", ".pt", ".safetensors"]


def _array_bytes(arr: np.ndarray, suffix: str) -> bytes:
    buf = io.BytesIO()
    if suffix == ".npy":
        np.save(buf, arr)
    elif suffix == ".npz":
        np.savez(buf, latents=arr)
    elif suffix == ".pt":
        torch.save(torch.from_numpy(arr), buf)
    else:
        from safetensors.torch import save

        return save({"latents": torch.from_numpy(np.ascontiguousarray(arr))})
    return buf.getvalue()


_arrays = st.tuples(
    st.sampled_from([np.float32, np.float64, np.float16, np.int64, np.uint8, np.bool_]),
    st.lists(st.integers(0, 5), min_size=0, max_size=4),
)


@fuzz(150)
@given(_arrays, st.sampled_from(_SUFFIXES), st.integers(0, 10**6), st.sampled_from(["none", "truncate", "flip", "junk"]))
def test_latent_files_load_or_raise_a_clear_error(spec, suffix, seed, damage):
    from btnk_env.video import check_latents, load_latents

    dtype, shape = spec
    rng = np.random.default_rng(seed)
    arr = np.asarray((rng.normal(size=shape) * 3).astype(dtype))
    data = bytearray(_array_bytes(arr, suffix))
    if damage == "truncate":
        data = data[: rng.integers(0, len(data))]
    elif damage == "flip" and data:
        for i in rng.integers(0, len(data), 4):
            data[i] ^= int(rng.integers(1, 256))
    elif damage == "junk":
        data = bytearray(rng.bytes(int(rng.integers(0, 64))))
    path = _tmpdir() / f"z{suffix}"
    path.write_bytes(bytes(data))
    try:
        z = load_latents(path)
        z = check_latents(z, 4)
    except EXPECTED as err:
        assert str(err)
        return
    assert z.dtype == torch.float32 and z.ndim == 3 and z.shape[-1] == 4


# ---------------------------------------------------------------------------- images and checkpoints
def _png_bytes() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.arange(48, dtype=np.uint8).reshape(4, 4, 3)).save(buf, format="PNG")
    return buf.getvalue()


_PNG = _png_bytes()


@fuzz(200)
@given(st.one_of(st.binary(max_size=80), st.lists(st.tuples(st.integers(0, len(_PNG) - 1), st.integers(1, 255)),
                                                   min_size=1, max_size=4)))
def test_image_bytes_decode_to_rgb8_or_image_decode_error(mutation):
    from btnk_env.models.image_file import ImageDecodeError, read_image

    if isinstance(mutation, bytes):
        data = mutation
    else:
        buf = bytearray(_PNG)
        for i, x in mutation:
            buf[i] ^= x
        data = bytes(buf)
    try:
        pixels = read_image(data)
    except ImageDecodeError as err:
        assert str(err)
        return
    assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3


@pytest.fixture(scope="module")
def checkpoint_bytes():
    from btnk_env.models import BtnkMAE

    torch.manual_seed(0)
    model = BtnkMAE("test", img_size=(32, 32))
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "model_config": model.config.to_dict(), "step": 1}, buf)
    return buf.getvalue()


@fuzz(60)
@given(st.sampled_from(["truncate", "flip", "junk"]), st.integers(0, 10**6))
def test_damaged_checkpoints_raise_checkpoint_error(checkpoint_bytes, damage, seed):
    from btnk_env.models import BtnkMAE, CheckpointError

    rng = np.random.default_rng(seed)
    data = bytearray(checkpoint_bytes)
    if damage == "truncate":
        data = data[: rng.integers(0, len(data))]
    elif damage == "flip":
        for i in rng.integers(0, len(data), 3):
            data[i] ^= int(rng.integers(1, 256))
    else:
        data = bytearray(rng.bytes(int(rng.integers(0, 200))))
    path = _tmpdir() / "ckpt.pth"
    path.write_bytes(bytes(data))
    try:
        BtnkMAE.from_pretrained(path)
    except CheckpointError as err:
        assert str(err)
    # a flipped byte in a tensor's data can still load (the file has no checksum): that is fine


# ---------------------------------------------------------------------------- agent files
@fuzz(30)
@given(st.dictionaries(st.sampled_from(["policy_class", "observation_space", "action_space", "policy_kwargs", "use_sde"]),
                       st.recursive(st.one_of(st.none(), st.integers(), st.text(max_size=5), st.booleans()),
                                    lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(
                                        st.sampled_from([":type:", ":serialized:", "_shape", "dtype", "n", "net_arch",
                                                         "__module__", "__init__"]), c, max_size=4)), max_leaves=8),
                       max_size=5))
def test_agent_data_loads_or_raises_agent_file_error(fields):
    from btnk_env.agent_io import AgentFileError, load_agent
    from btnk_env.policies import SHIPPED_AGENT

    with zipfile.ZipFile(SHIPPED_AGENT) as src:
        data = json.loads(src.read("data"))
        weights = src.read("policy.pth")
    data.update(fields)
    path = _tmpdir() / "agent.zip"
    with zipfile.ZipFile(path, "w") as dst:
        dst.writestr("data", json.dumps(data))
        dst.writestr("policy.pth", weights)
    try:
        agent = load_agent(path)
    except AgentFileError as err:
        assert str(err)
        return
    assert agent.predict(np.zeros(agent.observation_space.shape, np.float32))[0] in range(3)


# ---------------------------------------------------------------------------- the model's input checks
@pytest.fixture(scope="module")
def fuzz_model():
    from btnk_env.models import BtnkMAE

    torch.manual_seed(0)
    return BtnkMAE("test", img_size=(32, 32)).eval()


_DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.uint8, torch.int64, torch.bool]


@fuzz(120)
@given(st.lists(st.integers(0, 48), min_size=0, max_size=5), st.sampled_from(_DTYPES), st.sampled_from(["encode", "decode"]),
       st.sampled_from(["normal", "nan", "inf"]))
def test_encode_and_decode_work_or_raise_value_or_type_error(fuzz_model, shape, dtype, op, fill):
    assume(int(np.prod(shape)) <= 40_000)
    x = torch.randn(shape) if shape else torch.randn(())
    if fill != "normal" and x.numel():
        x.view(-1)[0] = float(fill)
    x = x.to(dtype)
    try:
        with torch.inference_mode():
            out = fuzz_model.encode(x) if op == "encode" else fuzz_model.decode(x)
    except (ValueError, TypeError) as err:
        assert str(err)
        return
    assert out.ndim == (2 if op == "encode" else 4) and torch.isfinite(out).all()

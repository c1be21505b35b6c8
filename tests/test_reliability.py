"""Issue 17: nothing runs from a file, nothing a user owns is lost, every bad input gets one line.

One test (or a few) per numbered case of the issue; each failed on the code before the fix.
"""

from __future__ import annotations

import base64
import errno
import fcntl
import io
import json
import os
import pickle
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from btnk_env.cli import main
from btnk_env.policies import SHIPPED_AGENT
from btnk_env.models import BtnkMAE, CheckpointError
from tests.test_training_helpers import GOLDEN_NOACT, golden_config, make_images
from btnk_env.training.checkpointing import LATEST, load_checkpoint

golden = pytest.mark.skipif(not GOLDEN_NOACT.is_file(), reason="shared/golden not found")


class _System:
    """A pickle payload: unpickling it runs ``os.system(command)``."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _touch(marker: Path) -> _System:
    return _System(f"touch {marker}")


# ---------------------------------------------------------------------------- 1. agent files
def _agent_zip(tmp_path: Path, marker: Path, where: str) -> Path:
    """The shipped agent with a code-running payload in ``data`` (an extra entry, or the policy
    class itself) or in ``policy.pth``."""
    out = tmp_path / f"evil_{where}.zip"
    with zipfile.ZipFile(SHIPPED_AGENT) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            payload = src.read(item.filename)
            if item.filename == "data" and where in ("extra", "policy_class"):
                data = json.loads(payload)
                evil = {":type:": "<class 'os.system'>", ":serialized:": base64.b64encode(pickle.dumps(_touch(marker))).decode()}
                if where == "extra":
                    data["evil"] = evil
                else:
                    data["policy_class"][":serialized:"] = evil[":serialized:"]
                payload = json.dumps(data).encode()
            if item.filename == "policy.pth" and where == "policy.pth":
                buf = io.BytesIO()
                torch.save({"action_net.weight": _touch(marker)}, buf)
                payload = buf.getvalue()
            dst.writestr(item, payload)
    return out


@pytest.mark.parametrize("where", ["extra", "policy_class", "policy.pth"])
def test_agent_file_payload_never_runs(tmp_path, where):
    from btnk_env.policies import ppo_policy

    marker = tmp_path / "pwned"
    path = _agent_zip(tmp_path, marker, where)
    try:
        act = ppo_policy(path, 192)  # a payload in data is never decoded: the policy loads
        assert where != "policy.pth", "a pickle in policy.pth must be refused"
        assert act({}, np.zeros(192, np.float32)) in (0, 1, 2)
    except ValueError as err:
        assert where == "policy.pth" and "could run code" in str(err)
    assert not marker.exists(), "the agent file ran code"


def test_safe_agent_loader_acts_like_ppo_load_on_the_shipped_agent():
    from stable_baselines3 import PPO

    from btnk_env.agent_io import load_agent

    trusted = PPO.load(SHIPPED_AGENT, device="cpu")  # the shipped file is ours: PPO.load is the reference
    ours = load_agent(SHIPPED_AGENT)
    obs = np.random.default_rng(0).normal(0, 1.5, (256, 192)).astype(np.float32)
    a, _ = trusted.predict(obs, deterministic=True)
    b, _ = ours.predict(obs, deterministic=True)
    np.testing.assert_array_equal(a, b)
    with torch.no_grad():
        x = torch.from_numpy(obs)
        la = trusted.policy.get_distribution(x).distribution.logits
        lb = ours.policy.get_distribution(x).distribution.logits
    torch.testing.assert_close(la, lb, rtol=0, atol=0)
    assert len(set(a.tolist())) > 1  # the comparison is not trivial


def test_agent_files_that_cannot_be_rebuilt_are_refused(tmp_path):
    from btnk_env.agent_io import AgentFileError, load_agent

    (tmp_path / "junk.zip").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(AgentFileError, match="not a readable agent zip"):
        load_agent(tmp_path / "junk.zip")
    with zipfile.ZipFile(SHIPPED_AGENT) as src:
        data = json.loads(src.read("data"))
        weights = src.read("policy.pth")
    data["policy_kwargs"] = {"activation_fn": {":type:": "<class 'abc.ABCMeta'>", ":serialized:": "gAR9lC4="}}
    with zipfile.ZipFile(tmp_path / "act.zip", "w") as dst:
        dst.writestr("data", json.dumps(data))
        dst.writestr("policy.pth", weights)
    with pytest.raises(AgentFileError, match="pickled object"):
        load_agent(tmp_path / "act.zip")


# ---------------------------------------------------------------------------- 2. files users own
@pytest.fixture
def video_inputs(tmp_path, tiny_model):
    tiny_model.save_pretrained(tmp_path / "model")
    np.save(tmp_path / "z.npy", np.random.default_rng(0).normal(size=(3, 64)).astype(np.float32))
    return ["video", "--checkpoint", str(tmp_path / "model"), "--latents", str(tmp_path / "z.npy"), "--layout", "raw"]


def test_video_never_deletes_a_folder_of_the_users_pngs(tmp_path, video_inputs, capsys):
    users = tmp_path / "images"
    users.mkdir()
    for i in range(5):
        Image.fromarray(np.full((4, 4, 3), i, np.uint8)).save(users / f"{i:03d}.png")
    before = {p.name: p.read_bytes() for p in users.iterdir()}
    assert main(video_inputs + ["--out", str(users)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did not write" in err and "new folder name" in err
    assert {p.name: p.read_bytes() for p in users.iterdir()} == before
    # a PNG folder it wrote itself is replaced; an empty folder is filled
    out = tmp_path / "frames"
    assert main(video_inputs + ["--out", str(out)]) == 0
    assert main(video_inputs + ["--out", str(out)]) == 0
    assert len(list(out.glob("*.png"))) == 3
    (tmp_path / "empty").mkdir()
    assert main(video_inputs + ["--out", str(tmp_path / "empty")]) == 0
    assert not [p for p in tmp_path.rglob("*") if "btnk-tmp" in p.name]


def test_other_writers_refuse_folders_they_did_not_create(tmp_path, tiny_model):
    from btnk_env.models.errors import NotOursError

    users = tmp_path / "mine"
    users.mkdir()
    (users / "config.json").write_text('{"my": "settings"}')
    with pytest.raises(NotOursError, match="did not write"):
        tiny_model.save_pretrained(users)
    assert (users / "config.json").read_text() == '{"my": "settings"}'
    tiny_model.save_pretrained(tmp_path / "model")
    tiny_model.save_pretrained(tmp_path / "model")  # its own folder: replaced in place


def test_written_files_follow_the_umask(tmp_path, tiny_model):
    from btnk_env.training.checkpointing import save_checkpoint

    old = os.umask(0o022)
    try:
        save_checkpoint(tmp_path / "c.pth", {"model": tiny_model.state_dict(), "model_config": tiny_model.config.to_dict(), "step": 0})
        tiny_model.save_pretrained(tmp_path / "m")
    finally:
        os.umask(old)
    for path in (tmp_path / "c.pth", tmp_path / "m" / "model.safetensors", tmp_path / "m" / "config.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


@golden
def test_resume_cleans_stale_temporaries_and_never_duplicates_metrics(tmp_path):
    data = tmp_path / "imgs"
    make_images(data, n=4)
    run = tmp_path / "run"
    cfg = golden_config(data, run, "train.epochs=1", "train.batch_size=2", "io.save_every_steps=1")
    train_fn = __import__("btnk_env.training", fromlist=["train"]).train
    assert train_fn(cfg).step == 2
    # what a kill after step 3's metrics row but before its checkpoint leaves behind:
    with open(run / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 3, "loss": 1.0}) + "\n" + '{"step": 4, "lo')
    (run / ".checkpoint-latest.pth.0123abcd.btnk-tmp").write_bytes(b"x" * 1000)
    (run / "checkpoint-latest.pth.k2j3h4.tmp").write_bytes(b"x" * 1000)  # the old writer's naming
    cfg = golden_config(data, run, "train.epochs=2", "train.batch_size=2", "io.save_every_steps=1", "train.resume=auto")
    assert train_fn(cfg).step == 4
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    assert not [p for p in run.iterdir() if "tmp" in p.name]


# ---------------------------------------------------------------------------- 3. training runs
@golden
def test_a_finished_run_is_not_overwritten_and_a_running_one_is_locked(tmp_path, capsys):
    data = tmp_path / "imgs"
    make_images(data, n=4)
    run = tmp_path / "run"
    args = ["train", "--no-progress", f"data.path={data}", f"io.out_dir={run}", f"model.init=pretrained:{GOLDEN_NOACT}",
            "model.num_heads=4", "model.decoder_num_heads=4", "model.img_size=[64,64]", "data.transform=resize",
            "train.batch_size=2", "optim.lr=1e-3", "io.snapshot_every=null"]
    assert main(args + ["train.epochs=2"]) == 0
    assert load_checkpoint(run / LATEST)["step"] == 4
    capsys.readouterr()
    assert main(args + ["train.epochs=1"]) == 2  # the same command again: refused, nothing overwritten
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "train.resume=auto" in err and "train.overwrite=true" in err
    assert load_checkpoint(run / LATEST)["step"] == 4
    # a running trainer holds the folder's lock: a second one stops at once
    with open(run / ".lock", "a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert main(args + ["train.epochs=3", "train.resume=auto"]) == 2
        assert "in use by a running training" in capsys.readouterr().err
    assert load_checkpoint(run / LATEST)["step"] == 4
    assert main(args + ["train.epochs=1", "train.overwrite=true"]) == 0  # explicit: start over
    assert load_checkpoint(run / LATEST)["step"] == 2
    users = tmp_path / "users"
    users.mkdir()
    (users / "notes.txt").write_text("mine")
    assert main(args + ["train.epochs=1", f"io.out_dir={users}"]) == 2
    assert "did not write" in capsys.readouterr().err and (users / "notes.txt").read_text() == "mine"


@golden
def test_training_killed_at_a_random_step_resumes_with_nothing_lost_or_repeated(tmp_path):
    """A real SIGKILL of a training process (at a step drawn at random), then train.resume=auto."""
    import random
    import signal
    import subprocess
    import sys
    import time

    data = tmp_path / "imgs"
    make_images(data, n=4)
    common = [f"data.path={data}", f"model.init=pretrained:{GOLDEN_NOACT}", "model.num_heads=4",
              "model.decoder_num_heads=4", "model.img_size=[64,64]", "data.transform=resize", "train.batch_size=2",
              "train.epochs=3", "optim.lr=1e-3", "io.log_every=1", "io.snapshot_every=null", "io.save_every_steps=1"]
    run = tmp_path / "killed"
    kill_after = random.Random(17).randint(2, 4)  # rows of metrics seen before the kill (of 6 steps)
    # the killed run computes with this process's thread count, so the resumed steps here continue it exactly
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.Popen([sys.executable, "-m", "btnk_env.training", "--no-progress", *common, f"io.out_dir={run}"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            metrics = run / "metrics.jsonl"
            if metrics.is_file() and metrics.read_text().count("\n") >= kill_after:
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the training ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    killed_at = load_checkpoint(run / LATEST)["step"]
    assert killed_at < 6
    from btnk_env.training import train

    resumed = train(golden_config(data, run, *common[6:], "train.resume=auto"))
    full = train(golden_config(data, tmp_path / "full", *common[6:]))
    assert resumed.step == full.step == 6
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 7)), (killed_at, steps)
    assert not [p for p in run.rglob("*") if "tmp" in p.name]
    a = BtnkMAE.from_pretrained(resumed.final_dir).state_dict()
    b = BtnkMAE.from_pretrained(full.final_dir).state_dict()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6


@pytest.mark.parametrize("kind", ["checkpoint", "training-resume", "latents.npy", "latents.npz", "latents.pt", "config.yaml"])
def test_crafted_files_with_code_running_payloads_never_run(tmp_path, kind):
    from btnk_env.video import load_latents
    from btnk_env.models.errors import BtnkEnvError

    marker = tmp_path / "pwned"
    payload = _touch(marker)
    if kind in ("checkpoint", "training-resume"):
        path = tmp_path / "evil.pth"
        torch.save({"model": {"w": torch.zeros(1)}, "model_config": {}, "step": 1, "extra": payload}, path)
        load = (lambda: BtnkMAE.from_pretrained(path)) if kind == "checkpoint" else (lambda: load_checkpoint(path))
    elif kind == "latents.npy":
        path = tmp_path / "z.npy"
        np.save(path, np.array([payload], dtype=object), allow_pickle=True)
        load = lambda: load_latents(path)  # noqa: E731
    elif kind == "latents.npz":
        path = tmp_path / "z.npz"
        np.savez(path, latents=np.array([payload], dtype=object))
        load = lambda: load_latents(path)  # noqa: E731
    elif kind == "latents.pt":
        path = tmp_path / "z.pt"
        torch.save({"latents": payload}, path)
        load = lambda: load_latents(path)  # noqa: E731
    else:
        from btnk_env.training.config import load_config

        path = tmp_path / "evil.yaml"
        path.write_text(f'train:\n  epochs: !!python/object/apply:os.system ["touch {marker}"]\n')
        load = lambda: load_config(path, ["data.path=x"])  # noqa: E731
    with pytest.raises(BtnkEnvError):
        load()
    assert not marker.exists(), f"loading a crafted {kind} ran code"


# ---------------------------------------------------------------------------- 4. silent wrong data
def _png_16bit(path: Path) -> np.ndarray:
    values = (np.linspace(0, 65535, 32 * 32).reshape(32, 32)).astype(np.uint16)
    Image.fromarray(values).save(path)
    return values


def test_16bit_grayscale_trains_as_its_picture_not_white(tmp_path):
    from btnk_env.training.datasets import build_dataset

    values = _png_16bit(tmp_path / "gray16.png")
    ds = build_dataset(str(tmp_path), (32, 32), transform="resize")
    image, _ = ds[(0, 0)]
    from btnk_env.models import denormalize

    pixels = denormalize(image[None])[0].mean(0)  # (32, 32) in [0, 1]
    np.testing.assert_allclose(pixels.numpy(), values / 65535.0, atol=1 / 255 + 1e-6)


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "P+transparency", "RGBA", "CMYK", "I;16", "I", "F"])
def test_every_image_mode_decodes_faithfully_or_is_refused(tmp_path, mode):
    from btnk_env.models.image_file import ImageDecodeError, read_image

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    gray = rgb[..., 0]
    if mode in ("I;16", "I"):
        image, expected = Image.fromarray(gray.astype(np.uint16) * 257), np.repeat(gray[..., None], 3, -1)
        if mode == "I":
            image = image.convert("I")
    elif mode == "F":
        image, expected = Image.fromarray(gray.astype(np.float32) / 255), None
    elif mode.startswith("P"):
        image = Image.fromarray(rgb).quantize(16)
        if mode == "P+transparency":
            image.info["transparency"] = 0
        expected = np.asarray(image.convert("RGB"))
    else:
        image = Image.fromarray(rgb).convert(mode)
        expected = np.asarray(image.convert("RGB"))
    path = tmp_path / ("x.tiff" if mode in ("I", "F", "CMYK") else "x.png")
    image.save(path)
    if expected is None:
        with pytest.raises(ImageDecodeError, match="float"):
            read_image(path)
        return
    np.testing.assert_array_equal(read_image(path), expected)


@pytest.mark.parametrize("override, key", [("optim.lr=-1e-3", "optim.lr"), ("optim.blr=0", "optim.blr"),
                                           ("optim.blr=nan", "optim.blr"), ("optim.weight_decay=-1", "optim.weight_decay"),
                                           ("optim.clip_grad=-1", "optim.clip_grad")])
def test_bad_learning_rates_are_config_errors_naming_the_key(override, key):
    from btnk_env.training.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(overrides=["data.path=x", override])


def test_config_json_without_act_fn_is_an_error(tmp_path, tiny_model):
    tiny_model.save_pretrained(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    del meta["config"]["act_fn"]
    (tmp_path / "m" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="act_fn"):
        BtnkMAE.from_pretrained(tmp_path / "m")
    assert BtnkMAE.from_pretrained(tmp_path / "m", act_fn=None).config == tiny_model.config  # said explicitly: fine


@pytest.mark.parametrize("dtype", [torch.int32, torch.bool, torch.uint8])
def test_non_float_weights_are_refused_naming_the_dtype(tmp_path, tiny_model, dtype):
    from safetensors.torch import load_file, save_file

    tiny_model.save_pretrained(tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    state = load_file(str(weights))
    state["encoder.norm.weight"] = state["encoder.norm.weight"].to(dtype)
    save_file(state, str(weights))
    with pytest.raises(CheckpointError, match=str(dtype)):
        BtnkMAE.from_pretrained(tmp_path / "m")


def test_seed_lists_are_strict_and_compact():
    import tracemalloc

    from btnk_env.collection import parse_seeds

    for bad, part in [("5-1,7", "'5-1'"), ("1,,2", "empty part"), ("a-3", "'a-3'"), ("-3", "'-3'"), ("1-2-3", "'1-2-3'")]:
        with pytest.raises(ValueError, match=part):
            parse_seeds(bad)
    tracemalloc.start()
    seeds = parse_seeds("0-1000000")
    first = [seeds[i] for i in range(2)]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert first == [0, 1] and len(seeds) == 1_000_001 and seeds[-1] == 1_000_000
    assert peak < 1 << 20, peak  # the list took 0.9 GB in the collector; the ranges take bytes
    assert list(parse_seeds("0-2, 5,9")) == [0, 1, 2, 5, 9]


# ---------------------------------------------------------------------------- 5. one line, exit 2
def _one_line_status_2(argv, capsys, *needles):
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"btnk-env {argv[0]}: ")
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def test_collect_errors_are_one_line(tmp_path, capsys, monkeypatch):
    base = ["collect", "--num-frames", "1", "--height", "32", "--no-progress"]
    _one_line_status_2(base + ["--out", str(tmp_path / "d"), "--seeds", "5-1,7"], capsys, "'5-1'", "1-5")
    (tmp_path / "file").write_text("x")
    _one_line_status_2(base + ["--out", str(tmp_path / "file")], capsys, "file")

    import btnk_env.formats as formats  # the one writer collection uses (workers=1 runs in-process)

    def full(path, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(formats, "atomic_write_bytes", full)
    _one_line_status_2(base + ["--out", str(tmp_path / "d2")], capsys, "no space left", "Free some space")

    def denied(path, data):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    monkeypatch.setattr(formats, "atomic_write_bytes", denied)
    _one_line_status_2(base + ["--out", str(tmp_path / "d3")], capsys, "permission denied")


def test_video_with_a_corrupt_latents_file_is_one_line(tmp_path, video_inputs, capsys):
    (tmp_path / "z.npy").write_bytes(b"\x93NUMPY garbage")
    _one_line_status_2(video_inputs + ["--out", str(tmp_path / "v.gif")], capsys, "z.npy")
    np.save(tmp_path / "z.npy", np.array([object()], dtype=object), allow_pickle=True)
    _one_line_status_2(video_inputs + ["--out", str(tmp_path / "v.gif")], capsys, "object array")


class _DevFull(io.RawIOBase):
    """Writes go to /dev/full: the kernel answers ENOSPC, as on a full disk."""

    def __init__(self):
        self.f = open("/dev/full", "wb", buffering=0)

    def writable(self):
        return True

    def write(self, data):
        return self.f.write(data)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_while_saving_a_checkpoint_is_enospc_not_inline_container(tmp_path, monkeypatch, tiny_model):
    import contextlib

    import btnk_env.training.checkpointing as ckpt
    @contextlib.contextmanager
    def dev_full(path):
        with open("/dev/full", "wb") as f:  # a real file on a full device (torch writes it through its fd)
            yield f

    monkeypatch.setattr(ckpt, "atomic_writer", dev_full)
    with pytest.raises(OSError) as info:
        ckpt.save_checkpoint(tmp_path / "c.pth", {"model": tiny_model.state_dict(), "step": 0})
    assert info.value.errno == errno.ENOSPC and "inline_container" not in str(info.value)


@golden
@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_train_on_a_full_disk_says_so_in_one_line(tmp_path, capsys, monkeypatch):
    import btnk_env.training.checkpointing as ckpt
    real_save = torch.save
    monkeypatch.setattr(ckpt.torch, "save", lambda obj, f, *a, **k: real_save(obj, _DevFull()))
    data = tmp_path / "imgs"
    make_images(data, n=2)
    line = _one_line_status_2(["train", "--no-progress", f"data.path={data}", f"io.out_dir={tmp_path / 'run'}",
                               f"model.init=pretrained:{GOLDEN_NOACT}", "model.num_heads=4", "model.decoder_num_heads=4",
                               "model.img_size=[64,64]", "train.batch_size=2", "train.epochs=1", "io.snapshot_every=null"],
                              capsys, "no space left")
    assert "inline_container" not in line
    assert not [p for p in (tmp_path / "run").iterdir() if "tmp" in p.name]


def test_a_bug_still_shows_its_traceback(monkeypatch):
    import btnk_env.info as info

    monkeypatch.setattr(info, "run", lambda args: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        main(["info"])

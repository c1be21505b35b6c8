"""Episodes recorded into shard sets: parts and their merge, SIGKILL mid-episode then resume, ownership,
damage, and every reader (encode, eval, finetuning, train-dynamics) reading both episode formats alike."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from btnk_env import formats as F
from btnk_env.cli import main as cli_main
from btnk_env.collection.episodes import record_episodes
from btnk_env.envs.panorama_rooms import PanoramaRoomsEnv
from btnk_env.formats.episode_shards import EpisodeShards, frame_index, open_episodes
from btnk_env.formats.episodes import EpisodeFolder
from btnk_env.formats.latents import LatentDataset
from btnk_env.formats.shards import write_shard
from btnk_env.models import BtnkMAE
from tests.conftest import ROOT
from tests.test_encode import model_dir  # noqa: F401  (the fixture: a saved test-preset model at 32x64)

N, PER_SHARD, STEPS, HEIGHT = 5, 2, 8, 16
RECORD = dict(policy="random", seeds="3", max_steps=STEPS, progress=False)
CLI = ["collect", "--mode", "episodes", "--num-episodes", str(N), "--seeds", "3", "--max-steps", str(STEPS),
       "--height", str(HEIGHT), "--world", "single_room", "--no-progress"]
SHARDS = ["--format", "shards", "--episodes-per-shard", str(PER_SHARD)]


@pytest.fixture(scope="module")
def env():
    e = PanoramaRoomsEnv(height=HEIGHT, world="single_room")
    yield e
    e.close()


@pytest.fixture(scope="module")
def recorded(env, tmp_path_factory):
    """The same 5 episodes as an episode folder and as a shard set (2 episodes a shard), recorded in one go."""
    root = tmp_path_factory.mktemp("recorded")
    record_episodes(env, root / "folder", N, **RECORD)
    record_episodes(env, root / "shards", N, **RECORD, format="shards", episodes_per_shard=PER_SHARD)
    return root / "folder", root / "shards"


def _shard_bytes(root):
    return {p.name: p.read_bytes() for p in sorted(root.glob("shard-*.tar"))}


def _same_episodes(a, b):
    assert len(a) == len(b) and a.num_frames == b.num_frames
    for i in range(len(a)):
        ea, eb = a.load(i), b.load(i)
        assert np.array_equal(ea.frames, eb.frames) and ea.seed == eb.seed and ea.extra == eb.extra
        for name, value in ea.step_arrays().items():
            assert np.array_equal(value, getattr(eb, name)), name


def test_shards_hold_the_folders_episodes_as_plain_webdataset_frames(recorded):
    folder, shards = recorded
    a, b = EpisodeFolder(folder), EpisodeShards(shards)
    _same_episodes(a, b)
    assert [{k: v for k, v in r.items() if k != "dir"} for r in a.episodes] == \
           [{k: v for k, v in r.items() if k != "shard"} for r in b.episodes]
    index = F.read_index(shards / F.INDEX)
    assert index["complete"] and [s["episodes"] for s in index["shards"]] == [[0, 2], [2, 2], [4, 1]]
    assert index["num_samples"] == a.num_frames
    # every sample is a frame: a PNG plus its record, keyed by its global index
    samples = [(k, s) for e in F.open_shard_set(shards).shards for k, s in F.iter_shard(shards / e.file)]
    assert len(samples) == a.num_frames and all(set(s) == {"png", "json"} for _, s in samples)
    rec = json.loads(samples[0][1]["json"])
    assert set(F.SAMPLE_KEYS) | {"action", "reward", "terminated", "truncated"} <= set(rec)
    assert samples[0][0] == F.sample_key(frame_index(0, 0, STEPS))
    last = json.loads(samples[a.episodes[0]["num_steps"]][1]["json"])
    assert last["episode_record"]["num_steps"] == a.episodes[0]["num_steps"] and "action" not in last


def test_two_parts_then_merge_equal_one_recording(recorded, tmp_path, monkeypatch, capsys):
    _, whole = recorded
    out = tmp_path / "parts"
    assert cli_main([*CLI, *SHARDS, "--out", str(out), "--num-shards", "2", "--shard-index", "1"]) == 0
    monkeypatch.setenv("WORLD_SIZE", "2")  # a scheduler's variables pick the part
    monkeypatch.setenv("RANK", "0")
    assert cli_main([*CLI, *SHARDS, "--out", str(out)]) == 0
    assert "merge with 'btnk-env collect --merge-index" in capsys.readouterr().out
    parts = {n: F.read_index(out / F.part_index_name(n, 2)) for n in (0, 1)}
    assert [[s["file"] for s in parts[n]["shards"]] for n in (0, 1)] == [["shard-000000.tar", "shard-000002.tar"],
                                                                          ["shard-000001.tar"]]
    assert cli_main(["collect", "--merge-index", str(out)]) == 0
    assert _shard_bytes(out) == _shard_bytes(whole)  # byte for byte, however the recording is split
    assert F.read_index(out / F.INDEX)["shards"] == F.read_index(whole / F.INDEX)["shards"]
    _same_episodes(EpisodeShards(out), EpisodeShards(whole))


_KILLER = textwrap.dedent("""
    import os, signal, sys
    from btnk_env.collection.episodes import record_episodes
    from btnk_env.envs.panorama_rooms import PanoramaRoomsEnv

    step, calls = PanoramaRoomsEnv.step, []

    def dies_mid_episode(self, action):  # SIGKILL at the given step of the recording
        calls.append(action)
        if len(calls) == int(sys.argv[2]):
            os.kill(os.getpid(), signal.SIGKILL)
        return step(self, action)

    PanoramaRoomsEnv.step = dies_mid_episode
    record_episodes(PanoramaRoomsEnv(height={height}, world="single_room"), sys.argv[1], {n}, policy="random",
                    seeds="3", max_steps={steps}, progress=False, format="shards", episodes_per_shard={per})
""")


def test_sigkill_mid_episode_then_resume_completes_with_nothing_lost_or_twice(recorded, env, tmp_path):
    _, whole = recorded
    out = tmp_path / "killed"
    script = _KILLER.format(height=HEIGHT, n=N, steps=STEPS, per=PER_SHARD)
    before = sum(r["num_steps"] for r in EpisodeShards(whole).episodes[:PER_SHARD + 1])
    kill_at = before + 3  # in episode 3, the second of shard 1 (episode 2 is in its open shard)
    proc = subprocess.run([sys.executable, "-c", script, str(out), str(kill_at)], env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == -9, proc.stderr[-2000:]
    index = F.read_index(out / F.INDEX)
    assert [s["file"] for s in index["shards"]] == ["shard-000000.tar"] and not index["complete"]
    assert [p.name for p in out.glob(".shard-000001.tar.tmp*")]  # the open shard died as a hidden temporary
    (out / "notes.txt").write_text("my notes\n")  # a user's file in the dataset folder
    assert len(EpisodeShards(out)) == PER_SHARD  # what a reader sees meanwhile: the complete shard's episodes
    record_episodes(env, out, N, **RECORD, format="shards", episodes_per_shard=PER_SHARD)
    assert not list(out.glob(".shard-*.tmp*")) and (out / "notes.txt").read_text() == "my notes\n"
    assert _shard_bytes(out) == _shard_bytes(whole)
    data = EpisodeShards(out)
    assert [r["index"] for r in data.episodes] == list(range(N)) and not data.damaged
    _same_episodes(data, EpisodeShards(whole))


def test_ownership_settings_and_lock(tmp_path, capsys):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "thesis.tex").write_bytes(b"\\section{Results}\n")
    assert cli_main([*CLI, *SHARDS, "--out", str(user)]) == 2  # a folder the package did not create
    assert (user / "thesis.tex").read_bytes() == b"\\section{Results}\n" and sorted(os.listdir(user)) == ["thesis.tex"]
    out = tmp_path / "eps"
    assert cli_main([*CLI, *SHARDS, "--out", str(out), "--num-episodes", "1"]) == 0
    capsys.readouterr()
    assert cli_main([*CLI, *SHARDS, "--out", str(out), "--num-episodes", "1", "--policy", "explorer"]) == 2
    assert "different settings" in capsys.readouterr().err
    assert cli_main([*CLI, "--out", str(tmp_path / "folder"), "--num-shards", "2"]) == 2  # parts need shards
    with F.exclusive_lock(out, f".{F.INDEX}.lock"):  # another recorder of the same part
        assert cli_main([*CLI, *SHARDS, "--out", str(out), "--num-episodes", "1"]) == 2
    assert "another process is writing" in capsys.readouterr().err


def test_damaged_shards_and_episodes_cost_themselves_alone(recorded, env, tmp_path):
    _, whole = recorded
    out = tmp_path / "damaged"
    shutil.copytree(whole, out)
    good = EpisodeShards(whole)
    # shard 1 cut short; in shard 2, episode 4's record of step 1 garbled (its tar rewritten whole)
    data = (out / "shard-000001.tar").read_bytes()
    (out / "shard-000001.tar").write_bytes(data[: len(data) // 2])
    samples = list(F.iter_shard(out / "shard-000002.tar"))
    rec = json.loads(samples[1][1]["json"])
    rec["action"] = 7  # outside Discrete(3)
    write_shard(out / "shard-000002.tar", [(k, s["png"], rec if n == 1 else json.loads(s["json"]))
                                           for n, (k, s) in enumerate(samples)])
    index = F.read_index(out / F.INDEX)
    index["shards"][2]["bytes"] = (out / "shard-000002.tar").stat().st_size
    F.atomic_write_json(out / F.INDEX, index)
    damaged = EpisodeShards(out)
    assert [r["index"] for r in damaged.episodes] == [0, 1]
    assert len(damaged.damaged) == 2 and "shard-000001.tar" in damaged.damaged[0] and "action" in damaged.damaged[1]
    _same_episodes(damaged, _first(good, 2))
    # the writer records the truncated shard again; the rewritten one is whole, so it is kept as listed
    record_episodes(env, out, N, **RECORD, format="shards", episodes_per_shard=PER_SHARD)
    assert (out / "shard-000001.tar").read_bytes() == (whole / "shard-000001.tar").read_bytes()
    assert [r["index"] for r in EpisodeShards(out).episodes] == [0, 1, 2, 3]


def _first(data, n):
    """``data`` cut to its first ``n`` episodes."""
    cut = object.__new__(type(data))
    cut.__dict__.update(data.__dict__, episodes=data.episodes[:n], _steps=data._steps[:n], _frames=data._frames[:n])
    return cut


def test_encode_of_the_shards_equals_encode_of_the_folder_and_trains_dynamics(recorded, model_dir, tmp_path, capsys):
    folder, shards = recorded
    common = ["--model", str(model_dir), "--workers", "0", "--chunk-size", "16", "--device", "cpu", "--no-progress"]
    assert cli_main(["encode", str(folder), "--out", str(tmp_path / "from_folder"), *common]) == 0
    assert cli_main(["encode", str(shards), "--out", str(tmp_path / "from_shards"), *common]) == 0
    a, b = LatentDataset(tmp_path / "from_folder"), LatentDataset(tmp_path / "from_shards")
    np.testing.assert_array_equal(np.asarray(a.latents), np.asarray(b.latents))
    for name in ("episode_offsets", "actions", "rewards", "terminated", "truncated", "poses", "goals"):
        assert np.array_equal(np.load(tmp_path / "from_folder" / f"{name}.npy"),
                              np.load(tmp_path / "from_shards" / f"{name}.npy")), name
    meta = json.loads((tmp_path / "from_shards" / "latents.json").read_text())
    assert meta["kind"] == "episodes" and meta["num_episodes"] == N and meta["source"]["format"] == "shards"
    _same_episodes(open_episodes(meta["source"]["path"]), EpisodeFolder(folder))  # how dynamics eval finds the frames
    # the output knows its source: the same set resumes (nothing to do), other episodes are refused
    capsys.readouterr()
    assert cli_main(["encode", str(shards), "--out", str(tmp_path / "from_shards"), *common]) == 0
    more = tmp_path / "more"
    shutil.copytree(shards, more)
    index = F.read_index(more / F.INDEX)
    index["shards"] = index["shards"][:2]
    F.atomic_write_json(more / F.INDEX, index)
    assert cli_main(["encode", str(more), "--out", str(tmp_path / "from_shards"), *common]) == 2
    assert "other frames than those encoded there" in capsys.readouterr().err
    from btnk_env.training.dynamics import load_dynamics_config, train_dynamics

    over = {"data.path": tmp_path / "from_shards", "io.out_dir": tmp_path / "dyn", "train.steps": 3,
            "train.batch_size": 4, "model.width": 32, "model.heads": 2, "model.depth": 1, "model.context": 2,
            "data.horizon": 2, "optim.warmup_steps": 1, "io.log_every": 1, "io.checkpoint_every": 3,
            "io.progress": "false", "train.device": "cpu"}
    trainer = train_dynamics(load_dynamics_config(ROOT / "configs" / "dynamics_rooms.yaml",
                                                  [f"{k}={v}" for k, v in over.items()]))
    assert trainer.step == 3 and (tmp_path / "dyn" / "final").is_dir()


@pytest.mark.parametrize("fmt", ["folder", "shards"])
def test_eval_and_finetuning_read_episode_datasets(fmt, recorded, model_dir, tmp_path, capsys):
    from btnk_env.training import train
    from btnk_env.training.config import load_config

    src = recorded[0] if fmt == "folder" else recorded[1]
    data = tmp_path / "data"
    shutil.copytree(src, data)
    complete = open_episodes(src).num_frames
    if fmt == "folder":  # a damaged record: its frames are no training data
        lines = (data / "episodes.jsonl").read_text().splitlines()
        (data / "episodes.jsonl").write_text("\n".join(lines[:-1] + ["{\"index\": 4, \"torn"]) + "\n")
        complete -= EpisodeFolder(src).episodes[-1]["num_steps"] + 1
    capsys.readouterr()
    assert cli_main(["eval", "--checkpoint", str(model_dir), "--data", str(data), "--device", "cpu"]) == 0
    assert f"over {complete} images at 32x64" in capsys.readouterr().out
    from btnk_env.training.datasets import build_dataset

    dataset = build_dataset(str(data), (32, 64))  # the complete episodes' frames, whole (resized, not cropped)
    assert len(dataset) == complete and dataset.kind == ("episodes" if fmt == "folder" else "shards")
    seen = []
    result = train(load_config(overrides=[
        f"data.path={data}", f"io.out_dir={tmp_path / 'run'}", f"model.init=pretrained:{model_dir}",
        "model.img_size=[32,64]", "train.batch_size=4", "train.epochs=1", "optim.lr=1e-3",
        "io.log_every=1", "io.snapshot_every=null", "train.device=cpu"]), hooks=[lambda trainer, row: seen.append(row)])
    assert seen and all(np.isfinite(r["loss"]) for r in seen)
    assert 0 < sum(r["images"] for r in seen) <= complete
    assert BtnkMAE.from_pretrained(result.final_dir).latent_dim == 64

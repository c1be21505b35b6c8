"""Sharded and parallel collection: identical output for any worker count, SIGKILL + resume,
converter round trip, part indexes and their merge, and clear errors on damaged data."""

from __future__ import annotations

import functools
import json
import logging
import os
import random
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from btnk_env.cli import main as cli_main
from btnk_env.collection import collect_panoramas, load_manifest
from btnk_env import formats as F
from btnk_env.collection.convert import convert
from btnk_env.formats.shards import ShardWriter, merge_indexes
from btnk_env.envs.panorama_rooms import PanoramaRoomsEnv
from tests.conftest import ROOT

ENV_ID = "btnk_env/PanoramaRooms-v0"
SMALL = dict(seeds="0-5", frames_per_scene=3, height=16, progress=False)


def _samples(spec):
    """``[(record, pixels)]`` of a shard set, in index order."""
    s = F.open_shard_set(spec)
    out = []
    for e in s.shards:
        for key, sample in F.iter_shard(s.path(e)):
            rec = json.loads(sample["json"])
            assert key == F.sample_key(rec["index"])
            out.append((rec, np.asarray(Image.open(__import__("io").BytesIO(sample["png"])))))
    return out


def _folder(root):
    return [(r, np.asarray(Image.open(Path(root) / r["file"]))) for r in load_manifest(root)]


class CrashOnce(PanoramaRoomsEnv):
    """The built-in world, except that the first process to render its 7th frame dies (SIGKILL),
    as a worker does when a native library crashes."""

    def __init__(self, marker, **kwargs):
        super().__init__(**kwargs)
        self.marker, self.frames = marker, 0

    def set_pose(self, position, heading):
        self.frames += 1
        if self.frames == 7 and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        return super().set_pose(position, heading)


def test_same_frames_for_one_and_two_workers_even_after_a_worker_dies(tmp_path):
    one = collect_panoramas(ENV_ID, tmp_path / "one", 26, format="shards", shard_size=5, workers=1, **SMALL)
    crashing = functools.partial(CrashOnce, str(tmp_path / "crashed"), height=16)
    two = collect_panoramas(crashing, tmp_path / "two", 26, format="shards", shard_size=5, workers=2, **SMALL)
    assert (tmp_path / "crashed").exists()  # a worker died; its shard was written again by a new one
    names = sorted(p.name for p in one.glob("shard-*.tar"))
    assert names == [F.shard_name(k) for k in range(6)] == sorted(p.name for p in two.glob("shard-*.tar"))
    for name in names:  # byte-identical shards (fixed tar headers), whatever the number of workers
        assert (one / name).read_bytes() == (two / name).read_bytes()
    assert F.read_index(one / F.INDEX)["shards"] == F.read_index(two / F.INDEX)["shards"]
    samples = _samples(two)
    assert [r["index"] for r, _ in samples] == list(range(26))
    assert set(F.SAMPLE_KEYS) <= set(samples[0][0])


def test_sigkill_at_random_points_then_resume_has_every_sample_once(tmp_path):
    reference = collect_panoramas(ENV_ID, tmp_path / "ref", 120, format="shards", shard_size=7, **SMALL)
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "btnk_env", "collect", "--out", str(out), "--format", "shards", "--shard-size", "7",
           "--num-frames", "120", "--seeds", "0-5", "--frames-per-scene", "3", "--height", "16", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rng = random.Random(13)
    kills = 0
    for attempt in range(2):
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        target = rng.randrange(1, 110)  # kill once this many samples are indexed, mid-shard most of the time
        while proc.poll() is None:
            try:
                done = json.loads((out / F.INDEX).read_text())["num_samples"]
            except (OSError, ValueError, KeyError):
                done = 0
            if done >= target:
                time.sleep(rng.uniform(0, 0.05))
                proc.send_signal(signal.SIGKILL)
                kills += 1
                break
            time.sleep(0.005)
        proc.wait()
        index = F.read_index(out / F.INDEX) if (out / F.INDEX).exists() else None
        if index and index["complete"]:
            break
        # what a killed run leaves is consistent: the index lists only whole, readable shards
        for e in F.open_shard_set(out).shards if index and index["shards"] else []:
            assert sum(1 for _ in F.iter_shard(out / e.file)) == e.count
    assert kills >= 1
    assert cli_main(cmd[3:]) == 0  # the final resume completes it
    assert [p.name for p in out.iterdir() if p.name.startswith(".shard")] == []  # no temporaries left
    got, want = _samples(out), _samples(reference)
    assert [r["index"] for r, _ in got] == list(range(120))  # every sample exactly once, in order
    assert all(np.array_equal(a, b) and ra == rb for (ra, a), (rb, b) in zip(got, want))


def test_killed_folder_collection_config_never_claims_a_stale_count(tmp_path):
    def crash(index, record):
        if index == 30:  # what a SIGKILL here would leave on disk: a config that says "not complete"
            assert F.read_config(root)["complete"] is False
            raise KeyboardInterrupt

    root = tmp_path / "f"
    with pytest.raises(KeyboardInterrupt):
        collect_panoramas(ENV_ID, root, 40, callback=crash, **SMALL)
    config = F.read_config(root)
    assert config["complete"] is False and config["num_images"] == len(load_manifest(root)) == 31
    collect_panoramas(ENV_ID, root, 40, **SMALL)
    config = F.read_config(root)
    assert config["complete"] is True and config["num_images"] == len(load_manifest(root)) == 40


def test_folder_and_its_shard_conversion_hold_the_same_samples(tmp_path):
    folder = collect_panoramas(ENV_ID, tmp_path / "f", 17, **SMALL)
    shards = convert(folder, tmp_path / "s", shard_size=4)
    assert [e.count for e in F.open_shard_set(shards).shards] == [4, 4, 4, 4, 1]
    assert cli_main(["collect", "--convert", str(shards), "--out", str(tmp_path / "back"), "--no-progress"]) == 0
    back = tmp_path / "back"
    a, b, c = _folder(folder), _samples(shards), _folder(back)
    assert len(a) == len(b) == len(c) == 17
    for (ra, pa), (rb, pb), (rc, pc) in zip(a, b, c):
        assert np.array_equal(pa, pb) and np.array_equal(pa, pc)
        assert rc == ra and {k: v for k, v in rb.items() if k != "source_file"} == {k: v for k, v in ra.items() if k != "file"}
    assert F.read_config(back)["image_size"] == [16, 32]
    with pytest.raises(ValueError, match="different settings"):
        convert(folder, tmp_path / "s")  # never writes over a dataset


def test_collection_split_over_machines_then_merged_equals_one_machine(tmp_path, monkeypatch):
    whole = collect_panoramas(ENV_ID, tmp_path / "whole", 20, format="shards", shard_size=4, **SMALL)
    shared = tmp_path / "shared"
    collect_panoramas(ENV_ID, shared, 20, format="shards", shard_size=4, shard_index=0, num_shards=2, **SMALL)
    with pytest.raises(ValueError, match=r"parts \[1\] of 2 have no index"):
        merge_indexes(shared)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")  # what torchrun or a scheduler sets
    collect_panoramas(ENV_ID, shared, 20, format="shards", shard_size=4, **SMALL)
    assert sorted(F.part_indexes(shared)) == [0, 1]
    assert cli_main(["collect", "--merge-index", str(shared)]) == 0
    assert [r for r, _ in _samples(shared)] == [r for r, _ in _samples(whole)]


def test_bad_input_is_a_clear_error_and_loses_nothing(tmp_path, capsys):
    root = collect_panoramas(ENV_ID, tmp_path / "s", 12, format="shards", shard_size=4, **SMALL)
    before = {p.name: p.read_bytes() for p in root.iterdir()}
    # two collectors on one output
    with F.exclusive_lock(root, f".{F.INDEX}.lock"):
        with pytest.raises(F.CollectionLockedError, match="another process is writing"):
            collect_panoramas(ENV_ID, root, 16, format="shards", shard_size=4, **SMALL)
        assert cli_main(["collect", "--out", str(root), "--format", "shards", "--shard-size", "4", "--num-frames", "16",
                         "--seeds", "0-5", "--frames-per-scene", "3", "--height", "16", "--no-progress"]) == 2
        assert capsys.readouterr().err.startswith("btnk-env collect: another process is writing to")
    # other settings on the same output
    with pytest.raises(ValueError, match="different settings"):
        collect_panoramas(ENV_ID, root, 16, format="shards", shard_size=5, **SMALL)
    assert {p.name: p.read_bytes() for p in root.iterdir()} == before
    # a truncated shard
    data = (root / F.shard_name(1)).read_bytes()
    (root / F.shard_name(1)).write_bytes(data[: len(data) // 2])
    damaged = F.open_shard_set(root)  # it costs its own samples alone: skipped and named
    assert [e.file for e in damaged.shards] == [F.shard_name(0), F.shard_name(2)] and damaged.num_samples == 8
    assert damaged.damaged[0].startswith("shard-000001.tar: ") and "the index says" in damaged.damaged[0]
    with pytest.raises(F.DatasetFormatError, match="truncated or not a tar"):
        list(F.iter_shard(root / F.shard_name(1)))
    # an index listing a missing shard
    (root / F.shard_name(1)).unlink()
    assert F.open_shard_set(root).damaged == ["shard-000001.tar: missing"]
    # resuming rewrites exactly the damaged shard
    collect_panoramas(ENV_ID, root, 12, format="shards", shard_size=4, **SMALL)
    assert {p.name: p.read_bytes() for p in root.iterdir()} == before
    # a shard of another image size
    with pytest.raises(ValueError, match="16x32"):
        with ShardWriter(root, max_count=4) as w:
            w.write(F.sample_key(12), np.zeros((8, 16, 3), np.uint8), {"index": 12})
    assert {p.name: p.read_bytes() for p in root.iterdir()} == before


def test_manifest_damage_rule_is_the_same_for_collection_and_training(tmp_path, caplog):
    from btnk_env.training.datasets import build_dataset

    root = collect_panoramas(ENV_ID, tmp_path / "f", 6, **SMALL)
    lines = (root / F.MANIFEST).read_text().splitlines(keepends=True)
    (root / F.MANIFEST).write_text("".join(lines) + '{"index": 6, "fi')  # torn last line: dropped by both
    assert len(load_manifest(root)) == 6 and len(build_dataset(str(root), (16, 32))) == 6
    good = "".join(lines)
    lines[2] = '{"index": 2, "file": "images/0000\n'  # damage in the middle: that frame alone is skipped
    (root / F.MANIFEST).write_text("".join(lines))
    with caplog.at_level(logging.WARNING):
        assert [r["index"] for r in load_manifest(root)] == [0, 1, 3, 4, 5]
        assert len(build_dataset(str(root), (16, 32))) == 5
    assert caplog.text.count("manifest.jsonl: 1 damaged or missing record(s) skipped") == 2 and "line 3" in caplog.text
    collect_panoramas(ENV_ID, root, 6, **SMALL)  # resuming re-renders that frame and writes its line again
    assert (root / F.MANIFEST).read_text() == good


def test_tar_shards_are_plain_webdataset(tmp_path):
    import webdataset as wds

    root = collect_panoramas(ENV_ID, tmp_path / "s", 6, format="shards", shard_size=4, **SMALL)
    keys = [s["__key__"] for s in wds.WebDataset(str(root / "shard-{000000..000001}.tar"), shardshuffle=False)]
    assert keys == [F.sample_key(i) for i in range(6)]
    with tarfile.open(root / F.shard_name(0)) as tar:
        assert tar.getnames()[:2] == ["000000000.json", "000000000.png"]


def test_habitat_scenes_through_the_env_interface(monkeypatch, tmp_path):
    from tests.test_habitat_env import VERSIONS, _env, _fake_habitat_sim

    for name, module in _fake_habitat_sim(VERSIONS[-1]).items():  # the habitat-sim stand-in of test_habitat_env
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setenv("HSIM_DISABLE_CUDA_DEVICE", "1")
    env = _env()
    root = collect_panoramas(env, tmp_path / "hab", 16, format="shards", shard_size=5, seeds=[0, 1], frames_per_scene=2,
                             scenes=["a/apt_0.glb", "b/house_7.glb"], progress=False)
    env.close()
    records = [r for r, _ in _samples(root)]
    # every seed of a scene before the next scene: segments (2 frames) go apt_0 s0, apt_0 s1, house_7 s0, ...
    assert [(r["scene"], r["seed"]) for r in records[::2]] == [("apt_0", 0), ("apt_0", 1), ("house_7", 0), ("house_7", 1)] * 2
    assert F.read_index(root / F.INDEX)["collection"]["scenes"] == ["a/apt_0.glb", "b/house_7.glb"]

"""The data paths own what they write (issue 23): every writer writes only into an empty folder or
one it created with the same settings, nothing a user owns is replaced or deleted, a damaged
record costs itself alone, an encode is bound to its source and model, every writer is locked.

Each test is one row of the issue's table; the hypothesis properties at the end run every writer
against folders of random user files and random damage.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from btnk_env.cli import main as cli_main
from btnk_env.collection import collect_panoramas
from btnk_env import formats as F
from btnk_env.collection.convert import convert
from btnk_env.formats.episodes import EpisodeFolder, EpisodeFolderWriter
from btnk_env.collection.episodes import record_episodes
from btnk_env.formats.shards import merge_indexes
from btnk_env.envs.panorama_rooms import PanoramaRoomsEnv
from btnk_env.models import BtnkMAE
from btnk_env.models.errors import BtnkEnvError
from btnk_env.training.encode import encode_dataset
from btnk_env.formats.latents import LatentDataset

SMALL = dict(seeds="0-5", frames_per_scene=3, progress=False)


@pytest.fixture(scope="module")
def env():
    e = PanoramaRoomsEnv(height=16, world="single_room")
    yield e
    e.close()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny"
    BtnkMAE("test", img_size=(16, 32)).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def episodes(env, tmp_path_factory):
    root = tmp_path_factory.mktemp("eps") / "eps"
    record_episodes(env, root, 4, policy="random", seeds=[3], max_steps=3, progress=False)
    return root


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _user_folder(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def _encode(src, out, model_dir):
    return encode_dataset(src, out, model_dir, batch_size=8, chunk_size=8, workers=0, device="cpu", progress=False)


# ---------------------------------------------------------------------------- ownership (the table)
def test_collect_into_a_folder_of_the_users_pngs_is_refused(env, tmp_path):
    user = _user_folder(tmp_path / "d", {"images/000000.png": b"my photo", "notes.txt": b"mine"})
    before = _files(user)
    with pytest.raises(BtnkEnvError, match="never replaced"):
        collect_panoramas(env, user, 3, **SMALL)
    assert _files(user) == before


def test_recording_never_deletes_a_folder_of_the_users(env, tmp_path):
    user = _user_folder(tmp_path / "d", {"episodes/202401/clip.txt": b"mine"})
    with pytest.raises(BtnkEnvError, match="never replaced"):
        record_episodes(env, user, 2, seeds=[0], max_steps=2, progress=False)
    assert (user / "episodes/202401/clip.txt").read_bytes() == b"mine"


def test_shards_into_a_folder_holding_the_users_tar_are_refused(env, tmp_path):
    user = _user_folder(tmp_path / "d", {"shard-000000.tar": b"my archive"})
    with pytest.raises(BtnkEnvError, match="never replaced"):
        collect_panoramas(env, user, 3, format="shards", shard_size=2, **SMALL)
    assert (user / "shard-000000.tar").read_bytes() == b"my archive"


@pytest.mark.parametrize("how", ["flags", "environment"])
def test_a_part_collector_with_other_settings_never_touches_a_finished_set(env, tmp_path, monkeypatch, how):
    done = collect_panoramas(env, tmp_path / "set", 6, format="shards", shard_size=2, **SMALL)
    before = _files(done)
    kwargs = dict(shard_index=0, num_shards=2)
    if how == "environment":
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("RANK", "0")
        kwargs = {}
    with pytest.raises(BtnkEnvError, match="num_shards: 1 there, 2 now"):  # the setting that differs, named
        collect_panoramas(env, done, 6, format="shards", shard_size=2, **kwargs, **SMALL)
    assert _files(done) == before


def test_encode_into_a_folder_of_the_users_files_is_refused(episodes, model_dir, tmp_path):
    user = _user_folder(tmp_path / "lat", {"latents.npy": b"my array", "keys.json": b"[1]"})
    with pytest.raises(BtnkEnvError, match="never replaced"):
        _encode(episodes, user, model_dir)
    assert _files(user) == {"keys.json": b"[1]", "latents.npy": b"my array"}


def test_encode_of_another_source_into_an_output_is_refused_never_mixed(env, episodes, model_dir, tmp_path):
    out = _encode(episodes, tmp_path / "lat", model_dir)
    before = _files(out)
    other = tmp_path / "other"
    record_episodes(env, other, 4, policy="random", seeds=[50], max_steps=3, progress=False)  # the same frame count?
    with pytest.raises(BtnkEnvError, match="source: other frames"):
        _encode(other, out, model_dir)
    torch.manual_seed(1)
    BtnkMAE("test", img_size=(16, 32)).save_pretrained(tmp_path / "m2")
    with pytest.raises(BtnkEnvError, match="other weights"):
        _encode(episodes, out, tmp_path / "m2")
    assert _files(out) == before
    assert LatentDataset(out).meta["source_fingerprint"]


def test_a_damaged_episode_record_costs_itself_alone(env, episodes, model_dir, tmp_path, caplog):
    root = tmp_path / "eps"
    shutil.copytree(episodes, root)
    lines = (root / "episodes.jsonl").read_text().splitlines(keepends=True)
    lines[1] = lines[1][:20] + "\n"  # episode 1's line damaged
    (root / "episodes.jsonl").write_text("".join(lines))
    kept = {k: v for k, v in _files(root).items() if not k.startswith(("episodes/000001", "episodes.jsonl", "."))}
    with caplog.at_level(logging.WARNING):
        data = EpisodeFolder(root)
    assert [r["index"] for r in data.episodes] == [0, 2, 3] and len(data.damaged) == 1
    assert "1 damaged episode record" in caplog.text and "line 2" in caplog.text
    lat = LatentDataset(_encode(root, tmp_path / "lat", model_dir))  # the intact episodes, not a prefix
    assert lat.num_episodes == 3 and lat.meta["source"]["damaged_records"] == 1
    record_episodes(env, root, 4, policy="random", seeds=[3], max_steps=3, progress=False)  # re-does episode 1 only
    after = _files(root)
    assert all(after[k] == v for k, v in kept.items() if k != "dataset_config.json")
    assert _files(root)["episodes/000001/steps.npz"] == _files(episodes)["episodes/000001/steps.npz"]
    assert [r["index"] for r in EpisodeFolder(root).episodes] == [0, 1, 2, 3]


def test_a_missing_steps_file_costs_its_episode_alone(env, episodes, tmp_path):
    root = tmp_path / "eps"
    shutil.copytree(episodes, root)
    (root / "episodes/000000/steps.npz").unlink()
    assert [r["index"] for r in EpisodeFolder(root).episodes] == [1, 2, 3]
    record_episodes(env, root, 4, policy="random", seeds=[3], max_steps=3, progress=False)
    assert _files(root)["episodes/000003/steps.npz"] == _files(episodes)["episodes/000003/steps.npz"]
    assert len(EpisodeFolder(root)) == 4


def test_a_missing_png_costs_its_frame_alone(env, tmp_path):
    root = collect_panoramas(env, tmp_path / "d", 6, **SMALL)
    manifest = (root / F.MANIFEST).read_bytes()
    (root / F.frame_file(1)).unlink()
    later = (root / F.frame_file(4)).stat()
    collect_panoramas(env, root, 6, **SMALL)
    now = (root / F.frame_file(4)).stat()
    assert (root / F.MANIFEST).read_bytes() == manifest
    assert (now.st_ino, now.st_mtime_ns) == (later.st_ino, later.st_mtime_ns)  # kept, not written again
    assert (root / F.frame_file(1)).is_file()


@pytest.fixture(scope="module")
def folder(env, tmp_path_factory):
    return collect_panoramas(env, tmp_path_factory.mktemp("folder") / "f", 6, **SMALL)


def _stats(root: Path) -> dict[str, tuple[int, int]]:
    return {p.relative_to(root).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns) for p in root.rglob("*.png")}


_LINE_DAMAGE = {"garbage": lambda lines, i: lines[:i] + ['{"index": 2, "fi\x00le\n'] + lines[i + 1:],
                "not-a-record": lambda lines, i: lines[:i] + ["[2]\n"] + lines[i + 1:],
                "removed": lambda lines, i: lines[:i] + lines[i + 1:],
                "duplicated": lambda lines, i: lines[:i] + [lines[abs(i - 1)]] + lines[i + 1:]}


@pytest.mark.parametrize("damage", sorted(_LINE_DAMAGE))
def test_a_damaged_manifest_line_costs_its_frame_alone(env, folder, model_dir, tmp_path, caplog, damage):
    from btnk_env.collection import load_manifest
    from btnk_env.training.datasets import build_dataset

    root = tmp_path / "f"
    shutil.copytree(folder, root)
    good = (root / F.MANIFEST).read_text()
    lines = good.splitlines(keepends=True)
    (root / F.MANIFEST).write_text("".join(_LINE_DAMAGE[damage](lines, 2)))
    pngs, stats = _files(root / F.IMAGES_DIR), _stats(root)
    with caplog.at_level(logging.WARNING):
        assert [r["index"] for r in load_manifest(root)] == [0, 1, 3, 4, 5]
    assert caplog.text.count("1 damaged or missing record(s) skipped") == 1
    assert ("line 3" in caplog.text) == (damage != "removed")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        files = build_dataset(str(root), (16, 32)).files  # training and eval read the intact frames
    assert [f.name for f in files] == [f"{i:06d}.png" for i in (0, 1, 3, 4, 5)] and "1 damaged" in caplog.text
    if damage == "garbage":
        lat = LatentDataset(_encode(root, tmp_path / "lat", model_dir))
        assert lat.keys == [F.frame_file(i) for i in (0, 1, 3, 4, 5)]
        assert cli_main(["collect", "--convert", str(root), "--out", str(tmp_path / "s"), "--shard-size", "2"]) == 0
        assert F.open_shard_set(tmp_path / "s").num_samples == 5
    collect_panoramas(env, root, 6, **SMALL)  # resuming re-renders frame 2 alone
    assert (root / F.MANIFEST).read_text() == good
    assert _files(root / F.IMAGES_DIR) == pngs
    now = _stats(root)
    assert {k: v for k, v in now.items() if k != F.frame_file(2)} == {k: v for k, v in stats.items()
                                                                      if k != F.frame_file(2)}  # not even rewritten


def test_a_damaged_shard_costs_its_samples_alone(env, model_dir, tmp_path, caplog):
    from btnk_env.training.datasets import build_dataset
    from btnk_env.training.encode import ShardSource

    root = collect_panoramas(env, tmp_path / "s", 12, format="shards", shard_size=4, **SMALL)
    before = _files(root)
    index = json.loads((root / F.INDEX).read_text())
    index["shards"][2]["count"] = "four"  # a malformed entry
    F.atomic_write_json(root / F.INDEX, index)
    (root / F.shard_name(1)).write_bytes(before[F.shard_name(1)][:5000])  # a torn shard
    with caplog.at_level(logging.WARNING):
        assert len(build_dataset(str(root), (16, 32))) == 4  # training and eval: shard 0 alone
        assert ShardSource(root).keys == [f"{F.shard_name(0)}/{F.sample_key(i)}" for i in range(4)]  # encode
        assert convert(root, tmp_path / "f") and len(F.read_manifest(tmp_path / "f")) == 4  # --convert
    assert caplog.text.count("2 damaged shard(s) skipped") == 3
    assert "shard-000001.tar: 5000 bytes" in caplog.text and "entry 2: malformed" in caplog.text
    kept = (root / F.shard_name(0)).stat()
    collect_panoramas(env, root, 12, format="shards", shard_size=4, **SMALL)  # rewrites shards 1 and 2 alone
    assert _files(root) == {**before, **{k: v for k, v in _files(root).items() if k.startswith(".")}}
    assert (root / F.shard_name(0)).stat().st_ino == kept.st_ino
    (root / F.shard_name(2)).write_bytes(bytes(len(before[F.shard_name(2)])))  # its size, but no samples
    with caplog.at_level(logging.WARNING):
        assert len(ShardSource(root).keys) == 8 and "1 unreadable shard(s) skipped" in caplog.text  # encode


def test_a_damaged_latent_file_is_rebuilt_from_its_chunks_alone(folder, model_dir, tmp_path):
    out = _encode(folder, tmp_path / "lat", model_dir)  # chunks of 8: frames 0-5 in one chunk
    whole = _files(out)
    (out / "latents.npy").write_bytes(whole["latents.npy"][:200])  # truncated after it was complete
    with pytest.raises(BtnkEnvError, match=r"latents.npy missing or damaged .* rebuilds them from the stored chunks"):
        LatentDataset(out)
    chunk = (out / "chunks" / "000000.npy").stat()
    _encode(folder, out, model_dir)
    assert _files(out) == whole and (out / "chunks" / "000000.npy").stat().st_mtime_ns == chunk.st_mtime_ns
    out2 = encode_dataset(folder, tmp_path / "lat2", model_dir, batch_size=2, chunk_size=2, workers=0, device="cpu",
                          progress=False)
    chunks = {p.name: p.stat().st_mtime_ns for p in (out2 / "chunks").glob("*.npy")}
    latents = np.array(LatentDataset(out2).latents)
    (out2 / "chunks" / "000001.npy").write_bytes((out2 / "chunks" / "000001.npy").read_bytes()[:-4])  # a torn chunk
    meta = json.loads((out2 / "latents.json").read_text())
    (out2 / "latents.json").write_text(json.dumps({**meta, "complete": False}))  # as an encode killed before the end
    encode_dataset(folder, out2, model_dir, batch_size=2, chunk_size=2, workers=0, device="cpu", progress=False)
    now = {p.name: p.stat().st_mtime_ns for p in (out2 / "chunks").glob("*.npy")}
    assert [k for k in chunks if now[k] != chunks[k]] == ["000001.npy"]  # re-encoded that chunk alone
    assert np.array_equal(LatentDataset(out2).latents, latents)


def test_merge_index_never_replaces_a_complete_sets_index(env, tmp_path):
    done = collect_panoramas(env, tmp_path / "set", 4, format="shards", shard_size=2, **SMALL)
    for part in range(2):
        collect_panoramas(env, tmp_path / "parts", 4, format="shards", shard_size=2, shard_index=part, num_shards=2,
                          **SMALL)
    before = _files(done)
    with pytest.raises(BtnkEnvError, match="different settings|never replaced"):
        merge_indexes(done, [tmp_path / "parts"])
    assert _files(done) == before
    assert cli_main(["collect", "--merge-index", str(tmp_path / "parts"), "--out", str(done)]) == 2
    assert _files(done) == before


def test_convert_into_a_folder_of_the_users_is_refused(env, tmp_path):
    folder = collect_panoramas(env, tmp_path / "f", 3, **SMALL)
    user = _user_folder(tmp_path / "s", {".hidden": b"mine", "shard-000000.tar": b"mine"})
    with pytest.raises(BtnkEnvError, match="never replaced"):
        convert(folder, user)
    assert _files(user) == {".hidden": b"mine", "shard-000000.tar": b"mine"}


# ---------------------------------------------------------------------------- locks
def test_two_episode_recorders_on_one_folder_the_second_is_refused(tmp_path, caplog):
    first = EpisodeFolderWriter(tmp_path / "eps", (16, 32), "Discrete(3)", {"policy": "random"})
    try:
        with pytest.raises(F.CollectionLockedError, match="another process is writing"):
            EpisodeFolderWriter(tmp_path / "eps", (16, 32), "Discrete(3)", {"policy": "random"})
    finally:
        first.close()
    EpisodeFolderWriter(tmp_path / "eps", (16, 32), "Discrete(3)", {"policy": "random"}).close()  # released


def test_two_encodes_into_one_output_the_second_is_refused(folder, model_dir, tmp_path):
    out = _encode(folder, tmp_path / "lat", model_dir)
    meta = json.loads((out / "latents.json").read_text())
    (out / "latents.json").write_text(json.dumps({**meta, "complete": False}))  # as while the first one runs
    with F.exclusive_lock(out, ".encode-rank0.lock"):  # what a running encode (rank 0) holds
        with pytest.raises(F.CollectionLockedError, match="another process is writing"):
            _encode(folder, out, model_dir)
    assert LatentDataset(_encode(folder, out, model_dir)).latents.shape[0] == 6  # released: it finishes


def test_a_reader_of_a_dataset_being_written_says_so(env, episodes, folder, tmp_path, caplog):
    from btnk_env.training.datasets import build_dataset
    from btnk_env.training.encode import ShardSource

    root = tmp_path / "eps"
    shutil.copytree(episodes, root)
    writer = EpisodeFolderWriter(root, (16, 32), "Discrete(3)", json.loads((root / "dataset_config.json").read_text())["collection"])
    try:
        with caplog.at_level(logging.WARNING):
            assert len(EpisodeFolder(root)) == 4
        assert f"{root} is still being written" in caplog.text
    finally:
        writer.close()
    shards = collect_panoramas(env, tmp_path / "s", 4, format="shards", shard_size=2, **SMALL)
    for path, lock, read in [(folder, ".collect.lock", lambda: build_dataset(str(folder), (16, 32))),
                             (shards, ".index.json.lock", lambda: build_dataset(str(shards), (16, 32))),  # training, eval
                             (shards, ".index.json.lock", lambda: ShardSource(shards)),  # encode
                             (shards, ".index-part-00001-of-00002.json.lock", lambda: F.open_shard_set(shards))]:
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            read()
            assert "still being written" not in caplog.text
            with F.exclusive_lock(path, lock):
                read()
        assert caplog.text.count(f"{path} is still being written") == 1, lock


# ---------------------------------------------------------------------------- properties
_OUR_NAMES = ["images/000000.png", "episodes/202401/a.png", "episodes/000000/steps.npz", "shard-000000.tar",
              "latents.npy", "keys.json", "index.json", "manifest.jsonl", "episodes.jsonl", "dataset_config.json",
              "chunks/000000.npy", ".btnk-env-owned", "index-part-00000-of-00002.json", "notes.txt", "sub/x"]
_user_files = st.dictionaries(st.sampled_from(_OUR_NAMES), st.binary(max_size=64), min_size=1, max_size=5)
_PROPS = settings(max_examples=12, deadline=None, derandomize=True, database=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _writers(env, src_folder, src_shards, episodes, model_dir):
    """Every writer of the package, as ``out -> None`` (each may refuse: a BtnkEnvError)."""
    return {
        "collect-folder": lambda out: collect_panoramas(env, out, 3, **SMALL),
        "collect-shards": lambda out: collect_panoramas(env, out, 3, format="shards", shard_size=2, **SMALL),
        "collect-part": lambda out: collect_panoramas(env, out, 4, format="shards", shard_size=2, shard_index=1,
                                                      num_shards=2, **SMALL),
        "convert-to-shards": lambda out: convert(src_folder, out),
        "convert-to-folder": lambda out: convert(src_shards, out),
        "merge-index": lambda out: merge_indexes(out, [src_shards.parent / "parts"]),
        "record-episodes": lambda out: record_episodes(env, out, 1, seeds=[0], max_steps=2, progress=False),
        "encode": lambda out: _encode(episodes, out, model_dir),
    }


@pytest.fixture(scope="module")
def sources(env, episodes, tmp_path_factory):
    base = tmp_path_factory.mktemp("sources")
    folder = collect_panoramas(env, base / "f", 3, **SMALL)
    shards = convert(folder, base / "s", shard_size=2)
    for part in range(2):
        collect_panoramas(env, base / "parts", 4, format="shards", shard_size=2, shard_index=part, num_shards=2, **SMALL)
    return folder, shards


@_PROPS
@given(files=_user_files)
def test_no_writer_changes_a_user_file_whatever_the_folder_holds(env, sources, episodes, model_dir, files):
    for name, write in _writers(env, *sources, episodes, model_dir).items():
        out = _user_folder(Path(tempfile.mkdtemp(prefix="own")), files)
        before = _files(out)
        try:
            write(out)
        except BtnkEnvError:
            pass
        after = _files(out)
        assert {k: after.get(k) for k in before} == before, name
        shutil.rmtree(out)


_DAMAGE = ["index-line", "steps-missing", "steps-truncated", "frame-missing", "steps-longer", "actions-outside",
           "num-steps-huge"]


def _damage(root: Path, episode: int, kind: str) -> None:
    folder = root / f"episodes/{episode:06d}"
    index = root / "episodes.jsonl"
    lines = index.read_text().splitlines(keepends=True)
    rec = json.loads(lines[episode])
    if kind == "index-line":
        lines[episode] = lines[episode][: len(lines[episode]) // 2] + "\n"
    elif kind == "num-steps-huge":
        lines[episode] = json.dumps({**rec, "num_steps": 100_000_000}) + "\n"
    elif kind == "steps-missing":
        (folder / "steps.npz").unlink()
    elif kind == "steps-truncated":
        data = (folder / "steps.npz").read_bytes()
        (folder / "steps.npz").write_bytes(data[: len(data) // 2])
    elif kind == "frame-missing":
        (folder / f"{rec['num_steps']:06d}.png").unlink()
    else:
        with np.load(folder / "steps.npz") as z:
            arrays = {k: z[k] for k in z.files}
        if kind == "steps-longer":
            arrays["actions"] = np.r_[arrays["actions"], 0, 1]
        else:
            arrays["actions"][0] = 9
        np.savez(folder / "steps.npz", **arrays)
    index.write_text("".join(lines))


@_PROPS
@given(frame=st.integers(0, 5), kind=st.sampled_from([*_LINE_DAMAGE, "png-missing"]))
def test_random_damage_to_a_panorama_folder_loses_nothing_else(env, folder, frame, kind):
    from btnk_env.collection import load_manifest
    from btnk_env.training.datasets import panorama_files

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "f"
        shutil.copytree(folder, root)
        good, stats = (root / F.MANIFEST).read_text(), _stats(root)
        if kind == "png-missing":
            (root / F.frame_file(frame)).unlink()
        else:
            (root / F.MANIFEST).write_text("".join(_LINE_DAMAGE[kind](good.splitlines(keepends=True), frame)))
        others = [i for i in range(6) if i != frame]
        assert [r["index"] for r in load_manifest(root)] == others
        assert [p.name for p in panorama_files(root)] == [f"{i:06d}.png" for i in others]
        collect_panoramas(env, root, 6, **SMALL)
        assert (root / F.MANIFEST).read_text() == good and _files(root / F.IMAGES_DIR) == _files(folder / F.IMAGES_DIR)
        now = _stats(root)
        assert all(now[F.frame_file(i)] == stats[F.frame_file(i)] for i in others)


@_PROPS
@given(episode=st.integers(0, 3), kind=st.sampled_from(_DAMAGE))
def test_random_damage_to_an_episode_dataset_loses_nothing_else(env, episodes, episode, kind):
    root = Path(tempfile.mkdtemp(prefix="dmg")) / "eps"
    shutil.copytree(episodes, root)
    whole = _files(episodes)
    _damage(root, episode, kind)
    data = EpisodeFolder(root)
    assert [r["index"] for r in data.episodes] == [i for i in range(4) if i != episode] and len(data.damaged) == 1
    record_episodes(env, root, 4, policy="random", seeds=[3], max_steps=3, progress=False)  # re-does that one
    after = _files(root)
    assert {k: after.get(k) for k in whole if k.startswith("episodes/")} == {k: v for k, v in whole.items()
                                                                            if k.startswith("episodes/")}
    shutil.rmtree(root.parent)

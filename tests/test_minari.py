"""The Minari export from the other side: ``minari.load_dataset(ID).recover_environment()`` gives
the latent-observation environment the data came from (its observations are the dataset's for
the same seed and actions), poses and goal are in the step infos, re-runs are idempotent (an
identical dataset kept, another refused in one line), and a bad id is refused before any work."""

from __future__ import annotations

import numpy as np
import pytest
import torch

minari = pytest.importorskip("minari")

from btnk_env.cli import main as cli_main  # noqa: E402
from btnk_env.collection.episodes import record_episodes  # noqa: E402
from btnk_env.envs.panorama_rooms import PanoramaRoomsEnv  # noqa: E402
from btnk_env.models import BtnkMAE  # noqa: E402
from btnk_env.formats.latents import LatentDataset  # noqa: E402

ID = "btnk/rooms/recover-v0"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """Three random-policy episodes of the single-room world (32x64, at most 6 steps), and a tiny model."""
    root = tmp_path_factory.mktemp("minari")
    env = PanoramaRoomsEnv(height=32, world="single_room")
    try:
        record_episodes(env, root / "eps", 3, policy="random", seeds=[0], max_steps=6, progress=False)
    finally:
        env.close()
    torch.manual_seed(0)
    BtnkMAE("test", img_size=(32, 64)).save_pretrained(root / "model")
    return root


def _encode(recorded, out, *extra):
    return cli_main(["encode", str(recorded / "eps"), "--out", str(out), "--model", str(recorded / "model"),
                     "--chunk-size", "8", "--workers", "0", "--device", "cpu", "--no-progress", "--minari-id", ID, *extra])


def test_recover_environment_gives_the_latent_env_the_data_came_from(recorded, tmp_path, monkeypatch, capsys, caplog):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    assert _encode(recorded, tmp_path / "lat") == 0
    lat = LatentDataset(tmp_path / "lat")
    ds = minari.load_dataset(ID)
    ep = ds[0]
    mine = lat.episode(0)
    np.testing.assert_array_equal(ep.infos["pose"], mine["poses"].astype(np.float32))
    np.testing.assert_array_equal(ep.infos["goal"], np.repeat(mine["goal"][None].astype(np.float32), len(mine["poses"]), 0))
    for eval_env in (False, True):
        env = ds.recover_environment(eval_env=eval_env)
        assert env.observation_space == ds.observation_space and env.action_space == ds.action_space
        obs, _ = env.reset(seed=int(lat.episodes[0]["seed"]))
        np.testing.assert_allclose(obs, ep.observations[0], atol=1e-5)  # the same world and the same encoder
        for t, action in enumerate(ep.actions):
            obs, reward, term, trunc, _ = env.step(int(action))
            np.testing.assert_allclose(obs, ep.observations[t + 1], atol=1e-5)
            assert reward == pytest.approx(float(ep.rewards[t]))
        env.close()
    # the same command again: the identical dataset is kept (and said so), nothing rewritten
    stamp = {p: p.stat().st_mtime_ns for p in (tmp_path / "minari").rglob("*") if p.is_file()}
    capsys.readouterr()
    assert _encode(recorded, tmp_path / "lat") == 0
    assert "already holds these episodes (same model, settings and source): kept" in caplog.text
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "minari").rglob("*") if p.is_file()} == stamp
    capsys.readouterr()
    # other data under that id: one line, exit 2, nothing written
    assert _encode(recorded, tmp_path / "other", "--precision", "int8") == 2
    out = capsys.readouterr().err.strip()  # input errors: one line on stderr (models.errors.run_cli)
    assert len(out.splitlines()) == 1 and "already exists" in out and ID in out
    assert not (tmp_path / "other").exists()


@pytest.mark.parametrize("bad", ["../../escape-v0", "/abs/name-v0", "a/../b-v0", "name", ".hidden/x-v0"])
def test_bad_ids_are_refused_before_any_work(recorded, tmp_path, monkeypatch, capsys, bad):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "m" / "minari"))
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert cli_main(["encode", str(recorded / "eps"), "--out", str(tmp_path / "lat"), "--model", str(recorded / "model"),
                     "--minari-id", bad]) == 2
    assert "Minari dataset ids look like" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # no output, no Minari folder, nothing outside

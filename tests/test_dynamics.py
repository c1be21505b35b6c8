"""The latent dynamics model: training lowers the loss, exact resume, save/load, mismatch errors."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from btnk_env.models.dynamics import DynamicsConfig, DynamicsMismatchError, LatentDynamics
from btnk_env.formats import latents as fmt
from btnk_env.training.dynamics import DynamicsTrainer, load_dynamics_config, train_dynamics

D = 8
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def write_synthetic_latents(root, episodes=6, steps=20, seed=0):
    """A latent episode dataset whose next latent depends on the action (rotation / shift)."""
    rng = np.random.default_rng(seed)
    shift = rng.normal(size=(3, D)).astype(np.float32)
    z, acts, offsets = [], [], [0]
    for _ in range(episodes):
        x = rng.normal(size=D).astype(np.float32)
        for t in range(steps + 1):
            a = int(rng.integers(3)) if t < steps else -1
            z.append(x.copy())
            acts.append(a)
            if a >= 0:
                x = 0.9 * np.roll(x, a) + 0.3 * shift[a]
        offsets.append(len(z))
    root.mkdir(parents=True, exist_ok=True)
    n = len(z)
    fmt.save_npy(root / fmt.LATENTS, np.stack(z))
    fmt.save_npy(root / "actions.npy", np.array(acts, np.int64))
    fmt.save_npy(root / "rewards.npy", np.zeros(n, np.float32))
    fmt.save_npy(root / "terminated.npy", np.zeros(n, bool))
    fmt.save_npy(root / "truncated.npy", np.zeros(n, bool))
    fmt.save_npy(root / "poses.npy", np.zeros((n, 4), np.float32))
    fmt.save_npy(root / fmt.OFFSETS, np.array(offsets, np.int64))
    fmt.save_npy(root / fmt.GOALS, np.zeros((episodes, 3), np.float32))
    fmt.write_json(root / fmt.EPISODES, [{"seed": i} for i in range(episodes)])
    fmt.write_meta(root, {"format": fmt.FORMAT, "kind": "episodes", "complete": True, "latent_dim": D,
                          "model": "synthetic", "model_sha256": "0" * 64, "num_frames": n})
    return root


def _overrides(tmp_path, data, out="run", steps=12, **extra):
    """Dotlist overrides of a small, fast run (``extra``: ``{"train.batch_size": 4}`` and the like)."""
    over = {"data.path": data, "io.out_dir": tmp_path / out, "train.steps": steps, "train.batch_size": 8,
            "model.width": 32, "model.heads": 2, "model.depth": 1, "data.horizon": 3, "optim.warmup_steps": 2,
            "optim.lr": 3e-3, "io.log_every": 1, "io.checkpoint_every": 4, "io.progress": "false", "train.device": "cpu"}
    return [f"{k}={v}" for k, v in {**over, **extra}.items()]


def _cfg(tmp_path, data, out="run", steps=12, **extra):
    return load_dynamics_config(CONFIGS / "dynamics_rooms.yaml", _overrides(tmp_path, data, out, steps, **extra))


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: these tiny models only lose time to thread hand-offs (10x on a loaded machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_synthetic_latents(tmp_path_factory.mktemp("lat") / "lat")


@pytest.mark.parametrize("kind", ["transformer", "gru"])
def test_optimizer_steps_lower_the_dynamics_loss(tmp_path, data, kind):
    trainer = DynamicsTrainer(_cfg(tmp_path, data, steps=30, **{"model.kind": kind}))
    z, a = trainer._batch(10_000)  # a held-out batch
    from btnk_env.models.dynamics import open_loop_loss

    with torch.no_grad():
        before = sum(open_loop_loss(trainer.model, z, a, trainer.model.latent_std))
    trainer.fit()
    with torch.no_grad():
        after = sum(open_loop_loss(trainer.model, z, a, trainer.model.latent_std))
    assert after < 0.85 * before
    loaded = LatentDynamics.from_pretrained(tmp_path / "run" / "final")
    assert loaded.config.kind == kind and loaded.config.latent_dim == D
    for k, v in trainer.model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v.cpu())


def test_killed_and_resumed_run_equals_the_uninterrupted_run(tmp_path, data):
    full = train_dynamics(_cfg(tmp_path, data, out="full"))
    train_dynamics(_cfg(tmp_path, data, out="cut"), stop_after=8)  # "killed" after the step-8 checkpoint
    resumed = train_dynamics(_cfg(tmp_path, data, out="cut"))
    assert resumed.step == full.step == 12
    for k, v in full.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[k], v, rtol=0, atol=0)
    rows = [json.loads(line) for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 13))


def test_mismatches_are_clear_errors():
    model = LatentDynamics(DynamicsConfig(latent_dim=D, num_actions=3, context=2, width=16, depth=1, heads=2,
                                          encoder_sha256="a" * 64))
    model.check_compatible(D, 3, "a" * 64)
    with pytest.raises(DynamicsMismatchError, match="8-d latents but the encoder gives 192-d"):
        model.check_compatible(192, 3)
    with pytest.raises(DynamicsMismatchError, match="3 actions but the world has 4"):
        model.check_compatible(D, 4)
    with pytest.raises(DynamicsMismatchError, match="retrain"):
        model.check_compatible(D, 3, "b" * 64)


def test_config_typos_are_named(tmp_path, data):
    from btnk_env.training.config import ConfigError

    with pytest.raises(ConfigError, match=r"'train.stepz' in the command-line overrides; known keys of train: \['batch_size'"):
        _cfg(tmp_path, data, **{"train.stepz": 3})
    with pytest.raises(ConfigError, match="data.path must be set"):
        load_dynamics_config(None, ["train.steps=3"])


def test_ridge_baseline_beats_copy_last_on_linear_dynamics(data):
    from btnk_env.training.dynamics_eval import RidgeDynamics, copy_last, imagine, markdown_table
    from btnk_env.formats.latents import LatentDataset

    lat = LatentDataset(data)
    ridge = RidgeDynamics(context=2, num_actions=3, lam=1e-3).fit(lat)
    z = torch.from_numpy(np.asarray(lat.latents[:8], np.float32))[None]  # (1, 8, D) one episode's start
    a = torch.from_numpy(np.asarray(lat.actions[:7], np.int64))[None]
    truth = z[:, 2:]
    err = {name: float(((imagine(step, z[:, :2], a) - truth) ** 2).mean()) for name, step in
           (("ridge", ridge), ("copy", copy_last))}
    assert imagine(copy_last, z[:, :2], a).shape == (1, 6, D)
    assert err["ridge"] < err["copy"]
    table = markdown_table({"ridge": {1: {"latent_mse": 0.1, "cosine": 0.9, "psnr": 20.0, "ssim": 0.5}}}, (1,))
    assert "| ridge | 0.1000 / 0.900 / 20.00 / 0.500 |" in table


def test_shipped_dynamics_model_matches_the_shipped_encoder():
    """Fails when the shipped encoder is retrained without retraining the dynamics model on its latents."""
    from btnk_env.models import BtnkMAE
    from btnk_env.models.identity import model_sha256

    dyn = LatentDynamics.from_pretrained("panorama-rooms-small-dynamics")
    encoder = BtnkMAE.from_pretrained("panorama-rooms-small")
    dyn.check_compatible(encoder.latent_dim, 3, model_sha256(encoder))
    z = torch.zeros(1, dyn.config.context, dyn.latent_dim)
    assert torch.isfinite(dyn.rollout(z, torch.zeros(1, dyn.config.context - 1, dtype=torch.long),
                                      torch.zeros(1, 2, dtype=torch.long))).all()


def test_every_dynamics_yaml_loads_against_its_schema():
    paths = sorted(CONFIGS.glob("dynamics_*.yaml"))
    assert paths
    for path in paths:
        cfg = load_dynamics_config(path, ["data.path=somewhere"])
        assert cfg.model.kind in ("transformer", "gru") and cfg.data.path == "somewhere"


def test_two_process_torchrun_trains_and_rank_zero_alone_writes(tmp_path, data):
    """``torchrun --nproc_per_node=2 -m btnk_env train-dynamics`` (Gloo on CPU): the run ends, gradients are
    averaged across ranks (DDP), one metrics file with one row per step, and the model learned."""
    import os
    import subprocess
    import sys

    from btnk_env.models.dynamics import open_loop_loss

    root = Path(__file__).resolve().parents[1]
    over = _overrides(tmp_path, data, out="two", steps=30, **{"train.batch_size": 4, "io.checkpoint_every": 10})
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "btnk_env",
           "train-dynamics", "--config", str(CONFIGS / "dynamics_rooms.yaml"), *over]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 31))  # rank 0 alone logs
    fresh = DynamicsTrainer(_cfg(tmp_path, data, out="fresh"))  # the seeded initialisation rank 0 started from
    z, a = fresh._batch(10_000)  # a batch no rank trained on
    trained = LatentDynamics.from_pretrained(tmp_path / "two" / "final")
    with torch.no_grad():
        before = sum(open_loop_loss(fresh.model, z, a, fresh.model.latent_std))
        after = sum(open_loop_loss(trained, z, a, trained.latent_std))
    assert after < 0.85 * before

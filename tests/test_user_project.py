"""From a research repository that has its own ``models/`` and ``training/`` packages.

Those are the most common folder names in ML code. The package installs under one import root
(``btnk_env``; the folders ``models/`` and ``training/`` of this repository install as
``btnk_env.models`` and ``btnk_env.training``), so run from such a repository, ours and theirs
both resolve: ``import models`` is still the user's, and the wrapper, the CLI and torchrun work.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

USER_PACKAGE = '''WHO = "user"
class BtnkMAE:  # a name ours would take if the import root were shadowed
    pass
'''


@pytest.fixture()
def user_repo(tmp_path) -> Path:
    repo = tmp_path / "my_research"
    for package in ("models", "training"):
        (repo / package).mkdir(parents=True)
        (repo / package / "__init__.py").write_text(USER_PACKAGE)
    return repo


def run_in(repo: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """``args`` run with ``repo`` as the working directory (on ``sys.path`` first, as for a user)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def test_wrapper_and_encode_from_a_repo_with_its_own_models_package(user_repo):
    script = '''
import gymnasium as gym
import numpy as np
import models, training
from btnk_env import BtnkMAE, BtnkMAEObservation
import btnk_env.models

assert models.WHO == "user" and training.WHO == "user", "the user's packages were shadowed"
assert btnk_env.models.BtnkMAE is BtnkMAE and BtnkMAE is not models.BtnkMAE
model = BtnkMAE.from_pretrained("panorama-rooms-small")
frames = np.zeros((2, 128, 256, 3), np.uint8)
from btnk_env.models import frames_to_tensor
latent = model.encode(frames_to_tensor(frames))
assert latent.shape == (2, model.latent_dim), latent.shape
env = BtnkMAEObservation(gym.make("btnk_env/PanoramaRooms-v0", height=64, world="single_room"), model)
obs, info = env.reset(seed=0)
obs, *_ = env.step(0)
assert obs.shape == (model.latent_dim,)
env.close()
print("OK", models.__file__)
'''
    proc = run_in(user_repo, sys.executable, "-c", script)
    assert f"OK {user_repo / 'models' / '__init__.py'}" in proc.stdout


def test_cli_demo_from_a_repo_with_its_own_models_package(user_repo):
    run_in(user_repo, sys.executable, "-m", "btnk_env", "demo", "--out", "runs/demo", "--steps", "3", "--height", "64")
    assert (user_repo / "runs" / "demo" / "report.json").is_file()
    assert (user_repo / "models" / "__init__.py").read_text() == USER_PACKAGE  # theirs, untouched


def test_torchrun_smoke_from_a_repo_with_its_own_training_package(user_repo):
    from PIL import Image
    import numpy as np

    data = user_repo / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (64, 128, 3), np.uint8)).save(data / f"{i}.png")
    run_in(user_repo, sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "btnk_env.training", "model.init=scratch", "model.preset=test", "model.img_size=[64,128]",
           f"data.path={data}", "data.transform=resize", "train.epochs=1", "train.batch_size=1",
           "train.device=cpu", "optim.warmup_iters=0", "io.out_dir=runs/ddp", "io.snapshot_every=null")
    assert (user_repo / "runs" / "ddp" / "final").is_dir()

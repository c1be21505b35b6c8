"""btnk-env imagine: planning in the built-in world, the imagined video, mismatch errors before any work."""

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from btnk_env.cli import main
from btnk_env.envs.panorama_rooms import PanoramaRoomsEnv
from btnk_env.imagine import plan_to_goal
from btnk_env.models.dynamics import DynamicsConfig, LatentDynamics


def test_planned_path_reaches_the_goal_when_executed():
    env = PanoramaRoomsEnv(height=16, world="single_room")
    env.reset(seed=1003)
    plan = plan_to_goal(env)
    assert plan and set(plan) <= {0, 1, 2}
    done = False
    for a in plan:
        _, _, done, _, info = env.step(a)
    assert done and info["distance_to_goal"] < env.goal_radius
    env.close()


@pytest.fixture
def models_dir(tmp_path, tiny_model):
    tiny_model.save_pretrained(tmp_path / "enc")

    def dynamics(name, **kw):
        torch.manual_seed(0)
        cfg = dict(latent_dim=tiny_model.latent_dim, num_actions=3, context=3, width=16, depth=1, heads=2)
        LatentDynamics(DynamicsConfig(**{**cfg, **kw})).save_pretrained(tmp_path / name)
        return str(tmp_path / name)

    return tmp_path, dynamics


def test_imagined_rollout_under_a_planned_path_writes_a_video(models_dir, capsys):
    tmp, dynamics = models_dir
    dyn = dynamics("dyn")
    out = tmp / "imagined.gif"
    rc = main(["imagine", "--plan", "--seed", "1003", "--height", "32", "--dynamics", dyn, "--encoder",
               str(tmp / "enc"), "--out", str(out), "--horizon", "6"])
    text = capsys.readouterr().out
    assert rc == 0, text
    planned = int(text.split("imagining ")[1].split()[0])
    frames = iio.imread(out, index=None)
    assert frames.shape[0] == 3 + planned == 3 + min(6, len(plan_to_goal_for(1003)))
    assert frames.dtype == np.uint8 and frames.shape[-1] == 3


def plan_to_goal_for(seed):
    env = PanoramaRoomsEnv(height=16, world="single_room")
    env.reset(seed=seed)
    env.step(1), env.step(1)  # the context's K - 1 = 2 left turns
    plan = plan_to_goal(env)
    env.close()
    return plan


@pytest.mark.parametrize("kw, message", [({"latent_dim": 8}, "8-d latents but the encoder gives 64-d"),
                                         ({"num_actions": 4}, "4 actions but the world has 3")])
def test_mismatches_are_refused_before_any_work(models_dir, capsys, kw, message):
    tmp, dynamics = models_dir
    out = tmp / "never.gif"
    rc = main(["imagine", "--plan", "--height", "32", "--dynamics", dynamics("bad", **kw), "--encoder", str(tmp / "enc"),
               "--out", str(out)])
    assert rc == 2 and message in capsys.readouterr().err
    assert not out.exists()

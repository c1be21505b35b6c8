"""Planning in imagination: solvers on a known toy world, no privileged state, btnk-env plan's video and
report, mismatched models refused before any work."""

import json

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from btnk_env.cli import main
from btnk_env.envs.panorama_rooms import PanoramaRoomsEnv
from btnk_env.planning.evaluate import planner_agent, run_episode
from btnk_env.planning.policy import LatentPlanner, padded_context
from btnk_env.planning.solvers import CEM, MPPI, RandomShooting
from btnk_env.models.dynamics import DynamicsConfig, LatentDynamics
from btnk_env.models.goal_distance import GoalDistance, GoalDistanceConfig

# -- a 2-D point world: the latent is the position, actions move one unit (0: +x, 1: +y, 2: -x)
MOVES = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])


def point_step(z, a):
    """``z (B, K, 2)``, ``a (B, K)`` -> ``(B, 2)``: the last position moved by the last action."""
    return z[:, -1] + MOVES[a[:, -1]]


def manhattan(z, g):
    """The exact steps-to-go of the point world with x and +y moves: ``(N, 2), (1, 2) -> (N,)``."""
    d = g - z
    return d[:, 0].abs() + d[:, 1].clamp_min(0) + 100 * (-d[:, 1]).clamp_min(0)


@pytest.mark.parametrize("solver", [CEM(samples=256, iterations=4, elites=16), MPPI(samples=256, iterations=4, temperature=0.2),
                                    RandomShooting(samples=2048)])
def test_planner_finds_the_optimal_action_sequence_in_a_point_world(solver):
    goal = torch.tensor([-3.0, 2.0])
    planner = LatentPlanner(point_step, manhattan, num_actions=3, context=2, horizon=6, solver=solver, seed=1)
    planner.reset(goal)
    pos, taken = torch.zeros(2), []
    for _ in range(10):
        a = planner.act(pos)
        taken.append(a)
        pos = pos + MOVES[a]
        if torch.equal(pos, goal):
            break
    assert torch.equal(pos, goal)
    assert len(taken) == 5 and sorted(taken) == [1, 1, 2, 2, 2]  # the shortest: 3 left, 2 up, in any order
    plan = planner.last_plan
    assert planner.last_imagined.shape == (6, 2) and plan.shape == (6,)


def test_the_solver_returns_the_cheapest_sequence_of_a_known_cost():
    target = torch.tensor([2, 0, 1, 1, 0])
    cost = lambda a: (a != target).sum(1).float()  # noqa: E731
    for solver in (CEM(samples=128, iterations=5), MPPI(samples=128, iterations=5, temperature=0.3)):
        best, c = solver.solve(cost, 5, 3, torch.Generator().manual_seed(0))
        assert best.tolist() == target.tolist() and c == 0


def test_padded_context_repeats_the_first_latent_with_blocked_forward_steps():
    z, a = padded_context(torch.arange(4.0).reshape(2, 2), torch.tensor([1]), 4)
    assert z.tolist() == [[0, 1], [0, 1], [0, 1], [2, 3]] and a.tolist() == [0, 0, 1]


# -- the built-in world with tiny models
@pytest.fixture
def tiny_models(tmp_path, tiny_model):
    from btnk_env.training.encode import model_sha256

    tiny_model.save_pretrained(tmp_path / "enc")
    torch.manual_seed(0)
    dyn = LatentDynamics(DynamicsConfig(latent_dim=tiny_model.latent_dim, num_actions=3, context=3, width=16, depth=1, heads=2))
    dyn.save_pretrained(tmp_path / "dyn")

    def head(name, **kw):
        torch.manual_seed(1)
        cfg = dict(latent_dim=tiny_model.latent_dim, width=16, depth=1, encoder_sha256=model_sha256(tiny_model),
                   dynamics_sha256=model_sha256(dyn))
        GoalDistance(GoalDistanceConfig(**{**cfg, **kw})).save_pretrained(tmp_path / name)
        return str(tmp_path / name)

    return tmp_path, tiny_model, dyn, head


class Blindfolded:
    """The world as an agent without privileges sees it: observations, rewards and flags; ``info`` is
    empty, and neither the pose nor the layout can be reached from it."""

    def __init__(self, height):
        self.__env = PanoramaRoomsEnv(height=height, world="single_room")

    def reset(self, seed):
        return self.__env.reset(seed=seed)[0], {}

    def step(self, action):
        obs, reward, terminated, truncated, _ = self.__env.step(action)
        return obs, reward, terminated, truncated, {}


def test_the_planner_acts_the_same_without_privileged_state(tiny_models):
    from btnk_env.planning.goals import goal_view

    tmp, encoder, dyn, head = tiny_models
    gd = GoalDistance.from_pretrained(head("head"))
    seen = {}
    for name in ("full", "blind"):
        world = PanoramaRoomsEnv(height=32, world="single_room") if name == "full" else Blindfolded(32)
        goal_env = PanoramaRoomsEnv(height=32, world="single_room")
        _, info = goal_env.reset(seed=1003)
        goal = goal_view(goal_env, info["goal_position"], 0.3)
        start = planner_agent(LatentPlanner(dyn, gd, 3, 3, horizon=4, samples=16, iterations=2), encoder)
        obs, info = world.reset(seed=1003)
        act = start(None, obs, info, goal, 1003)
        actions = []
        for _ in range(6):
            actions.append(act(obs, info))
            obs, _, done, _, info = world.step(actions[-1])
            if done:
                break
        seen[name] = actions
        goal_env.close()
    assert seen["full"] == seen["blind"] and len(seen["full"]) > 1


def test_plan_writes_a_video_with_one_frame_per_step(tiny_models, capsys):
    tmp, _, _, head = tiny_models
    out = tmp / "plan.gif"
    rc = main(["plan", "--seed", "1003", "--height", "32", "--dynamics", str(tmp / "dyn"), "--encoder", str(tmp / "enc"),
               "--head", head("head"), "--out", str(out), "--max-steps", "5", "--samples", "8", "--horizon", "3",
               "--threads", "1"])
    text = capsys.readouterr().out
    assert rc == 0, text
    steps = int(text.split(" steps;")[0].split()[-1])
    frames = iio.imread(out, index=None)
    assert frames.shape[0] == steps == int(text.split(" frames")[0].split()[-1]) and 1 <= steps <= 5
    assert frames.dtype == np.uint8 and frames.shape[-1] == 3 and frames.std() > 0


def test_plan_eval_writes_a_report(tiny_models, capsys):
    tmp, _, _, head = tiny_models
    report = tmp / "report.json"
    rc = main(["plan", "--eval", "--seeds", "1003-1004", "--methods", "planner,copy-last,random,oracle", "--height", "32",
               "--dynamics", str(tmp / "dyn"), "--encoder", str(tmp / "enc"), "--head", head("head"),
               "--json", str(report), "--max-steps", "40", "--samples", "8", "--horizon", "3", "--threads", "1"])
    assert rc == 0, capsys.readouterr().out
    r = json.loads(report.read_text())
    assert set(r["methods"]) == {"planner", "copy-last", "random", "oracle"}
    oracle = r["methods"]["oracle"]
    assert oracle["success_rate"] == 1.0 and oracle["spl"] == pytest.approx(1.0)
    assert all(len(m["episodes"]) == 2 and m["time_per_step_s"] >= 0 for m in r["methods"].values())


@pytest.mark.parametrize("kw, message", [({"dynamics_sha256": "0" * 64}, "for this dynamics model"),
                                         ({"encoder_sha256": "f" * 64}, "for this encoder"),
                                         ({"latent_dim": 8}, "reads 8-d latents")])
def test_mismatched_head_is_refused_before_any_work(tiny_models, capsys, kw, message):
    tmp, _, _, head = tiny_models
    out = tmp / "never.gif"
    rc = main(["plan", "--height", "32", "--dynamics", str(tmp / "dyn"), "--encoder", str(tmp / "enc"),
               "--head", head("bad", **kw), "--out", str(out)])
    assert rc == 2 and message in "".join(capsys.readouterr())
    assert not out.exists()


def test_mismatched_dynamics_is_refused_before_any_work(tiny_models, capsys):
    tmp, _, _, head = tiny_models
    LatentDynamics(DynamicsConfig(latent_dim=8, num_actions=3, context=3, width=16, depth=1, heads=2)).save_pretrained(tmp / "dyn8")
    out = tmp / "never.gif"
    rc = main(["plan", "--height", "32", "--dynamics", str(tmp / "dyn8"), "--encoder", str(tmp / "enc"),
               "--head", head("head"), "--out", str(out)])
    assert rc == 2 and "8-d latents but the encoder gives" in "".join(capsys.readouterr())
    assert not out.exists()


def test_the_planner_keeps_only_its_context_over_a_long_run():
    planner = LatentPlanner(point_step, manhattan, num_actions=3, context=3, horizon=4, samples=16, iterations=2)
    planner.reset(torch.tensor([50.0, 50.0]))
    pos = torch.zeros(2)
    for _ in range(300):
        pos = pos + MOVES[planner.act(pos)]
        assert len(planner._latents) <= 3 and len(planner._actions) <= 3


def test_imagine_with_the_latent_planner_imagines_the_path_it_took(tiny_models, capsys):
    tmp, _, _, head = tiny_models
    out = tmp / "imagined.gif"
    rc = main(["imagine", "--plan", "--planner", "latent", "--seed", "1003", "--height", "32", "--dynamics", str(tmp / "dyn"),
               "--encoder", str(tmp / "enc"), "--head", head("head"), "--out", str(out), "--horizon", "4"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "the latent planner" in text
    imagined = int(text.split("imagining ")[1].split()[0])
    assert 1 <= imagined <= 4 and iio.imread(out, index=None).shape[0] == 3 + imagined


def test_imagine_refuses_a_head_without_the_latent_planner(tiny_models, capsys):
    tmp, _, _, head = tiny_models
    out = tmp / "never.gif"
    rc = main(["imagine", "--plan", "--height", "32", "--dynamics", str(tmp / "dyn"), "--encoder", str(tmp / "enc"),
               "--head", head("head"), "--out", str(out)])
    assert rc == 2 and "--planner latent" in capsys.readouterr().out and not out.exists()


def test_planner_rollout_acts_as_the_planner_does_after_the_context(tiny_models):
    """The actions after the ``K - 1`` context turns are the planner's own, step by step."""
    from btnk_env.planning.evaluate import goal_frame
    from btnk_env.planning.policy import planner_rollout
    from btnk_env.imagine import encode_frames

    tmp, encoder, dyn, head = tiny_models
    gd = GoalDistance.from_pretrained(head("head"))
    env = PanoramaRoomsEnv(height=32, world="single_room")
    frames, actions, _ = planner_rollout(env, LatentPlanner(dyn, gd, 3, 3, horizon=3, samples=8), encoder, 1003, 3, 4)
    assert actions[:2].tolist() == [1, 1] and len(frames) == len(actions) + 1 == 2 + 1 + 4
    _, info = env.reset(seed=1003)
    again = LatentPlanner(dyn, gd, 3, 3, horizon=3, samples=8)
    again.reset(encode_frames(encoder, goal_frame(env, info, 1003)[None]), seed=1003)
    assert [again.act(encode_frames(encoder, f[None])[0]) for f in frames[2:-1]] == actions[2:].tolist()
    env.close()


def test_goal_rolls_are_the_goal_seen_at_other_headings(tiny_model):
    """Rolling a panorama by a quarter of its width is turning by a quarter turn: the rolled goal image equals
    the view rendered there at that heading, so the planner's goal latents need no access to the world."""
    from btnk_env.planning.goals import goal_latents, goal_view, rolled_views

    env = PanoramaRoomsEnv(height=32, world="single_room")
    _, info = env.reset(seed=1100)
    views = np.stack([goal_view(env, info["goal_position"], h) for h in (0.0, -np.pi / 2, -np.pi, np.pi / 2)])
    env.close()
    rolled = rolled_views(views[0], 4).astype(int)
    assert rolled.shape == views.shape and np.abs(rolled - views).mean(axis=(1, 2, 3)).max() < 1.0
    assert np.abs(views[1].astype(int) - views[0]).mean() > 5  # the headings are told apart
    assert goal_latents(tiny_model, views[0], rolls=4).shape == (4, tiny_model.latent_dim)


def _episodes(rng, n_episodes, d=192):
    """A fake ``render_episodes`` result: 3 frames, 2 imagined latents and 1 goal view per episode."""
    ep = np.arange(n_episodes)
    return {"real": rng.normal(size=(3 * n_episodes, d)).astype(np.float32), "real_steps": np.tile([2.0, 1.0, 0.0], n_episodes).astype(np.float32),
            "real_episode": ep.repeat(3), "imagined": rng.normal(size=(2 * n_episodes, d)).astype(np.float32),
            "imagined_steps": np.tile([1.0, 0.0], n_episodes).astype(np.float32), "imagined_episode": ep.repeat(2),
            "goals": rng.normal(size=(n_episodes, d)).astype(np.float32), "goal_episode": ep}


def test_goal_distance_training_joins_the_cached_data_of_several_runs(tmp_path):
    from pathlib import Path

    from btnk_env.training.goal_distance import GoalDistanceTrainer, load_goal_distance_config

    rng = np.random.default_rng(0)
    parts = [_episodes(rng, 2), _episodes(rng, 3)]
    for name, part in zip("ab", parts):
        np.savez(tmp_path / f"{name}.npz", **part)
    config = Path(__file__).resolve().parents[1] / "configs" / "goal_distance_rooms.yaml"
    cfg = load_goal_distance_config(config, [f"data.cache={tmp_path / 'a.npz'},{tmp_path / 'b.npz'}", f"io.out_dir={tmp_path / 'run'}",
                                             "train.steps=2", "train.batch_size=8", "model.width=16", "model.depth=1"])
    trainer = GoalDistanceTrainer(cfg)
    d = trainer.data
    assert d["goal_episode"].tolist() == [0, 1, 2, 3, 4] and d["real_episode"].tolist() == [0, 0, 0, 1, 1, 1] + [2] * 3 + [3] * 3 + [4] * 3
    assert np.array_equal(d["goals"][2:], parts[1]["goals"]) and np.array_equal(d["imagined"][:4], parts[0]["imagined"])
    trainer.fit()
    assert (tmp_path / "run" / "final" / "config.json").is_file()
    cfg.data.cache = str(tmp_path / "missing.npz")
    cfg.io.out_dir = str(tmp_path / "run2")
    with pytest.raises(FileNotFoundError, match="missing.npz: no such file"):
        GoalDistanceTrainer(cfg)

"""``btnk-env plan``: plan to a goal in imagination and act in the built-in world.

Video mode (``--out plan.mp4``): one episode in layout ``--seed`` towards the world's goal (or ``--goal-pose
X,Z``, or a goal image ``--goal-image``), one video frame per step: the executed view on top, below it the
context the planner imagined from (decoded, framed green) and the plan it chose (imagined, decoded with
:func:`btnk_env.video.decode_rollout`, framed red), as ``btnk-env imagine`` shows them.

Evaluation mode (``--eval --seeds 1000-1049 --json report.json``): success rate, SPL, steps and planning
time per step of each ``--methods`` entry (:mod:`btnk_env.planning.evaluate`) over the layouts.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

METHODS = ("planner", "copy-last", "ridge", "random", "ppo", "oracle")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--world", default="single_room", help="built-in world: single_room or apartment")
    parser.add_argument("--height", type=int, default=128, help="panorama height")
    parser.add_argument("--seed", type=int, default=1000, help="layout seed of the video episode")
    parser.add_argument("--goal-pose", default=None, help="X,Z metres: the goal position (default: the world's goal)")
    parser.add_argument("--goal-image", default=None, help="a goal view (image file) instead of a pose")
    parser.add_argument("--out", default=None, help="video path (.mp4, .gif or a folder of PNGs)")
    parser.add_argument("--eval", action="store_true", help="evaluate over --seeds instead of writing a video")
    parser.add_argument("--seeds", default="1000-1049", help="layout seeds of the evaluation")
    parser.add_argument("--methods", default="planner,random,ppo,oracle", help=f"comma-separated, of {','.join(METHODS)}")
    parser.add_argument("--ridge-data", default=None, help="latent episodes to fit the ridge baseline on (btnk-env encode)")
    parser.add_argument("--json", default=None, help="evaluation report path")
    parser.add_argument("--plot", default=None, help="evaluation bar chart (PNG) path")
    parser.add_argument("--dynamics", default="panorama-rooms-small-dynamics")
    parser.add_argument("--head", default="panorama-rooms-small-goal-distance", help="goal-distance head folder or bundled name")
    parser.add_argument("--encoder", default=None, help="default: the one the dynamics model names")
    parser.add_argument("--solver", default="cem", help="cem, mppi or random")
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--horizon", type=int, default=8)
    parser.add_argument("--cost", default="mean", help="mean, min or terminal (btnk_env.planning.cost)")
    parser.add_argument("--goal-rolls", type=int, default=1,
                        help="headings the goal image is seen at (its rolls; the cost averages the head over them)")
    parser.add_argument("--max-steps", type=int, default=60)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--fps", type=float, default=4)


def build_planner(args, step, head, dyn):
    from btnk_env.planning.policy import make_planner

    return make_planner(step, head, dyn, horizon=args.horizon, solver=args.solver, cost=args.cost,
                        samples=args.samples, iterations=args.iterations, goal_rolls=args.goal_rolls)


def run(args: argparse.Namespace) -> int:
    import torch

    from btnk_env.envs.panorama_rooms import PanoramaRoomsEnv
    from btnk_env.planning import evaluate as E
    from btnk_env.planning.load import load_models

    if bool(args.out) == bool(args.eval):
        print("btnk-env plan: give either --out VIDEO (one episode) or --eval (an evaluation over --seeds)")
        return 2
    methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ValueError(f"--methods: unknown {unknown}; choose from {list(METHODS)}")
    if "ridge" in methods and not args.ridge_data:
        raise ValueError("--methods ridge needs --ridge-data LATENT_EPISODES to fit it on")
    torch.set_num_threads(max(1, args.threads))
    env = PanoramaRoomsEnv(height=args.height, world=args.world)
    try:
        dyn, head, encoder = load_models(args.dynamics, args.head, args.encoder, int(env.action_space.n))
        if args.out:
            from btnk_env.video.io import check_video_path, write_video

            check_video_path(args.out)
            options = {}
            if args.goal_pose:
                x, z = (float(v) for v in args.goal_pose.split(","))
                options["goal"] = (x, z)
            obs, info = env.reset(seed=args.seed, options=options)
            if args.goal_image:
                from btnk_env.models.image_file import read_image

                goal_frame = read_image(args.goal_image)
            else:
                goal_frame = E.goal_frame(env, info, args.seed)
            from btnk_env.planning.video import plan_video

            video, steps, success = plan_video(env, build_planner(args, dyn, head, dyn), encoder, args.seed,
                                               goal_frame, args.max_steps)
            out = write_video(args.out, video, fps=args.fps)
            print(f"{'reached' if success else 'did not reach'} the goal in {steps} steps; {len(video)} frames -> {out}")
            return 0
        report = evaluate_methods(args, env, methods, dyn, head, encoder)
    finally:
        env.close()
    text = json.dumps(report, indent=2) + "\n"
    if args.json:
        from btnk_env.models.files import atomic_write_text

        atomic_write_text(Path(args.json), text)
    if args.plot:
        from btnk_env.planning.evaluate import plot

        plot(report, args.plot)
    for name, m in report["methods"].items():
        print(f"{name:10s} success {m['success_rate']:.2f}  SPL {m['spl']:.2f}  steps {m['mean_steps_success']:.1f}  "
              f"{m['time_per_step_s'] * 1000:.0f} ms/step")
    return 0


def evaluate_methods(args, env, methods, dyn, head, encoder) -> dict:
    from btnk_env.policies import RandomPolicy, make_policy
    from btnk_env.collection.seeds import parse_seeds
    from btnk_env.planning import evaluate as E
    from btnk_env.training.dynamics_eval import RidgeDynamics, copy_last

    agents = {}
    for m in methods:
        if m == "planner":
            agents[m] = E.planner_agent(build_planner(args, dyn, head, dyn), encoder)
        elif m == "copy-last":
            agents[m] = E.planner_agent(build_planner(args, copy_last, head, dyn), encoder)
        elif m == "ridge":
            from btnk_env.formats.latents import LatentDataset

            ridge = RidgeDynamics(dyn.config.context, dyn.config.num_actions).fit(LatentDataset(args.ridge_data))
            agents[m] = E.planner_agent(build_planner(args, ridge, head, dyn), encoder)
        elif m == "random":
            agents[m] = E.policy_agent(RandomPolicy(int(env.action_space.n)))
        elif m == "ppo":
            agents[m] = E.policy_agent(make_policy("shipped", env, encoder))
        else:
            agents[m] = E.oracle_agent()
    import os
    from datetime import datetime, timezone

    from btnk_env.models.hardware import cpu_name

    when, load = datetime.now(timezone.utc).isoformat(timespec="seconds"), os.getloadavg()[0]
    report = E.evaluate(env, agents, parse_seeds(args.seeds), args.max_steps, progress=True)
    report["when"] = when
    report["machine"] = {"device": f"{cpu_name()} ({args.threads} threads)",
                         "load_average": [round(load, 1), round(os.getloadavg()[0], 1)]}
    report["planner"] = {"solver": args.solver, "samples": args.samples, "iterations": args.iterations,
                         "horizon": args.horizon, "cost": args.cost, "goal_rolls": args.goal_rolls, "threads": args.threads,
                         "dynamics": args.dynamics, "head": args.head, "world": args.world, "height": args.height}
    return report


__all__ = ["METHODS"]

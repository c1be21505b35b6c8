"""``btnk-env train`` / ``python -m btnk_env.training``: train from a YAML config plus dotlist overrides.

    btnk-env train --config configs/finetune_pano_native.yaml data.path=data/pano io.out_dir=runs/pano
    torchrun --nproc_per_node=2 -m btnk_env.training --config configs/finetune_pano_native.yaml train.batch_size=8

Exit status: 0 done, 1 the run failed (non-finite loss), 2 bad config, data, run folder or a full
disk (one line, through :func:`btnk_env.models.errors.explain`; a bug shows its traceback).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from btnk_env.training.config import load_config, to_yaml


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``btnk-env train``."""
    parser.add_argument("--config", "-c", default=None, help="YAML config (a view of btnk_env.training.config.TrainConfig)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="dotlist overrides, e.g. train.batch_size=64 optim.blr=1e-4 data.path=DIR")
    parser.add_argument("--print-config", action="store_true", help="print the merged config and exit")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")


def run(args: argparse.Namespace) -> int:
    """Load the config, train, print where the results are."""
    from btnk_env.training import distributed as D

    main_rank = os.environ.get("RANK", "0") == "0"  # under torchrun, other ranks log warnings only
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO if main_rank else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = load_config(args.config, args.overrides)  # a ConfigError becomes one line (btnk_env.models.errors.explain)
    if args.print_config:
        print(to_yaml(cfg), end="")
        return 0
    from btnk_env.training.trainer import NonFiniteLossError, train

    try:
        result = train(cfg, progress=cfg.io.progress and not args.no_progress and sys.stderr.isatty())
    except NonFiniteLossError as err:
        print(f"btnk-env train: {err}", file=sys.stderr)
        return 1
    finally:
        D.shutdown()
    if result.final_dir is not None:
        m = result.last_metrics
        print(f"trained {result.step} steps; loss {m.get('loss', float('nan')):.4f}; "
              f"{len(result.skipped_images)} unreadable images skipped")
        print(f"checkpoints and metrics: {result.out_dir}; final model: {result.final_dir}")
    return 0

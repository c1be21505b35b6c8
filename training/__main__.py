"""``python -m btnk_env.training`` (and ``torchrun ... -m btnk_env.training``): the ``btnk-env train`` command."""

import argparse
import sys

from btnk_env.models.errors import run_cli
from btnk_env.training.cli import add_arguments, run

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m btnk_env.training", description="train or finetune a bottleneck MAE")
    add_arguments(parser)
    sys.exit(run_cli(run, parser.parse_args(), "python -m btnk_env.training"))

"""``python -m training`` (and ``torchrun ... -m training``): the ``btnk-env train`` command."""

import argparse
import sys

from models.errors import run_cli
from training.cli import add_arguments, run

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m training", description="train or finetune a bottleneck MAE")
    add_arguments(parser)
    sys.exit(run_cli(run, parser.parse_args(), "python -m training"))

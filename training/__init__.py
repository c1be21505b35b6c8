"""Training the bottleneck MAE: configs, datasets, the finetune loop, checkpoints, evaluation.

    from training import load_config, train
    result = train(load_config("configs/finetune_pano_native.yaml", ["data.path=data/pano"]))

Command lines: ``btnk-env train`` / ``python -m training`` / ``torchrun -m training``, and ``btnk-env eval``.
"""

from training.config import ConfigError, TrainConfig, load_config
from training.datasets import DatasetError, build_dataset
from training.metrics import psnr, ssim
from training.trainer import NonFiniteLossError, Trainer, TrainResult, build_model, train

__all__ = [
    "ConfigError", "DatasetError", "NonFiniteLossError", "TrainConfig", "TrainResult", "Trainer",
    "build_dataset", "build_model", "load_config", "psnr", "ssim", "train",
]

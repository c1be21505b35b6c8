"""Training the bottleneck MAE: configs, datasets, the finetune loop, checkpoints, evaluation.

    from btnk_env.training import load_config, train
    result = train(load_config("configs/finetune_pano_native.yaml", ["data.path=data/pano"]))

Command lines: ``btnk-env train`` / ``python -m btnk_env.training`` / ``torchrun -m btnk_env.training``, and ``btnk-env eval``.
"""

from btnk_env.training.config import ConfigError, TrainConfig, load_config
from btnk_env.training.datasets import DatasetError, build_dataset
from btnk_env.training.metrics import psnr, ssim
from btnk_env.training.trainer import NonFiniteLossError, Trainer, TrainResult, build_model, train

__all__ = [
    "ConfigError", "DatasetError", "NonFiniteLossError", "TrainConfig", "TrainResult", "Trainer",
    "build_dataset", "build_model", "load_config", "psnr", "ssim", "train",
]

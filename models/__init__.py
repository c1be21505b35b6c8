"""The bottleneck MAE: an image -> one latent vector -> the image.

>>> from models import BtnkMAE, BtnkMAEConfig
"""

import btnk_env.models.threads  # noqa: F401  (records torch's start-up thread count, see btnk_env.models.threads)
from btnk_env.models.btnk_mae import BtnkMAE, BtnkMAEOutput
from btnk_env.models.checkpoint import CheckpointError
from btnk_env.models.config import PRESETS, BtnkMAEConfig
from btnk_env.models.hub import DownloadError
from btnk_env.models.image import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    denormalize,
    frames_to_tensor,
    normalize,
    resize_frames,
    resize_images,
    tensor_to_frames,
)

__all__ = [
    "BtnkMAE",
    "BtnkMAEConfig",
    "BtnkMAEOutput",
    "CheckpointError",
    "DownloadError",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PRESETS",
    "denormalize",
    "frames_to_tensor",
    "normalize",
    "resize_frames",
    "resize_images",
    "tensor_to_frames",
]

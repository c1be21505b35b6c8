"""The bottleneck MAE: an image -> one latent vector -> the image.

>>> from models import BtnkMAE, BtnkMAEConfig
"""

import models.threads  # noqa: F401  (records torch's start-up thread count, see models.threads)
from models.btnk_mae import BtnkMAE, BtnkMAEOutput
from models.checkpoint import CheckpointError
from models.config import PRESETS, BtnkMAEConfig
from models.hub import DownloadError
from models.image import (
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

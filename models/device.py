"""The project's one device resolver: a user's ``--device`` / ``device=`` -> a ``torch.device``."""

from __future__ import annotations

from typing import Optional, Union

import torch

DeviceLike = Union[str, torch.device]


def resolve_device(device: DeviceLike = "auto", local_rank: Optional[int] = None) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``"cuda"`` -> ``cuda:<local_rank>`` when a
    rank is given; any other name or ``torch.device`` as is.

    Raises:
        ValueError: CUDA asked for but not available (the message names the fix).

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if isinstance(device, str) and device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device={device!r} is not a device: use 'auto', 'cpu', 'cuda' or 'cuda:N' ({err})") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={str(device)!r} but CUDA is not available; use device 'auto' or 'cpu'")
        if device.index is None and local_rank is not None:
            device = torch.device("cuda", local_rank)
    return device

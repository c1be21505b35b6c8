"""The identity of a model: one hash of what it computes with.

A latent dataset records the hash of the encoder that wrote it, a dynamics model the hash of the
encoder whose latents it learned; both are checked against :func:`model_sha256` before any work,
so latents of one encoder are never mixed with, or fed to, another.

Example:
    >>> import torch
    >>> a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    >>> model_sha256(a) == model_sha256(a), model_sha256(a) == model_sha256(b)
    (True, False)
"""

from __future__ import annotations

import hashlib

import torch

__all__ = ["model_sha256"]


def model_sha256(model: torch.nn.Module) -> str:
    """sha256 of the model's parameters and buffers (names, shapes and float32 values), as 64 hex digits.

    The stored dtype does not enter: an fp16 file and its fp32 copy loaded into the same model hash alike.
    """
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()

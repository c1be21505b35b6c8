"""Watching latent rollouts: decode latents to frames, lay them out, write videos.

- :mod:`~btnk_env.video.decode`: latents -> uint8 frames in batches, latent files, interpolation.
- :mod:`~btnk_env.video.layout`: truth / model / error comparison layouts, captions, PSNR.
- :mod:`~btnk_env.video.io`: MP4, GIF and PNG-sequence writers.
- :mod:`~btnk_env.video.cli`: the ``btnk-env video`` command.
"""

from btnk_env.video.decode import (
    LATENT_SUFFIXES,
    check_latents,
    decode_rollout,
    interpolate_latents,
    iter_decoded,
    load_latents,
)

__all__ = ["LATENT_SUFFIXES", "check_latents", "decode_rollout", "interpolate_latents", "iter_decoded", "load_latents"]

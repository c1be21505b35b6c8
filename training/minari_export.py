"""Export latent episodes (:class:`training.latent_format.LatentDataset`) as a Farama Minari dataset.

``minari.load_dataset(dataset_id)`` then gives the episodes with observations
``Box(-inf, inf, (D,), float32)`` (the latents, ``T + 1`` per episode) and the world's actions
(``Discrete(3)``), rewards, terminations and truncations (``T`` each). Minari writes into
``MINARI_DATASETS_PATH`` (default ``~/.minari/datasets``) with its Arrow storage (pyarrow, no
h5py needed). Install with ``pip install "btnk-env[minari]"``.
"""

from __future__ import annotations

import os
import re
import warnings
from typing import Any

import numpy as np

from training.latent_format import LatentDataset

__all__ = ["export_minari", "check_dataset_id", "INSTALL_HINT"]

INSTALL_HINT = 'the Minari export needs minari: pip install "btnk-env[minari]" (or pip install minari)'
_ID = re.compile(r"^([\w.-]+/)?([\w.-]+/)?[\w.-]+-v\d+$")


def _space(text: str) -> Any:
    from gymnasium import spaces

    match = re.fullmatch(r"Discrete\((\d+)\)", str(text))
    if match is None:
        raise ValueError(f"the Minari export handles Discrete action spaces, the episodes have {text}")
    return spaces.Discrete(int(match.group(1)))


def check_dataset_id(dataset_id: str) -> None:
    """Raise (before any work) if ``dataset_id`` is malformed, Minari is missing, or the id is taken."""
    if not _ID.match(dataset_id):
        raise ValueError(f"Minari dataset ids look like 'namespace/env/name-v0', got {dataset_id!r}")
    try:
        from minari.storage.datasets_root_dir import get_dataset_path
    except ImportError as err:
        raise ImportError(INSTALL_HINT) from err
    path = get_dataset_path(dataset_id)
    if path.exists():
        raise ValueError(f"Minari dataset {dataset_id!r} already exists ({path}): choose another id or version, "
                         f"or delete it first (minari delete {dataset_id})")


def export_minari(root: "str | os.PathLike", dataset_id: str, description: str | None = None):
    """Write the latent episodes of ``root`` as Minari dataset ``dataset_id``; returns the ``MinariDataset``.

    Args:
        root: a complete latent dataset of episodes (``btnk-env encode`` of an episode dataset).
        dataset_id: ``namespace/env/name-vN`` (Minari's naming; an existing id is refused by Minari).
        description: stored in the dataset's metadata (default: model and source).
    """
    check_dataset_id(dataset_id)
    try:
        import minari
        from minari.data_collector.episode_buffer import EpisodeBuffer
    except ImportError as err:
        raise ImportError(INSTALL_HINT) from err
    from gymnasium import spaces

    data = LatentDataset(root)
    if data.kind != "episodes":
        raise ValueError(f"{root} holds single panoramas; the Minari export needs episodes")
    meta = data.meta
    buffers = []
    for e in range(data.num_episodes):
        ep = data.episode(e)
        record = data.episodes[e]
        buffers.append(EpisodeBuffer(
            id=e, seed=int(record["seed"]), observations=ep["latents"].astype(np.float32),
            actions=ep["actions"].astype(np.int64), rewards=ep["rewards"].astype(np.float64).tolist(),
            terminations=ep["terminated"].astype(bool).tolist(), truncations=ep["truncated"].astype(bool).tolist(),
            infos={"pose": ep["poses"].astype(np.float32)}))
    observation_space = spaces.Box(-np.inf, np.inf, (data.latent_dim,), np.float32)
    action_space = _space(meta["source"].get("action_space"))
    text = description or (f"bottleneck-MAE latents ({meta['model']}, {meta['img_size'][0]}x{meta['img_size'][1]} input, "
                           f"{meta['precision']}) of {data.num_episodes} episodes from {meta['source']['path']}")
    with warnings.catch_warnings():  # Minari warns about every optional field left unset (author, env spec, ...)
        warnings.filterwarnings("ignore", message=".*(is set to None|no environment spec).*", category=UserWarning)
        return minari.create_dataset_from_buffers(
            dataset_id, buffers, observation_space=observation_space, action_space=action_space,
            algorithm_name=str((meta["source"].get("collection") or {}).get("policy", "unknown")),
            description=text, data_format="arrow", requirements=["btnk-env"])

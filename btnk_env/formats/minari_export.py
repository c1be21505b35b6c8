"""Export latent episodes (:class:`btnk_env.formats.latents.LatentDataset`) as a Farama Minari dataset.

``minari.load_dataset(dataset_id)`` then gives the episodes with observations
``Box(-inf, inf, (D,), float32)`` (the latents, ``T + 1`` per episode), the world's actions
(``Discrete(3)``), rewards, terminations and truncations (``T`` each), and per-observation infos
``pose`` ``(T+1, 4)`` (x, y, z, heading) and ``goal`` ``(T+1, 3)``. ``recover_environment()``
(and ``recover_environment(eval_env=True)``) gives the latent-observation environment the data
came from: the recorded world wrapped with the same encoder
(:mod:`btnk_env.envs.latent_env`; for Habitat: the episodes' scene file, which needs habitat-sim
and that file at the same path). Minari writes into ``MINARI_DATASETS_PATH`` (default
``~/.minari/datasets``) with its Arrow storage (pyarrow, no h5py needed). Install with
``pip install "btnk-env[minari]"``.

Re-running an export is idempotent: the dataset description carries a fingerprint of what was
exported (model weights, input size, precision, dtype, source and its settings); an existing
dataset with the same fingerprint is kept, one with another is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any, Optional

import numpy as np

from btnk_env.formats.latents import LatentDataset

__all__ = ["export_minari", "check_dataset_id", "existing_export", "fingerprint", "INSTALL_HINT"]

INSTALL_HINT = 'the Minari export needs minari: pip install "btnk-env[minari]" (or pip install minari)'
_PART = re.compile(r"^[A-Za-z0-9][\w.-]*$")
_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*-v\d+$")
FINGERPRINT_KEYS = ("model_sha256", "img_size", "precision", "dtype", "num_frames", "source", "source_settings")
"""The latent dataset's ``meta.json`` keys that decide what a Minari export holds."""
_MARK = "btnk-export-fingerprint:"


def _space(text: str) -> Any:
    from gymnasium import spaces

    match = re.fullmatch(r"Discrete\((\d+)\)", str(text))
    if match is None:
        raise ValueError(f"the Minari export handles Discrete action spaces, the episodes have {text}")
    return spaces.Discrete(int(match.group(1)))


def _root() -> Path:
    from minari.storage.datasets_root_dir import get_dataset_path

    return get_dataset_path().resolve()


def check_dataset_id(dataset_id: str) -> Path:
    """The folder of Minari dataset ``dataset_id``; raises (before any work) if the id is
    malformed or would leave the Minari folder (``..``, absolute paths), or Minari is missing."""
    parts = str(dataset_id).split("/")
    if not (1 <= len(parts) <= 3 and all(_PART.match(p) for p in parts) and _NAME.match(parts[-1])):
        raise ValueError(f"Minari dataset ids look like 'namespace/env/name-v0' (letters, digits, '_', '.', '-'; "
                         f"no '..' or absolute paths), got {dataset_id!r}")
    try:
        root = _root()
    except ImportError as err:
        raise ImportError(INSTALL_HINT) from err
    path = (root / dataset_id).resolve()
    if root not in path.parents:
        raise ValueError(f"Minari dataset id {dataset_id!r} points outside the Minari folder {root}")
    return path


def fingerprint(meta: dict) -> str:
    """sha256 over the :data:`FINGERPRINT_KEYS` of a latent dataset's ``meta``."""
    text = json.dumps({k: meta.get(k) for k in FINGERPRINT_KEYS}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def existing_export(dataset_id: str, meta: dict) -> bool:
    """Whether Minari dataset ``dataset_id`` exists and holds the export of ``meta`` (the latent
    dataset's ``meta.json``, as the encode will write it): ``True`` (keep it), ``False`` (absent);
    a ``ValueError`` (one line) if it exists and holds something else."""
    path = check_dataset_id(dataset_id)
    if not path.exists():
        return False
    import minari

    try:
        description = str(minari.load_dataset(dataset_id).storage.metadata.get("description") or "")
    except Exception as err:  # noqa: BLE001 - any unreadable dataset is "another one"
        description = f"(unreadable: {type(err).__name__})"
    if f"{_MARK}{fingerprint(meta)}" in description:
        return True
    raise ValueError(f"Minari dataset {dataset_id!r} already exists ({path}) with other data (model, settings or source); "
                     f"choose another id or version, or delete it first (minari delete {dataset_id})")


def _env_spec(data: LatentDataset, dataset_id: str) -> Optional[Any]:
    from btnk_env.envs.latent_env import world_env_spec

    meta = data.meta
    collection = meta["source"].get("collection") or {}
    scenes = [str(r.get("scene", "")) for r in data.episodes]
    return world_env_spec(collection, scenes, str(meta["model"]), meta["model_sha256"], meta["img_size"],
                          meta["precision"], f"btnk_env/Latent{collection.get('env', 'Env')}-v0")


def export_minari(root: "str | os.PathLike", dataset_id: str, description: str | None = None):
    """Write the latent episodes of ``root`` as Minari dataset ``dataset_id``; returns the ``MinariDataset``.

    Args:
        root: a complete latent dataset of episodes (``btnk-env encode`` of an episode dataset).
        dataset_id: ``namespace/env/name-vN`` (Minari's naming).
        description: stored in the dataset's metadata (default: model and source), followed by
            the export's fingerprint.

    Returns:
        the ``MinariDataset``, or ``None`` when ``dataset_id`` already holds this export (kept).

    Raises:
        ValueError: a malformed id, or an existing dataset of other data (one line).
    """
    data = LatentDataset(root)
    if existing_export(dataset_id, data.meta):
        return None
    try:
        import minari
        from minari.data_collector.episode_buffer import EpisodeBuffer
    except ImportError as err:
        raise ImportError(INSTALL_HINT) from err
    from gymnasium import spaces

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
            infos={"pose": ep["poses"].astype(np.float32),
                   "goal": np.repeat(ep["goal"].astype(np.float32)[None], len(ep["poses"]), axis=0)}))
    observation_space = spaces.Box(-np.inf, np.inf, (data.latent_dim,), np.float32)
    action_space = _space(meta["source"].get("action_space"))
    text = description or (f"bottleneck-MAE latents ({meta['model']}, {meta['img_size'][0]}x{meta['img_size'][1]} input, "
                           f"{meta['precision']}) of {data.num_episodes} episodes from {meta['source']['path']}")
    text = f"{text} [{_MARK}{fingerprint(meta)}]"
    spec = _env_spec(data, dataset_id)
    with warnings.catch_warnings():  # Minari warns about every optional field left unset (author, env spec, ...)
        warnings.filterwarnings("ignore", message=".*(is set to None|no environment spec).*", category=UserWarning)
        return minari.create_dataset_from_buffers(
            dataset_id, buffers, env=spec, eval_env=spec, observation_space=observation_space, action_space=action_space,
            algorithm_name=str((meta["source"].get("collection") or {}).get("policy", "unknown")),
            description=text, data_format="arrow", requirements=["btnk-env"])

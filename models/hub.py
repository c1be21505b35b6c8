"""Released checkpoints: names, the Hugging Face Hub download, and weights shipped in the package.

Downloads go through ``huggingface_hub`` into its cache (``HF_HOME``); the file's sha256, as the
Hub reports it for large (LFS) files, is checked before the path is returned, and a file that
fails the check is deleted, so a partial or corrupt download never loads as a checkpoint.
``huggingface_hub`` itself writes to an ``.incomplete`` file and renames it only when complete.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Dict

from btnk_env.models.errors import BtnkEnvError

logger = logging.getLogger(__name__)

HUB_REPO = "zhaozewang56/btnk_mae"

#: Release name -> file in :data:`HUB_REPO`. ``.pth`` suffixes are accepted too.
RELEASES: Dict[str, str] = {
    "btnk_mae_vit_base_224": "btnk_mae_vit_base_224.pth",
    "btnk_mae_vit_large_relu_224": "btnk_mae_vit_large_relu_224.pth",
}

#: Models shipped inside this package (no network needed): name -> folder in ``models/weights``
#: (``config.json``, ``model.safetensors`` and a ``MODEL_CARD.md`` on how it was made).
BUNDLED: Dict[str, str] = {"panorama-rooms-small": "panorama_rooms_small"}

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


class DownloadError(BtnkEnvError, RuntimeError):
    """A release could not be downloaded or verified; the message says what to do instead."""


def release_filename(name: str) -> str | None:
    """The Hub file of a release name (``"btnk_mae_vit_base_224"`` or with ``.pth``), else None."""
    stem = name[:-4] if name.endswith(".pth") else name
    return RELEASES.get(stem)


def bundled_path(name: str) -> Path | None:
    """Folder of a model shipped with the package, if ``name`` is one and its files are present."""
    folder = BUNDLED.get(name)
    if folder is None:
        return None
    path = WEIGHTS_DIR / folder
    return path if path.is_dir() else None


def sha256_file(path: "str | os.PathLike[str]", chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def download_release(name: str, cache_dir: "str | os.PathLike[str] | None" = None) -> Path:
    """Download (or find in the cache) a released checkpoint and verify its sha256.

    Raises:
        KeyError: ``name`` is not a known release.
        DownloadError: offline / unreachable Hub with no cached copy, or a hash mismatch.
    """
    filename = release_filename(name)
    if filename is None:
        raise KeyError(f"unknown release {name!r}; known: {sorted(RELEASES)}")
    try:
        import huggingface_hub as hf
    except ImportError as err:  # pragma: no cover - a dependency
        raise DownloadError("downloading releases needs huggingface_hub: pip install huggingface_hub") from err

    manual = (
        f"Download https://huggingface.co/{HUB_REPO}/resolve/main/{filename} on a machine with network "
        f"access (note: '/resolve/', not '/blob/', which returns an HTML page) and load it by path: "
        f"BtnkMAE.from_pretrained('/path/to/{filename}')."
    )
    try:
        meta = hf.get_hf_file_metadata(hf.hf_hub_url(HUB_REPO, filename))
    except Exception as err:  # offline, DNS failure, HF_HUB_OFFLINE=1, HTTP errors
        try:
            path = Path(hf.hf_hub_download(HUB_REPO, filename, cache_dir=cache_dir, local_files_only=True))
        except Exception:
            raise DownloadError(
                f"cannot reach the Hugging Face Hub to download {filename!r} "
                f"({type(err).__name__}: {str(err)[:160]}) and it is not in the local cache. {manual}"
            ) from None
        logger.info("Hub unreachable; using the cached %s", path)
        return path

    path = Path(hf.hf_hub_download(HUB_REPO, filename, cache_dir=cache_dir))
    expected = (meta.etag or "").strip('"').lower()
    if len(expected) == 64 and all(c in "0123456789abcdef" for c in expected):
        actual = sha256_file(path)
        if actual != expected:
            real = path.resolve()
            for p in {path, real}:
                try:
                    os.remove(p)
                except OSError:
                    pass
            raise DownloadError(
                f"{filename}: sha256 {actual} does not match the Hub's {expected}; the corrupt file "
                f"was deleted. Run again to download it anew. {manual}"
            )
    else:
        logger.warning("the Hub reported no sha256 for %s; size-checked download only", filename)
    return path

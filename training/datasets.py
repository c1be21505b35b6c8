"""Training images: folders, panorama datasets, shard sets, episode datasets, ``ImageFolder`` layouts, Hugging Face datasets.

Every dataset yields ``(image, key)`` for an index ``(i, aug_seed)`` from
:class:`btnk_env.training.sampler.EpochBatchSampler`: ``image`` is ``(3, H, W)`` float32,
ImageNet-normalized, or ``None`` when the file cannot be decoded (the original replaces such
an image by a neighbour or, in other code paths, a black image; here it is dropped from the
batch by :func:`collate_skip` and counted). Augmentation draws from a generator seeded by
``aug_seed``, so the data a step sees depends only on ``(seed, epoch, position)``: the same
in one process or many, and after a resume. A shard set (``index.json`` + tar shards, see
:mod:`btnk_env.formats`) is streamed by :class:`btnk_env.training.shard_stream.ShardStream`; so is
an episode shard set (every sample is a frame). An episode folder gives the frames of its complete
episodes (:class:`btnk_env.formats.episodes.EpisodeFolder`).

Example:
    >>> import tempfile, numpy as np
    >>> from PIL import Image
    >>> root = tempfile.mkdtemp()
    >>> Image.fromarray(np.zeros((32, 64, 3), np.uint8)).save(f"{root}/a.png")
    >>> ds = build_dataset(root, img_size=(32, 64), transform="resize")
    >>> image, key = ds[(0, 123)]
    >>> len(ds), tuple(image.shape), key
    (1, (3, 32, 64), 'a.png')
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from btnk_env import formats
from btnk_env.models.errors import BtnkEnvError
from btnk_env.models.image import normalize
from btnk_env.models.image_file import read_image

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
PANORAMA_CONFIG = formats.CONFIG
MANIFEST = formats.MANIFEST


class DatasetError(BtnkEnvError):
    """The dataset is missing, empty or malformed; the message says what was looked for."""


# ---------------------------------------------------------------------------- transforms
class ImageTransform:
    """uint8 ``(H, W, 3)`` pixels -> ``(3, h, w)`` float32 ImageNet-normalized, at ``size``.

    Args:
        size: ``(h, w)`` output size.
        mode: ``"random_resized_crop"`` (MAE's augmentation: a crop of ``scale`` of the area and
            an aspect ratio within 3/4..4/3 of the output's, resized bicubically) or ``"resize"``
            (the whole image, bicubic; the original panorama recipe squashes 1024x512 to 512x512).
        scale: area range of the crop.
        hflip: flip horizontally with probability 1/2.
        pano_roll: circularly shift by a random number of columns (a yaw rotation).
    """

    def __init__(self, size: Tuple[int, int], mode: str = "resize", scale: Sequence[float] = (0.2, 1.0),
                 hflip: bool = False, pano_roll: bool = False) -> None:
        if mode not in ("random_resized_crop", "resize"):
            raise ValueError(f"mode must be 'random_resized_crop' or 'resize', got {mode!r}")
        self.size, self.mode, self.scale = tuple(size), mode, tuple(scale)
        self.hflip, self.pano_roll = hflip, pano_roll

    def _crop_box(self, h: int, w: int, g: torch.Generator) -> Tuple[int, int, int, int]:
        area = h * w
        target_ratio = self.size[1] / self.size[0]
        log_lo, log_hi = math.log(3 / 4 * target_ratio), math.log(4 / 3 * target_ratio)
        for _ in range(10):
            u = torch.rand(2, generator=g, dtype=torch.float64).tolist()
            target_area = area * (self.scale[0] + (self.scale[1] - self.scale[0]) * u[0])
            ratio = math.exp(log_lo + (log_hi - log_lo) * u[1])
            cw, ch = round(math.sqrt(target_area * ratio)), round(math.sqrt(target_area / ratio))
            if 0 < cw <= w and 0 < ch <= h:
                top = int(torch.randint(0, h - ch + 1, (1,), generator=g))
                left = int(torch.randint(0, w - cw + 1, (1,), generator=g))
                return top, left, ch, cw
        ch, cw = (h, min(w, round(h * target_ratio))) if w / h > target_ratio else (min(h, round(w / target_ratio)), w)
        return (h - ch) // 2, (w - cw) // 2, ch, cw  # centre crop at the target ratio

    def __call__(self, pixels: np.ndarray, aug_seed: int) -> torch.Tensor:
        """``pixels: (H, W, 3)`` uint8 -> ``(3, h, w)`` float32, ImageNet-normalized."""
        g = torch.Generator().manual_seed(int(aug_seed))
        x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1).float().div_(255.0)  # (3, H, W)
        if self.mode == "random_resized_crop":
            top, left, ch, cw = self._crop_box(x.shape[1], x.shape[2], g)
            x = x[:, top:top + ch, left:left + cw]
        if tuple(x.shape[1:]) != self.size:
            x = F.interpolate(x[None], size=self.size, mode="bicubic", antialias=True, align_corners=False)[0]
            x = x.clamp_(0.0, 1.0)
        if self.pano_roll:
            x = torch.roll(x, int(torch.randint(0, x.shape[2], (1,), generator=g)), dims=2)
        if self.hflip and bool(torch.rand(1, generator=g) < 0.5):
            x = x.flip(2)
        return normalize(x[None])[0]


def decode_image(data_or_path: Any) -> np.ndarray:
    """A path, bytes or PIL image -> ``(H, W, 3)`` uint8 RGB, converted faithfully
    (:func:`btnk_env.models.image_file.read_image`: 16-bit grayscale is scaled, not saturated; float
    images are refused). Raises on undecodable data; the datasets skip and count such images."""
    return read_image(data_or_path)


# ---------------------------------------------------------------------------- datasets
class ImageListDataset(Dataset):
    """Images from a list of files (a folder, a panorama dataset, an ``ImageFolder`` root).

    Args:
        root: the folder; keys are paths relative to it.
        files: image paths.
        transform: an :class:`ImageTransform`.
        kind: ``"folder"`` or ``"panorama"`` (informational).
    """

    def __init__(self, root: Path, files: Sequence[Path], transform: ImageTransform, kind: str = "folder") -> None:
        self.root, self.files, self.transform, self.kind = Path(root), list(files), transform, kind

    def __len__(self) -> int:
        return len(self.files)

    def key(self, i: int) -> str:
        try:
            return self.files[i].relative_to(self.root).as_posix()
        except ValueError:
            return str(self.files[i])

    def __getitem__(self, index: Tuple[int, int]) -> Tuple[Optional[torch.Tensor], str]:
        i, aug_seed = index if isinstance(index, tuple) else (int(index), 0)
        try:
            pixels = decode_image(self.files[i])
        except Exception as err:  # noqa: BLE001 - any decoder failure means "corrupt"
            logger.warning("skipping unreadable image %s: %s", self.files[i], err)
            return None, self.key(i)
        return self.transform(pixels, aug_seed), self.key(i)


class HFImageDataset(Dataset):
    """A Hugging Face ``datasets`` split with an ``image`` column (ImageNet-1k and the like)."""

    def __init__(self, name: str, split: str, transform: ImageTransform) -> None:
        try:
            import datasets as hf_datasets
        except ImportError:
            raise DatasetError(f"data.path=hf:{name} needs the Hugging Face 'datasets' package: pip install datasets") from None
        try:
            self.data = hf_datasets.load_dataset(name, split=split)
        except Exception as err:  # noqa: BLE001 - network/auth/name errors: report them clearly
            raise DatasetError(f"cannot load Hugging Face dataset {name!r} split {split!r}: {err}") from None
        if "image" not in self.data.column_names:
            raise DatasetError(f"Hugging Face dataset {name!r} has no 'image' column (columns: {self.data.column_names})")
        if len(self.data) == 0:
            raise DatasetError(f"Hugging Face dataset {name!r} split {split!r} is empty")
        self.name, self.transform, self.kind = name, transform, "hf"

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: Tuple[int, int]) -> Tuple[Optional[torch.Tensor], str]:
        i, aug_seed = index if isinstance(index, tuple) else (int(index), 0)
        try:
            pixels = decode_image(self.data[i]["image"])
        except Exception as err:  # noqa: BLE001
            logger.warning("skipping unreadable image %s[%d]: %s", self.name, i, err)
            return None, f"{self.name}[{i}]"
        return self.transform(pixels, aug_seed), f"{self.name}[{i}]"


def collate_skip(items: List[Tuple[Optional[torch.Tensor], str]]) -> Tuple[torch.Tensor, List[str]]:
    """Batch the readable images; return ``(images (B', 3, H, W) float32, keys of skipped items)``."""
    good = [img for img, _ in items if img is not None]
    skipped = [key for img, key in items if img is None]
    if not good:
        return torch.empty(0), skipped
    return torch.stack(good), skipped


# ---------------------------------------------------------------------------- discovery
def find_images(root: Path) -> List[Path]:
    """All PNG/JPEG files under ``root``, recursively, sorted."""
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def read_panorama_config(root: Path) -> Optional[dict]:
    """``dataset_config.json`` of a folder, or ``None`` if absent. Raises on invalid JSON."""
    try:
        return formats.read_config(root)
    except formats.DatasetFormatError as err:
        raise DatasetError(str(err)) from None


def panorama_files(root: Path) -> List[Path]:
    """Frames of a panorama dataset: ``manifest.jsonl`` order if present (a ``file`` per record,
    relative to the folder or to ``images/``; the manifest rules of :mod:`btnk_env.formats`),
    else every image under the folder.

    A damaged manifest line or a record whose file is missing costs itself alone: it is skipped,
    and one warning names and counts them (:meth:`btnk_env.formats.Manifest.report`). A folder a
    collector is still writing is read as far as it is complete, with a warning.
    """
    scan = formats.scan_manifest(root)
    if not scan.records and not scan.path.is_file():
        return find_images(root)
    files, missing = [], []
    for i, rec in scan.records.items():
        for candidate in (root / rec["file"], root / formats.IMAGES_DIR / rec["file"]):
            if candidate.is_file():
                files.append(candidate)
                break
        else:
            missing.append(f"frame {i} ({rec['file']}): no such file")
    scan.report(missing)
    formats.warn_if_being_written(root, "frames")
    return files


def build_dataset(path: str, img_size: Tuple[int, int], kind: str = "auto", split: str = "train",
                  transform: str = "auto", crop_scale: Sequence[float] = (0.2, 1.0), hflip: Optional[bool] = None,
                  pano_roll: bool = False, max_images: Optional[int] = None) -> Dataset:
    """The dataset ``path`` names, with its transform to ``img_size`` ``(H, W)``.

    Raises:
        DatasetError: the folder does not exist or holds no images (the message says where it looked).
    """
    make: Callable[[str], ImageTransform] = lambda mode: ImageTransform(  # noqa: E731
        img_size, mode, crop_scale, hflip=(mode == "random_resized_crop") if hflip is None else hflip, pano_roll=pano_roll
    )
    if kind == "hf" or path.startswith("hf:"):
        return HFImageDataset(path[3:] if path.startswith("hf:") else path, split,
                              make("random_resized_crop" if transform == "auto" else transform))
    if kind == "shards" or (kind in ("auto", "episodes") and formats.is_shard_spec(path)):
        from btnk_env.training.shard_stream import open_shard_stream

        return open_shard_stream(path, make("resize" if transform == "auto" else transform), max_images)
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root} (data.path); give an image folder, a panorama "
                           f"dataset or shard set written by 'btnk-env collect', or hf:<name>")
    pano_cfg = read_panorama_config(root)
    if kind == "episodes" or (kind == "auto" and (pano_cfg or {}).get("dataset_type") == "episodes"):
        return _episode_frames(root, make("resize" if transform == "auto" else transform), max_images)
    is_pano = kind == "panorama" or (kind == "auto" and pano_cfg is not None and pano_cfg.get("dataset_type") == "panorama")
    if is_pano:
        files = panorama_files(root)
    else:
        if (root / split).is_dir() and kind == "auto" and pano_cfg is None:
            root = root / split  # ImageFolder roots such as tiny-imagenet-200/{train,val}
        files = find_images(root)
    if max_images is not None:
        files = files[:max_images]
    if not files:
        raise DatasetError(f"no PNG/JPEG images found under {root}" + (f" (or in its {MANIFEST})" if is_pano else ""))
    mode = ("resize" if is_pano else "random_resized_crop") if transform == "auto" else transform
    logger.info("dataset %s: %d images (%s, %s to %dx%d)", root, len(files), "panorama" if is_pano else "folder",
                mode, *img_size)
    return ImageListDataset(root, files, make(mode), kind="panorama" if is_pano else "folder")


def _episode_frames(root: Path, transform: ImageTransform, max_images: Optional[int]) -> "ImageListDataset":
    """The frames of the complete episodes of an episode folder (damaged records skipped and reported)."""
    from btnk_env.formats.episodes import EpisodeFolder

    try:
        episodes = EpisodeFolder(root)
    except (ValueError, formats.DatasetFormatError) as err:
        raise DatasetError(str(err)) from None
    files = [p for i in range(len(episodes)) for p in episodes.frame_files(i)][:max_images]
    logger.info("dataset %s: %d frames of %d episodes", root, len(files), len(episodes))
    return ImageListDataset(root, files, transform, kind="episodes")


def dataset_from_config(data_cfg: Any, img_size: Tuple[int, int]) -> Dataset:
    """:func:`build_dataset` from a :class:`btnk_env.training.config.DataConfig` (``kind: render``: :mod:`btnk_env.training.online_data`)."""
    if data_cfg.kind == "render":
        from btnk_env.training.online_data import RenderedPanoramaDataset, parse_layout_seeds

        if data_cfg.max_images is None:
            raise DatasetError("data.kind=render needs data.max_images (panoramas per epoch), e.g. data.max_images=6400")
        return RenderedPanoramaDataset(img_size, parse_layout_seeds(data_cfg.path), data_cfg.max_images,
                                       hflip=bool(data_cfg.hflip), pano_roll=data_cfg.pano_roll)
    return build_dataset(data_cfg.path, img_size, kind=data_cfg.kind, split=data_cfg.split, transform=data_cfg.transform,
                         crop_scale=data_cfg.crop_scale, hflip=data_cfg.hflip, pano_roll=data_cfg.pano_roll,
                         max_images=data_cfg.max_images)

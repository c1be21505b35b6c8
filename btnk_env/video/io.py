"""Write frames as videos through imageio: MP4 (H.264), GIF, or a folder of PNGs.

The kind follows the path: ``*.mp4`` -> H.264 MP4 via imageio-ffmpeg, ``*.gif`` -> animated GIF
via Pillow, no suffix -> a folder of ``frame_00000.png``, ... Every writer writes through
:mod:`btnk_env.models.files`: to a temporary file (folder) beside the target, renamed into place when
complete, so a crash never leaves a truncated video under the final name. A PNG folder is marked
as written by btnk-env; an existing folder is replaced only if it is empty or such a PNG folder,
never a folder of the user's files. :func:`check_video_path` validates a path before any
decoding work.

Codec-safe sizes: H.264 in ``yuv420p`` needs even sizes and players prefer multiples of 16;
frames are *padded* (centred, with a black border) up to a multiple of ``block``, never resized,
so the picture is not distorted. :func:`codec_safe_size` says the written size.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterable, Tuple, Union

import numpy as np

from btnk_env.models.files import atomic_dir, atomic_path, check_replaceable_dir

__all__ = [
    "VIDEO_SUFFIXES",
    "check_video_path",
    "codec_safe_size",
    "pad_frame",
    "write_video",
    "write_mp4",
    "write_gif",
    "write_png_sequence",
]

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
Frames = Union[np.ndarray, Iterable[np.ndarray]]

VIDEO_SUFFIXES = (".mp4", ".gif", "")
"""``.mp4``, ``.gif``, or no suffix for a folder of PNG frames."""
PNG_KIND = "png-sequence"
"""Owner kind (:mod:`btnk_env.models.files`) of the PNG-frame folders written here."""
_PNG_FIX = "give a new folder name, or a .mp4/.gif file name"


def check_video_path(path: PathLike, overwrite: bool = True) -> Path:
    """Check, before any work, that a video can be written at ``path``; returns it as a Path.

    Raises:
        ValueError: unknown suffix.
        FileExistsError: the target exists and ``overwrite`` is False (or a PNG folder that is
            not a folder).
        btnk_env.models.files.NotOursError: a PNG-frame folder holds files btnk-env did not write.
        PermissionError / NotADirectoryError: the parent folder is not a writable folder.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise ValueError(
            f"cannot write {path}: use a .mp4 or .gif file, or a folder name without suffix for PNG frames"
        )
    parent = path.parent
    existing = parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent  # the folder is created when writing
    if not existing.is_dir():
        raise NotADirectoryError(f"cannot write {path}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write {path}: the folder {existing} is not writable; choose another output path")
    if path.exists():
        if not overwrite:
            raise FileExistsError(f"{path} exists; remove it or allow overwriting")
        if suffix == "" and not path.is_dir():
            raise FileExistsError(f"{path} exists and is not a folder; a PNG sequence needs a folder")
        if suffix == "":
            check_replaceable_dir(path, PNG_KIND, _PNG_FIX)
        if suffix != "" and path.is_dir():
            raise IsADirectoryError(f"{path} is a folder; choose a file name")
    return path


def codec_safe_size(height: int, width: int, block: int = 16) -> Tuple[int, int]:
    """``(H, W)`` rounded up to multiples of ``block`` (the size :func:`write_mp4` writes)."""
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    return -(-height // block) * block, -(-width // block) * block


def pad_frame(frame: np.ndarray, size: Tuple[int, int], value: int = 0) -> np.ndarray:
    """Pad ``(H, W, 3)`` uint8 to ``size = (H', W')``, the picture centred (``H' >= H``, ``W' >= W``).

    The picture starts at the even row and column nearest the centre (``(H' - H) // 2`` rounded
    down to even), so that the 2x2 chroma blocks of yuv420p do not mix it with the border.
    """
    h, w = frame.shape[:2]
    if (h, w) == tuple(size):
        return frame
    top, left = (size[0] - h) // 4 * 2, (size[1] - w) // 4 * 2
    out = np.full((size[0], size[1], 3), value, np.uint8)
    out[top : top + h, left : left + w] = frame
    return out


def _check_frame(frame: np.ndarray, index: int, shape: Tuple[int, ...] | None) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frame {index} must be (H, W, 3) uint8, got shape {frame.shape} dtype {frame.dtype}")
    if shape is not None and frame.shape != shape:
        raise ValueError(f"frame {index} is {frame.shape} but frame 0 is {shape}: all frames must have one size")
    return frame


def _frames(frames: Frames) -> Iterable[np.ndarray]:
    """Validated ``(H, W, 3)`` uint8 frames of one size, lazily."""
    if isinstance(frames, np.ndarray) and (frames.ndim != 4 or frames.shape[0] == 0):
        raise ValueError(f"frames must be (T, H, W, 3) uint8 with T >= 1, got shape {frames.shape}")
    shape = None
    for i, frame in enumerate(frames):
        frame = _check_frame(frame, i, shape)
        shape = frame.shape
        yield frame
    if shape is None:
        raise ValueError("no frames to write: a video needs at least one frame")


def _check_fps(fps: float) -> float:
    if not isinstance(fps, (int, float)) or not 0 < fps <= 240:
        raise ValueError(f"fps must be a number in (0, 240], got {fps!r}")
    return float(fps)


def write_mp4(path: PathLike, frames: Frames, fps: float = 10, *, crf: int = 18, block: int = 16) -> Path:
    """Write an H.264 MP4 (yuv420p, plays everywhere) via imageio-ffmpeg.

    Args:
        path: ``*.mp4`` target.
        frames: ``(T, H, W, 3)`` uint8, or an iterable of ``(H, W, 3)`` uint8 (streamed).
        fps: frames per second.
        crf: x264 constant rate factor: 0 lossless (not in every player), 18 visually
            lossless (default), 23 x264's default, 51 worst.
        block: frames are padded (centred, black) to multiples of this; >= 2 (yuv420p).

    Returns:
        ``path``. The video is :func:`codec_safe_size` of the frames, ``T`` frames long.
    """
    import imageio.v2 as imageio

    path, fps = Path(path), _check_fps(fps)
    if block < 2 or block % 2:
        raise ValueError(f"block must be an even number >= 2 for yuv420p, got {block}")
    with atomic_path(path, ".mp4") as tmp:
        writer = imageio.get_writer(
            tmp, format="FFMPEG", mode="I", fps=fps, codec="libx264", pixelformat="yuv420p", quality=None,
            macro_block_size=1, ffmpeg_params=["-crf", str(int(crf)), "-preset", "medium"], ffmpeg_log_level="error",
        )  # fmt: skip
        try:
            size = None
            for frame in _frames(frames):
                size = size or codec_safe_size(frame.shape[0], frame.shape[1], block)
                writer.append_data(pad_frame(frame, size))
        finally:
            writer.close()
    logger.info("wrote %s", path)
    return path


def write_gif(path: PathLike, frames: Frames, fps: float = 10, *, loop: int = 0) -> Path:
    """Write an animated GIF via imageio's Pillow plugin.

    Each frame is quantized to its own 256-colour palette. GIF stores frame durations in
    hundredths of a second, so ``fps`` is rounded to ``100 / round(100 / fps)``; many viewers
    slow down frames shorter than 20 ms (``fps > 50``). Pillow merges consecutive identical
    frames into one longer frame (the timing is kept, the frame count drops).

    Args:
        path: ``*.gif`` target.
        frames: ``(T, H, W, 3)`` uint8 or an iterable of ``(H, W, 3)`` uint8.
        fps: frames per second.
        loop: number of repeats, 0 = forever.
    """
    import imageio.v3 as iio

    path, fps = Path(path), _check_fps(fps)
    if fps > 50:
        logger.warning("GIF at %.0f fps: many viewers play frames shorter than 20 ms slower", fps)
    stack = np.stack(list(_frames(frames)))  # (T, H, W, 3)
    with atomic_path(path, ".gif") as tmp:
        iio.imwrite(tmp, stack, extension=".gif", plugin="pillow", duration=1000.0 / fps, loop=loop)
    logger.info("wrote %s", path)
    return path


def write_png_sequence(folder: PathLike, frames: Frames, pattern: str = "frame_{:05d}.png") -> Path:
    """Write frames as ``folder/frame_00000.png``, ... (lossless).

    The frames go into a temporary folder that replaces ``folder`` when all are written. The
    folder holds a marker (:data:`btnk_env.models.files.OWNER_MARKER`); an existing ``folder`` is replaced
    only if it is empty or a PNG folder written here, never a folder of the user's files
    (:class:`btnk_env.models.files.NotOursError`, before any frame is written).
    """
    import imageio.v3 as iio

    folder = Path(folder)
    with atomic_dir(folder, PNG_KIND, _PNG_FIX) as tmp:
        for i, frame in enumerate(_frames(frames)):
            iio.imwrite(tmp / pattern.format(i), frame, extension=".png")
    logger.info("wrote %s", folder)
    return folder


def write_video(path: PathLike, frames: Frames, fps: float = 10, **kwargs) -> Path:
    """Write frames by the path's suffix: ``.mp4`` (:func:`write_mp4`), ``.gif``
    (:func:`write_gif`) or none (:func:`write_png_sequence`, ``fps`` unused).

    Args:
        path: the target (checked with :func:`check_video_path` first).
        frames: ``(T, H, W, 3)`` uint8, or an iterable of ``(H, W, 3)`` uint8 frames.
        fps: frames per second.
        **kwargs: passed to the writer (``crf``, ``block``, ``loop``, ``pattern``).

    Example:
        >>> import tempfile, imageio.v3 as iio
        >>> frames = np.arange(3, dtype=np.uint8).repeat(192).reshape(3, 8, 8, 3) * 60  # (T, H, W, 3)
        >>> out = write_video(Path(tempfile.mkdtemp()) / "clip.gif", frames)
        >>> iio.imread(out, index=None).shape
        (3, 8, 8, 3)
    """
    path = check_video_path(path)
    suffix = path.suffix.lower()
    if suffix == ".mp4":
        return write_mp4(path, frames, fps, **kwargs)
    if suffix == ".gif":
        return write_gif(path, frames, fps, **kwargs)
    return write_png_sequence(path, frames, **kwargs)

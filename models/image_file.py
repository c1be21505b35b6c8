"""Decoding an image file into ``(H, W, 3)`` uint8 RGB, faithfully or not at all.

Pillow's ``convert("RGB")`` is right for 8-bit images but *saturates* 16- and 32-bit grayscale (a
16-bit PNG of a normal scene becomes almost all white) and has no meaning for float images. One
function, :func:`read_image`, decodes every image the package reads (training datasets, the video
command's inputs, the examples):

=====================  ===========================================================
mode                   result
=====================  ===========================================================
``RGB``, ``L``, ``1``  as Pillow converts them (exact)
``RGBA``, ``LA``,      the colour channels; alpha is dropped (the colour under a
``P``, ``PA``          transparent pixel is kept, as ``convert("RGB")`` does)
``CMYK``, ``YCbCr``,   Pillow's conversion
``RGBX``, ``HSV``
``I;16*`` (16-bit)     scaled to 8 bits: ``round(v * 255 / 65535)``
``I`` (32-bit int)     scaled as 16-bit if every value is in 0..65535, else refused
``F`` (float)          refused: it has no fixed range (convert it to 8 bits yourself)
anything else          refused
=====================  ===========================================================

A refusal or an undecodable file raises :class:`ImageDecodeError`; datasets skip and count such
images. Only the first frame of a multi-frame file is read.

Bounds: an image whose header declares more than :data:`MAX_IMAGE_PIXELS` pixels (``H * W``) is
refused before any pixel is decoded (a 20 KB 1-bit PNG can declare 13000x13000). The default,
``16384 * 8192`` (a 16K equirectangular panorama, 384 MiB as RGB), is set with the environment
variable ``BTNK_MAX_IMAGE_PIXELS``.

Example:
    >>> import io, numpy as np
    >>> from PIL import Image
    >>> buf = io.BytesIO(); Image.fromarray(np.full((2, 2), 65535, np.uint16)).save(buf, format="PNG")
    >>> read_image(buf.getvalue())[0, 0].tolist()
    [255, 255, 255]
"""

from __future__ import annotations

import io
import os
from typing import Any, Union

import numpy as np

from btnk_env.models.errors import BtnkEnvError

__all__ = ["ImageDecodeError", "read_image", "to_rgb8", "MAX_IMAGE_PIXELS", "check_pixels"]

MAX_IMAGE_PIXELS = int(os.environ.get("BTNK_MAX_IMAGE_PIXELS", 16384 * 8192))
"""Largest ``H * W`` decoded (see the module docstring); ``BTNK_MAX_IMAGE_PIXELS`` sets it."""

ImageSource = Union[str, "os.PathLike[str]", bytes, Any]
_AS_PILLOW_CONVERTS = {"RGB", "L", "1", "RGBA", "LA", "P", "PA", "CMYK", "YCbCr", "RGBX", "HSV", "RGBa", "La"}


class ImageDecodeError(BtnkEnvError):
    """An image cannot be decoded faithfully to 8-bit RGB; the message names the file and its mode."""


def _scale16(values: np.ndarray) -> np.ndarray:
    """``uint16``-range integers -> uint8, ``round(v * 255 / 65535)`` exactly."""
    return ((values.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def to_rgb8(image: Any, name: str = "image") -> np.ndarray:
    """A PIL image -> ``(H, W, 3)`` uint8 RGB (see the table in this module's docstring).

    Raises:
        ImageDecodeError: a float (``F``) image, 32-bit values beyond 16 bits, or an unknown mode.
    """
    mode = image.mode
    if mode in _AS_PILLOW_CONVERTS:
        if mode in ("P", "PA") and "transparency" in image.info:
            image = image.convert("RGBA")  # Pillow asks for this step for palette transparency
        return np.array(image.convert("RGB"), dtype=np.uint8)
    if mode.startswith("I;16") or mode == "I":
        values = np.asarray(image)
        if values.ndim != 2:
            raise ImageDecodeError(f"{name}: {mode} image of shape {values.shape}; expected one channel")
        if mode == "I" and values.size and (values.min() < 0 or values.max() > 65535):
            raise ImageDecodeError(
                f"{name}: 32-bit integer image with values {values.min()}..{values.max()}, beyond 16 bits; "
                f"convert it to 8-bit RGB first"
            )
        gray = _scale16(values.astype(np.int64).clip(0, 65535))
        return np.repeat(gray[..., None], 3, axis=-1)
    if mode == "F":
        raise ImageDecodeError(f"{name}: a float ('F') image has no fixed range; convert it to 8-bit RGB first")
    raise ImageDecodeError(f"{name}: image mode {mode!r} is not supported; convert it to 8-bit RGB first")


def check_pixels(width: int, height: int, name: str = "image") -> None:
    """Raise :class:`ImageDecodeError` if a ``width x height`` image exceeds :data:`MAX_IMAGE_PIXELS`."""
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageDecodeError(f"{name}: {width}x{height} = {width * height} pixels, over the limit of "
                               f"{MAX_IMAGE_PIXELS} (set BTNK_MAX_IMAGE_PIXELS to read larger images)")


def read_image(source: ImageSource) -> np.ndarray:
    """A path, bytes, a binary file object or a PIL image -> ``(H, W, 3)`` uint8 RGB.

    The file is decoded fully here (a truncated file fails now, not later).

    Raises:
        ImageDecodeError: not an image, truncated, or a mode that cannot be converted faithfully.
        FileNotFoundError / PermissionError: the path cannot be opened.
    """
    from PIL import Image, UnidentifiedImageError

    if isinstance(source, Image.Image):
        return to_rgb8(source)
    name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else "image data"
    fh = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    try:
        with Image.open(fh) as im:
            check_pixels(im.width, im.height, str(name))  # from the header, before any pixel is decoded
            im.load()
            return to_rgb8(im, str(name))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        if isinstance(err, (FileNotFoundError, PermissionError, IsADirectoryError, ImageDecodeError)):
            raise
        raise ImageDecodeError(f"{name}: cannot decode the image ({type(err).__name__}: {str(err)[:160]})") from None


def save_png(path: "str | os.PathLike", pixels: np.ndarray) -> "os.PathLike":
    """Write an ``(H, W, 3)`` uint8 image as a PNG, atomically (:func:`btnk_env.models.files.atomic_write_bytes`)."""
    from PIL import Image

    from btnk_env.models.files import atomic_write_bytes

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return atomic_write_bytes(path, buf.getvalue())

"""Writing files and folders: atomically, with the umask's permissions, never over what is not ours.

Every file the package writes goes through this module:

- :func:`atomic_writer` / :func:`atomic_write_bytes` / :func:`atomic_write_text`: the data goes
  to a temporary file beside the target (``.NAME.<8 hex>.btnk-tmp``), is flushed and fsynced,
  then ``os.replace``d over the target and the folder is fsynced: a crash leaves either the old
  file or the new one, never a torn one. :func:`atomic_path` is the same for writers that need a
  file name (ffmpeg, imageio).
- :func:`atomic_dir`: a folder written completely under a temporary name, then put in place.
- Files are created with mode ``0o666`` and folders with ``0o777``, both minus the umask, like
  ``open()`` and ``mkdir`` (``tempfile.mkstemp`` would make every file ``0o600``).
- Ownership: a folder the package creates holds a marker file, :data:`OWNER_MARKER`, naming its
  kind (``"png-sequence"``, ``"train-run"``, ...). A writer replaces or fills a folder only if it
  is absent, empty, or marked with the same kind; anything else raises :class:`NotOursError`
  with the fix in the message. The user's files are never removed. A dataset writer also records
  its ``settings`` in the marker (:func:`claim_dir`): a later writer of the same folder must bring
  the same settings (a resume), anything else is refused with one line naming the keys that differ.
- :func:`clean_stale_temps` removes the temporaries a killed process left (our naming only).

Example:
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> atomic_write_text(d / "a.txt", "hello").read_text()
    'hello'
    >>> with atomic_dir(d / "frames", kind="png-sequence") as tmp:
    ...     _ = (tmp / "frame_00000.png").write_bytes(b"...")
    >>> sorted(p.name for p in (d / "frames").iterdir())
    ['.btnk-env-owned', 'frame_00000.png']
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Optional, Union

from btnk_env.models.errors import NotOursError

__all__ = [
    "OWNER_MARKER",
    "TEMP_SUFFIX",
    "NotOursError",
    "atomic_dir",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_writer",
    "check_replaceable_dir",
    "claim_dir",
    "clean_stale_temps",
    "fsync_dir",
    "owner_kind",
    "owner_settings",
    "settings_diff",
]

PathLike = Union[str, "os.PathLike[str]"]

OWNER_MARKER = ".btnk-env-owned"
"""Marker file in every folder the package creates: JSON ``{"created_by": "btnk-env", "kind": ...}``."""
TEMP_SUFFIX = ".btnk-tmp"
"""Suffix of every temporary file or folder (``.NAME.<8 hex>.btnk-tmp``): never ``*.png`` or ``*.pth``,
so nothing that globs for data picks one up, and :func:`clean_stale_temps` knows what is ours."""


def temp_name(path: Path) -> Path:
    """A fresh temporary name beside ``path``."""
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")


def current_umask() -> int:
    """The process umask, read without changing it (``/proc/self/status`` on Linux; else the
    ``os.umask`` set-and-restore, which is not atomic between threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_dir(folder: PathLike) -> None:
    """Make a rename in ``folder`` durable (best effort: some file systems cannot fsync folders)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _check_file_target(path: Path) -> None:
    if path.is_dir():
        raise IsADirectoryError(21, f"{path} is a folder; give a file name", str(path))


@contextlib.contextmanager
def atomic_writer(path: PathLike) -> Iterator[BinaryIO]:
    """Open a binary file that appears at ``path`` only when the ``with`` block succeeds.

    The parent folder is created if needed. An existing *file* at ``path`` (the output the
    caller named) is replaced; a folder there raises ``IsADirectoryError``. On any exception
    the temporary file is removed and ``path`` is untouched.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "x.bin"
        >>> with atomic_writer(p) as f:
        ...     _ = f.write(b"abc")
        >>> p.read_bytes()
        b'abc'
    """
    with atomic_path(path) as tmp:  # the one rename, fsync and clean-up of the package's writers
        with open(tmp, "xb") as f:  # exclusive create (never through a planted file), umask permissions
            yield f


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_writer`); returns ``path``."""
    with atomic_writer(path) as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically; returns ``path``."""
    return atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_path(path: PathLike, suffix: str = "") -> Iterator[Path]:
    """A temporary file name (ending in ``suffix``, for writers that pick a format by it) that
    is fsynced and renamed to ``path`` when the ``with`` block succeeds, removed otherwise.
    The writer creates the file, so it gets the usual (umask) permissions."""
    path = Path(path)
    _check_file_target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    tmp = tmp.with_name(tmp.name + suffix)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~current_umask())  # some writers (safetensors) create files 0o600
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


# ---------------------------------------------------------------------------- ownership
def _marker(folder: PathLike) -> "dict | None":
    """``folder``'s :data:`OWNER_MARKER` as a dict, or ``None`` if it has no valid one."""
    try:
        value = json.loads((Path(folder) / OWNER_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) and value.get("created_by") == "btnk-env" else None


def owner_kind(folder: PathLike) -> "str | None":
    """The kind in ``folder``'s :data:`OWNER_MARKER`, or ``None`` if it has no (valid) marker."""
    value = _marker(folder)
    return None if value is None else str(value.get("kind", ""))


def owner_settings(folder: PathLike) -> "dict | None":
    """The ``settings`` a dataset writer recorded in ``folder``'s marker (``None``: none recorded)."""
    settings = (_marker(folder) or {}).get("settings")
    return settings if isinstance(settings, dict) else None


def settings_diff(old: dict, new: dict) -> str:
    """The keys on which two settings dicts differ, as ``"seeds: [0] there, [1] now; ..."`` ('' if equal).

    Example:
        >>> settings_diff({"seeds": [0], "height": 64}, {"seeds": [1], "height": 64})
        'seeds: [0] there, [1] now'
    """
    keys = [k for k in sorted(set(old) | set(new), key=str) if old.get(k) != new.get(k)]
    return "; ".join(f"{k}: {_short(old.get(k))} there, {_short(new.get(k))} now" for k in keys)


def _short(value: object) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def _mark(folder: Path, kind: str, settings: "dict | None" = None) -> None:
    value = {"created_by": "btnk-env", "kind": kind}
    if settings is not None:
        value["settings"] = settings
    atomic_write_text(folder / OWNER_MARKER, json.dumps(value) + "\n")


def _is_empty(folder: Path) -> bool:
    return not any(p.name != OWNER_MARKER for p in folder.iterdir())


Recognise = Optional[Callable[[Path], bool]]


def check_replaceable_dir(path: PathLike, kind: str, fix: str = "choose a new folder name",
                          recognise: Recognise = None) -> Path:
    """Raise unless ``path`` is absent, an empty folder, or a folder of ``kind`` that we wrote.

    Call it before any long work, so a refusal comes first. ``recognise(path)`` may accept an
    unmarked folder written by an earlier version (it must look only for our own file names).
    Raises :class:`NotOursError` (the message ends with ``fix``) or ``FileExistsError`` for a file.
    """
    path = Path(path)
    if not path.exists():
        return path
    if not path.is_dir():
        raise FileExistsError(17, f"{path} is a file, not a folder; {fix}", str(path))
    found = owner_kind(path)
    if found == kind or (found is None and (_is_empty(path) or (recognise is not None and recognise(path)))):
        return path
    what = f"a btnk-env {found} folder" if found else "files btnk-env did not write"
    raise NotOursError(f"{path} holds {what}, which are never replaced; {fix}, or empty or remove it yourself")


def claim_dir(path: PathLike, kind: str, fix: str = "choose a new folder name", recognise: Recognise = None,
              settings: "dict | None" = None) -> Path:
    """Make ``path`` a folder of ``kind`` owned by the package: created (with its marker) if
    absent, marked if empty (or ``recognise``d), accepted if already marked with ``kind``; else
    :class:`NotOursError`.

    ``settings`` (a JSON-able dict: what decides the folder's contents) are recorded in the marker
    the first time; a folder whose marker records other settings raises :class:`NotOursError`
    naming the keys that differ (:func:`settings_diff`). Call it before any work.
    """
    path = check_replaceable_dir(path, kind, fix, recognise)
    if settings is not None:
        settings = json.loads(json.dumps(settings))  # compared as it will read back (tuples -> lists)
        old = owner_settings(path)
        if old is not None and old != settings:
            raise NotOursError(f"{path} was written with different settings ({settings_diff(old, settings)}); "
                               "write to another folder, or give the same settings to resume")
    path.mkdir(parents=True, exist_ok=True)
    if owner_kind(path) != kind or (settings is not None and owner_settings(path) is None):
        _mark(path, kind, settings)
    return path


@contextlib.contextmanager
def atomic_dir(path: PathLike, kind: str, fix: str = "choose a new folder name") -> Iterator[Path]:
    """A temporary folder, marked as ``kind``, that replaces ``path`` when the ``with`` block
    succeeds. ``path`` must be absent, empty or a ``kind`` folder we wrote (checked before and
    again after the work); on any exception the temporary folder is removed."""
    path = check_replaceable_dir(path, kind, fix)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    tmp.mkdir()
    try:
        _mark(tmp, kind)
        yield tmp
        check_replaceable_dir(path, kind, fix)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    swap_dir_into_place(tmp, path)


def swap_dir_into_place(tmp: Path, path: Path) -> None:
    """Rename the finished folder ``tmp`` to ``path``. A folder already at ``path`` (the caller has
    checked that it is ours, or empty) is moved aside first and removed once the new one is in place;
    on any error ``tmp`` is removed and ``path`` is left as it was."""
    old = None
    try:
        if path.exists():
            old = temp_name(path)
            os.replace(path, old)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(path.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def clean_stale_temps(folder: PathLike, *legacy_globs: str) -> int:
    """Remove the temporaries of our naming (``.*.btnk-tmp*``, plus ``legacy_globs``) that a killed
    process left in ``folder`` (not recursive); returns how many. Call it only where no other
    writer is running (under the run-folder lock, or at the start of a resumed job)."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    removed = 0
    for pattern in (f".*{TEMP_SUFFIX}*", *legacy_globs):
        for p in folder.glob(pattern):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed += 1
    return removed

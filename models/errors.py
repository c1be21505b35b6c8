"""Errors a user causes (not bugs), and the one place that turns them into one line.

:class:`BtnkEnvError` (a ``ValueError``) is the base of every input error of the package; its
message names the problem and the fix. :func:`explain` is the command lines' single error path
(``btnk-env``, ``python -m btnk_env.training``): an input error (a :class:`BtnkEnvError`, or a
``ValueError``/``TypeError``/``KeyError`` raised by a check in this project's own code) or an
expected operating-system error (no space left, permission denied, read-only file system, a file
or folder in the way, a missing file) becomes one line, ``<problem>. <fix>``, printed after
``btnk-env <command>:`` with exit status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path
from typing import Any, Callable, Optional


class BtnkEnvError(ValueError):
    """An input (file, folder, option, config value) cannot be used; the message says why and what to do."""


class NotOursError(BtnkEnvError):
    """A writer was asked to replace a file or folder that btnk-env did not create."""


_ROOT = Path(__file__).resolve().parents[1]  # the checkout: btnk_env/, models/, training/
_OUR_CODE = tuple(str(_ROOT / pkg) + "/" for pkg in ("btnk_env", "models", "training"))

#: errno -> (problem, fix) of the operating-system errors a user causes or can fix.
_OS_ERRORS = {
    errno.ENOSPC: ("no space left on the device", "Free some space or write to another disk"),
    errno.EDQUOT: ("disk quota exceeded", "Free some space or write to another disk"),
    errno.EACCES: ("permission denied", "Choose a path you can write (or read)"),
    errno.EPERM: ("operation not permitted", "Choose a path you can write (or read)"),
    errno.EROFS: ("read-only file system", "Choose a writable folder"),
    errno.EEXIST: ("already exists", "Choose a new name or remove it yourself"),
    errno.ENOTEMPTY: ("folder is not empty", "Choose a new folder name"),
    errno.EISDIR: ("is a folder", "Give a file name"),
    errno.ENOTDIR: ("a part of this path is a file, not a folder", "Fix the path"),
    errno.ENOENT: ("no such file or folder", "Check the path"),
    errno.ENAMETOOLONG: ("file name too long", "Choose a shorter name"),
}


def _raised_in_our_code(err: BaseException) -> bool:
    """Whether the innermost frame of ``err``'s traceback is in btnk_env/, models/ or training/."""
    tb = err.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_code.co_filename.startswith(_OUR_CODE)


def _one_line(text: str) -> str:
    text = " ".join(str(text).split())
    return text if text.endswith((".", "!", "?", ")")) else text + "."


def explain(err: BaseException) -> Optional[str]:
    """The one line for an expected error (problem and fix), or ``None`` for a bug.

    Example:
        >>> explain(OSError(errno.ENOSPC, "No space left on device", "out/x.png"))
        'out/x.png: no space left on the device. Free some space or write to another disk.'
        >>> explain(ZeroDivisionError("division by zero")) is None
        True
    """
    if isinstance(err, BtnkEnvError):
        return _one_line(str(err))
    if isinstance(err, OSError):
        known = _OS_ERRORS.get(err.errno) if err.errno is not None else None
        if known is not None:
            problem, fix = known
            if err.strerror and err.strerror != os.strerror(err.errno):
                return _one_line(err.strerror)  # a message of ours, with its fix
            where = err.filename
            return _one_line(f"{where}: {problem}. {fix}" if where is not None else f"{problem}. {fix}")
        if err.errno is None and _raised_in_our_code(err):
            return _one_line(str(err))
        return None
    if isinstance(err, (ValueError, TypeError, KeyError)) and _raised_in_our_code(err):
        return _one_line(err.args[0] if isinstance(err, KeyError) and err.args else str(err))
    return None


def run_cli(run: Callable[[Any], Optional[int]], args: Any, prog: str) -> int:
    """Run a command's ``run(args)`` through the error path: the exit status, 2 with one line on
    stderr (``<prog>: <problem>. <fix>``) for an expected error, 130 on Ctrl-C; a bug re-raises."""
    try:
        status = run(args)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - expected errors become one line, the rest re-raise
        line = explain(err)
        if line is None:
            raise
        print(f"{prog}: {line}", file=sys.stderr)
        return 2
    return 0 if status is None else int(status)

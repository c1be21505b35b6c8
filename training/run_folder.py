"""The run folder (``io.out_dir``): one trainer at a time, and a finished run is never clobbered.

- **Lock.** The trainer holds ``fcntl.flock`` on ``out_dir/.lock`` for its whole life; a second
  trainer on the same folder stops at once with :class:`RunFolderError`. The kernel drops the
  lock when the process dies (even by ``SIGKILL``), so a stale lock never blocks a restart.
- **An existing run** (a checkpoint, ``final/`` or metrics in the folder) is continued only with
  ``train.resume=auto`` (or a checkpoint path), started over only with ``train.overwrite=true``
  (which removes the run's own files, nothing else); otherwise :class:`RunFolderError` says so.
- **Ownership.** The folder is marked as a ``train-run`` folder (:mod:`btnk_env.models.files`); a
  non-empty folder of other files is refused.
- **Leftovers of a killed run**: temporary files of our naming (a full-size checkpoint the kill
  cut short) are removed under the lock.

Example:
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp()) / "run"
    >>> with RunFolder(d, resume=None, overwrite=False) as run:
    ...     run.existing
    False
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import shutil
from pathlib import Path
from typing import Optional, Union

from btnk_env.models.errors import BtnkEnvError
from btnk_env.models.files import OWNER_MARKER, claim_dir, clean_stale_temps

logger = logging.getLogger(__name__)

KIND = "train-run"
LOCK = ".lock"
#: What a run writes in its folder (only these are removed by ``train.overwrite=true``).
RUN_FILES = ("checkpoint-*.pth", "metrics.jsonl", "metrics.csv", "config.yaml")
RUN_DIRS = ("final", "snapshots", "tb", "wandb")
#: Temporaries of the writers before models/files.py (``tempfile.mkstemp`` names).
LEGACY_TEMPS = ("checkpoint-*.pth.*.tmp", "tmp*.tmp", "tmp*.png.tmp")


class RunFolderError(BtnkEnvError):
    """The run folder is in use, or holds a run that this command would overwrite."""


def _is_run(folder: Path) -> bool:
    return any(folder.glob("checkpoint-*.pth")) or (folder / "final").is_dir() or (folder / "metrics.jsonl").is_file()


def _recognise(folder: Path) -> bool:
    """An unmarked folder of an earlier version's run: only run files in it."""
    names = {p.name for p in folder.iterdir()} - {LOCK, OWNER_MARKER}
    return _is_run(folder) and all(
        any(Path(n).match(g) for g in RUN_FILES) or n in RUN_DIRS or n.endswith(".tmp") for n in names
    )


class RunFolder:
    """Claim, lock and check ``out_dir`` for a training run (a context manager; rank 0 only).

    Args:
        out_dir: the run folder (created if missing).
        resume: ``train.resume`` (``None``, ``"auto"`` or a checkpoint path).
        overwrite: ``train.overwrite``: start over, removing the run's own files.

    Raises:
        RunFolderError: another trainer holds the folder; or it holds a run and neither
            ``resume`` nor ``overwrite`` is set; or both are set.
        btnk_env.models.files.NotOursError: the folder holds files that are not a run's.
    """

    def __init__(self, out_dir: Union[str, "os.PathLike[str]"], resume: Optional[str], overwrite: bool) -> None:
        self.path, self.resume, self.overwrite = Path(out_dir), resume, overwrite
        self._fh = None
        self.existing = False

    def __enter__(self) -> "RunFolder":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        if self.resume and self.overwrite:
            raise RunFolderError("train.resume and train.overwrite=true contradict each other; set one of them")
        fix = "choose another io.out_dir"
        claim_dir(self.path, KIND, fix, _recognise)
        self._fh = open(self.path / LOCK, "a+")
        try:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            self._fh.seek(0)
            holder = self._fh.read().strip() or "another process"
            self._fh.close()
            self._fh = None
            if err.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise RunFolderError(
                    f"{self.path} is in use by a running training ({holder}); wait for it to finish, or {fix}"
                ) from None
            raise
        self._fh.seek(0)
        self._fh.truncate()
        self._fh.write(f"pid {os.getpid()}\n")
        self._fh.flush()
        removed = clean_stale_temps(self.path, *LEGACY_TEMPS) + clean_stale_temps(self.path / "snapshots")
        if removed:
            logger.info("removed %d temporary file(s) a killed run left in %s", removed, self.path)
        self.existing = _is_run(self.path)
        if not self.existing or self.resume:
            return
        if not self.overwrite:
            self.release()
            raise RunFolderError(
                f"{self.path} already holds a training run; resume it with train.resume=auto, start over "
                f"with train.overwrite=true, or {fix}"
            )
        self._remove_run_files()

    def _remove_run_files(self) -> None:
        for pattern in RUN_FILES:
            for p in self.path.glob(pattern):
                p.unlink()
        for name in RUN_DIRS:
            if (self.path / name).is_dir():
                shutil.rmtree(self.path / name)
        logger.warning("train.overwrite=true: removed the earlier run's checkpoints, metrics and final model in %s",
                       self.path)

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


def claim_run_folder(ctx, out_dir: Union[str, "os.PathLike[str]"], resume: Optional[str], overwrite: bool) -> Optional[RunFolder]:
    """Lock and check ``out_dir`` on rank 0 (``ctx``: :class:`btnk_env.training.distributed.DistContext`);
    under ``torchrun`` every rank stops with rank 0's refusal instead of hanging. Returns rank 0's
    held :class:`RunFolder` (``None`` on the other ranks); release it when the run ends."""
    from btnk_env.training import distributed as D

    folder, problem = None, None
    if ctx.is_main:
        folder = RunFolder(out_dir, resume, overwrite)
        try:
            folder.acquire()
        except Exception as err:  # noqa: BLE001 - sent to the other ranks, then raised
            problem = err
    if ctx.enabled:
        messages = D.all_gather_objects(None if problem is None else str(problem))
        if problem is None and messages[0] is not None:
            raise RunFolderError(messages[0])
    if problem is not None:
        raise problem
    return folder

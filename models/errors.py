"""The base of every error that bad *input* causes (not a bug): the message names the problem and the fix.

``btnk-env`` turns these into one line and exit status 2 (:mod:`btnk_env.cli`); library callers
can catch :class:`BtnkEnvError` (a ``ValueError``) to tell a user's mistake from a bug.
"""

from __future__ import annotations


class BtnkEnvError(ValueError):
    """An input (file, folder, option, config value) cannot be used; the message says why and what to do."""


class NotOursError(BtnkEnvError):
    """A writer was asked to replace a file or folder that btnk-env did not create."""

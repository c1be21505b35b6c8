"""Seed lists as ranges: ``"0-99,120,200-299"`` parsed strictly, stored compactly.

:func:`parse_seeds` returns a :class:`SeedRanges`, a read-only sequence of ints that keeps the
ranges, not the numbers: ``"0-1000000"`` is two integers in memory however few frames are
collected, and ``seeds[i]`` is computed. Every part must be a non-negative integer or an
ascending ``LO-HI`` range (both ends included); anything else, a descending range included, is a
:class:`SeedError` naming the part.

Example:
    >>> s = parse_seeds("0-3,7")
    >>> list(s), len(s), s[4], str(s)
    ([0, 1, 2, 3, 7], 5, 7, '0-3,7')
    >>> len(parse_seeds("0-1000000"))
    1000001
    >>> parse_seeds("5-1,7")
    Traceback (most recent call last):
    ...
    btnk_env.collection.seeds.SeedError: seeds '5-1,7': the range '5-1' goes down; write it as 1-5
"""

from __future__ import annotations

import bisect
import os
import re
from typing import Any, Iterator, List, Sequence, Tuple, Union, overload

from btnk_env.models.errors import BtnkEnvError

__all__ = ["MAX_SEED", "SeedError", "SeedRanges", "parse_seeds", "resolve_parts", "seed_arg"]

MAX_SEED = 2**63 - 1
"""Largest seed accepted (numpy's and Gymnasium's seeding take non-negative integers)."""
JSON_LIST_MAX = 10_000
""":meth:`SeedRanges.to_json` writes up to this many seeds as a JSON list, more as the text form."""
_PART = re.compile(r"^(\d+)(?:-(\d+))?$")


class SeedError(BtnkEnvError):
    """A seed list cannot be parsed; the message names the part and the fix."""


class SeedRanges(Sequence[int]):
    """An immutable sequence of seeds kept as inclusive ``(lo, hi)`` ranges, in the given order.

    Adjacent ranges that continue each other are merged, so equal sequences compare equal
    whichever way they were written.
    """

    def __init__(self, ranges: Sequence[Tuple[int, int]]) -> None:
        merged: List[Tuple[int, int]] = []
        for lo, hi in ranges:
            lo, hi = int(lo), int(hi)
            if not 0 <= lo <= hi <= MAX_SEED:
                raise SeedError(f"invalid seed range {lo}-{hi}")
            if merged and merged[-1][1] + 1 == lo:
                merged[-1] = (merged[-1][0], hi)
            else:
                merged.append((lo, hi))
        self.ranges: Tuple[Tuple[int, int], ...] = tuple(merged)
        self._starts: List[int] = []  # index of each range's first seed
        total = 0
        for lo, hi in self.ranges:
            self._starts.append(total)
            total += hi - lo + 1
        self._len = total

    def __len__(self) -> int:
        return self._len

    @overload
    def __getitem__(self, index: int) -> int: ...
    @overload
    def __getitem__(self, index: slice) -> List[int]: ...

    def __getitem__(self, index: Union[int, slice]) -> Union[int, List[int]]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._len))]
        index = int(index)
        if index < 0:
            index += self._len
        if not 0 <= index < self._len:
            raise IndexError(f"seed index {index} out of range for {self._len} seeds")
        r = bisect.bisect_right(self._starts, index) - 1
        return self.ranges[r][0] + index - self._starts[r]

    def __iter__(self) -> Iterator[int]:
        for lo, hi in self.ranges:
            yield from range(lo, hi + 1)

    def __contains__(self, seed: Any) -> bool:
        return any(lo <= seed <= hi for lo, hi in self.ranges) if isinstance(seed, int) else False

    def __eq__(self, other: Any) -> bool:
        if isinstance(other, SeedRanges):
            return self.ranges == other.ranges
        if isinstance(other, (list, tuple)):
            return len(other) == self._len and all(a == b for a, b in zip(self, other))
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.ranges)

    def __str__(self) -> str:
        return ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in self.ranges)

    def __repr__(self) -> str:
        return f"parse_seeds({str(self)!r})"

    def to_json(self) -> Union[List[int], str]:
        """A list of ints for up to :data:`JSON_LIST_MAX` seeds (the format dataset configs always
        had), else the text form (``"0-1000000"``), which :func:`parse_seeds` reads back."""
        return list(self) if self._len <= JSON_LIST_MAX else str(self)


def parse_seeds(text: Union[str, SeedRanges]) -> SeedRanges:
    """``"0-3,7"`` -> the seeds ``0, 1, 2, 3, 7`` as a :class:`SeedRanges` (nothing expanded).

    Spaces around parts are ignored. Raises :class:`SeedError` for an empty list, an empty part
    (``"1,,2"``), a part that is not ``N`` or ``LO-HI`` with non-negative integers, a descending
    range, or a seed above :data:`MAX_SEED`.
    """
    if isinstance(text, SeedRanges):
        return text
    text = str(text)
    parts = [p.strip() for p in text.split(",")]
    if not any(parts):
        raise SeedError(f"no seeds in {text!r}; give seeds like 0-99 or 1,5,9")
    ranges = []
    for part in parts:
        match = _PART.match(part)
        if match is None:
            what = "an empty part" if not part else f"the part {part!r}"
            raise SeedError(f"seeds {text!r}: {what} is not a seed N or a range LO-HI of non-negative integers")
        lo = int(match.group(1))
        hi = int(match.group(2)) if match.group(2) is not None else lo
        if hi < lo:
            raise SeedError(f"seeds {text!r}: the range {part!r} goes down; write it as {hi}-{lo}")
        if hi > MAX_SEED:
            raise SeedError(f"seeds {text!r}: {hi} is above the largest seed 2**63 - 1")
        ranges.append((lo, hi))
    return SeedRanges(ranges)


def seed_arg(text: str) -> int:
    """One seed from the command line (an ``argparse`` ``type=``): an integer in ``0 .. MAX_SEED``;
    anything else is argparse's one-line usage error (exit 2).

    Example:
        >>> seed_arg("7")
        7
    """
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seed {text!r} is not an integer") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"seed {value} is outside 0..{MAX_SEED}; give a non-negative seed")
    return value


def resolve_parts(shard_index: int | None, num_shards: int | None) -> tuple[int, int]:
    """This machine's part ``(i, n)`` of a collection split over ``n`` machines: from the arguments,
    else from ``RANK``/``WORLD_SIZE``, else ``(0, 1)``."""
    if num_shards is None:
        num_shards = int(os.environ.get("WORLD_SIZE", "1"))
        if shard_index is None:
            shard_index = int(os.environ.get("RANK", "0"))
    shard_index = 0 if shard_index is None else shard_index
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise ValueError(f"need 0 <= shard_index < num_shards, got shard_index={shard_index}, num_shards={num_shards}")
    return shard_index, num_shards

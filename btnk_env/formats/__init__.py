"""The on-disk formats of the package, one module per format, each with its reader and writer side by side.

- :mod:`~btnk_env.formats.panorama_folder`: PNG folders (``manifest.jsonl``, ``images/``)
- :mod:`~btnk_env.formats.shards`: shard sets (webdataset tars + ``index.json``), reader and :class:`ShardWriter`
- :mod:`~btnk_env.formats.episodes`: episode datasets (``episodes.jsonl`` + per-episode steps and frames)
- :mod:`~btnk_env.formats.episode_shards`: episodes recorded into a shard set (one sample per frame)
- :mod:`~btnk_env.formats.latents`: latent datasets written by ``btnk-env encode``
- :mod:`~btnk_env.formats.minari_export`: the Minari export of a latent dataset
- :mod:`~btnk_env.formats.common`: what they share (names, errors, ownership, locks, bounded JSON)

The panorama formats in detail:

Collection (:mod:`btnk_env.collection.collect`), the shard writer (:mod:`btnk_env.formats.shards`),
training (:mod:`btnk_env.training.datasets`, :mod:`btnk_env.training.shard_stream`) and evaluation import these names;
nothing else spells them.

**PNG folder** (small sets; what the original btnk_mae loader reads)::

    out/
      dataset_config.json   {"dataset_type": "panorama", "image_size": [H, W], "num_images": n,
                             "complete": bool, "collection": settings, ...}
      manifest.jsonl        one record per frame, in index order, each with a "file"
      images/000000.png     (H, W, 3) RGB, lossless PNG

**Shard set** (large sets; webdataset tar shards)::

    out/
      index.json                          {"format": "btnk-shards", "version": 1, "image_size": [H, W],
                                           "num_samples": n, "shards": [{"file", "first", "count", "bytes"}],
                                           "collection": settings}
      shard-000000.tar                    per sample "<key>.png" (lossless RGB) + "<key>.json" (its record)
      index-part-00000-of-00004.json      one collector's index when a collection is split over
                                          machines (``--num-shards 4``); merged into index.json

A sample key is the sample's global index, zero-padded (``000001234``; webdataset keys must not
contain dots). Its record is a JSON object holding at least :data:`SAMPLE_KEYS`; writers may add
any other JSON keys (an episode recorder adds ``action``, ``reward``, ``terminated``,
``truncated``; readers pass unknown keys through).

Ownership: a collector, converter or merger writes only into a folder that is absent, empty, or one
it created (the :data:`btnk_env.models.files.OWNER_MARKER` of kind :data:`FOLDER_KIND` / :data:`SHARDS_KIND`,
recording the settings that decide its contents); another writer's settings are refused before any
work, naming what differs (:func:`claim`).

Damage rules, the same for every reader (a damaged record costs itself alone):

- ``manifest.jsonl``: a torn LAST line (no final newline, or not JSON: what a crash mid-write
  leaves) is dropped; a bad line anywhere else (not JSON, not a record with a ``file``, an index
  not after the previous one) is skipped, and so is a frame without a line: readers name and
  count them in one warning (:class:`Manifest`), the collector renders exactly those frames again.
- ``dataset_config.json`` ``num_images`` is exact only when ``complete`` is true (a killed
  collector cannot update it); readers count the manifest, never trust ``num_images``.
- ``index.json`` is only ever replaced atomically, so it is whole; a shard it lists that is missing
  or of another size than recorded, or an entry that is malformed, is skipped and named
  (:attr:`ShardSet.damaged`, one warning), and the collector writes exactly those shards again.
- A folder whose writer holds its lock is read as far as it is complete, with one warning
  (:func:`warn_if_being_written`).
"""

from __future__ import annotations

from btnk_env.formats.common import *  # noqa: F401,F403  (the panorama formats' names, one namespace)
from btnk_env.formats.panorama_folder import *  # noqa: F401,F403  (the panorama formats' names, one namespace)
from btnk_env.formats.shards import *  # noqa: F401,F403  (the panorama formats' names, one namespace)

"""Panorama collection: walk a panorama world and write a dataset (``btnk-env collect``).

The on-disk formats it writes live in :mod:`btnk_env.formats`.

- :mod:`~btnk_env.collection.collect`: :func:`collect_panoramas` and the command line
- :mod:`~btnk_env.collection.parallel`: frame plan and worker processes
- :mod:`~btnk_env.collection.convert`: PNG folder <-> shard set
"""

from btnk_env.collection.collect import collect_panoramas, load_manifest, parse_seeds

__all__ = ["collect_panoramas", "load_manifest", "parse_seeds"]

"""Panorama collection: walk a panorama world and write a dataset (``btnk-env collect``)."""

from btnk_env.collection.collect import collect_panoramas, load_manifest, parse_seeds

__all__ = ["collect_panoramas", "load_manifest", "parse_seeds"]

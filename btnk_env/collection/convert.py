"""Convert between a PNG folder and a shard set (``btnk-env collect --convert SRC --out DST``).

PNG bytes are copied as they are (no re-encoding), and records keep every key, so a folder, its
shards and the folder converted back hold the same pixels and the same records. Sample ``i`` of
the shard set is frame ``i`` of the folder (its manifest order; without a manifest, the sorted
PNG files). The destination must be new, empty, or this conversion's own (the same source, resumed):
a converter never writes over another dataset (:func:`btnk_env.formats.claim`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from btnk_env import formats as F

__all__ = ["convert", "folder_to_shards", "shards_to_folder"]

logger = logging.getLogger(__name__)


def folder_to_shards(src: str | os.PathLike, dst: str | os.PathLike, shard_size: int = 1000,
                     progress: bool = False) -> Path:
    """Write the frames of the PNG folder ``src`` as a shard set in ``dst``."""
    from tqdm.auto import tqdm

    from btnk_env.formats.shards import ShardWriter

    src, dst = Path(src), Path(dst)
    config = F.read_config(src) or {}
    scan = F.scan_manifest(src)
    records = scan.in_order()
    if not records and not scan.path.is_file():
        files = sorted(p.relative_to(src).as_posix() for p in src.rglob("*.png"))
        records = [{"index": i, "file": f} for i, f in enumerate(files)]
    gone = [rec for rec in records if not (src / rec["file"]).is_file()]
    scan.report([f"{rec['file']}: no such file" for rec in gone])
    records = [rec for rec in records if rec not in gone]
    if not records:
        raise ValueError(f"{src} holds no PNG frames")
    settings = config.get("collection") or {}
    fps = int(settings.get("frames_per_scene", 1) or 1)
    image_size = config.get("image_size")
    conversion = {"converted_from": str(src), "collection": settings, "shard_size": shard_size}
    skipped = len(scan.damaged) + scan.gaps()[0] + len(gone)
    if skipped:  # resuming after the folder was repaired is then "different settings", never a mix
        kept = hashlib.sha256(json.dumps([rec["file"] for rec in records]).encode()).hexdigest()
        conversion.update(skipped_frames=skipped, kept_frames_sha256=kept)
    with ShardWriter(dst, image_size=image_size, max_count=shard_size, settings=conversion) as writer:
        for i, rec in enumerate(tqdm(records, disable=not progress, desc="convert", unit="frame")):
            record = {k: v for k, v in rec.items() if k != "file"}
            record["index"] = i  # the sample's place in the set (the frame's own, unless frames were skipped)
            record.setdefault("episode", i // fps)
            record.setdefault("step", i % fps)
            record["source_file"] = rec["file"]
            writer.write(F.sample_key(i), (src / rec["file"]).read_bytes(), record)
    return dst


def shards_to_folder(src: str | os.PathLike, dst: str | os.PathLike, progress: bool = False) -> Path:
    """Write the samples of the shard set ``src`` as a PNG folder ``dst`` (readable by the original loader)."""
    from tqdm.auto import tqdm

    shard_set = F.open_shard_set(src)
    dst = F.claim(dst, F.FOLDER_KIND, {"converted_from": str(src), "num_samples": shard_set.num_samples})
    (dst / F.IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    with F.exclusive_lock(dst):
        n = 0
        settings = dict(shard_set.settings or {})
        collection = settings.get("collection", settings)  # a converted set keeps the folder's settings inside
        size = shard_set.image_size
        bar = tqdm(total=shard_set.num_samples, disable=not progress, desc="convert", unit="frame")
        with open(dst / F.MANIFEST, "w", encoding="utf-8") as manifest:
            for entry in shard_set.shards:
                for key, sample in F.iter_shard(shard_set.path(entry)):
                    record = F.read_json(sample[F.RECORD_EXT], f"{shard_set.path(entry)} record {key}")
                    if not isinstance(record, dict):
                        raise F.DatasetFormatError(f"{shard_set.path(entry)} record {key} is not a JSON object")
                    record.pop("source_file", None)
                    name = F.frame_file(n)
                    F.atomic_write_bytes(dst / name, sample[F.IMAGE_EXT])
                    manifest.write(json.dumps({"index": n, "file": name, **{k: v for k, v in record.items()
                                                                           if k != "index"}}) + "\n")
                    n += 1
                    bar.update(1)
            manifest.flush()
            os.fsync(manifest.fileno())
        bar.close()
        if size is None:
            from PIL import Image

            with Image.open(dst / F.frame_file(0)) as im:
                size = (im.height, im.width)
        F.write_config(dst, size, n, True, {k: v for k, v in collection.items()
                                            if k not in ("format", "shard_size", "num_shards", "merged_parts")})
    return dst


def convert(src: str | os.PathLike, dst: str | os.PathLike, shard_size: int = 1000, progress: bool = False) -> Path:
    """PNG folder -> shard set, or shard set -> PNG folder, by what ``src`` is."""
    if F.is_shard_spec(str(src)):
        return shards_to_folder(src, dst, progress=progress)
    if not Path(src).is_dir():
        raise ValueError(f"{src} is neither a PNG folder nor a shard set")
    return folder_to_shards(src, dst, shard_size=shard_size, progress=progress)

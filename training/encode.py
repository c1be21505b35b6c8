"""``btnk-env encode``: a panorama or episode dataset -> a latent dataset (:mod:`btnk_env.formats.latents`).

Frames are decoded by threads (:mod:`btnk_env.training.frame_reader`) while the model encodes the previous
batch, and converted to model input on the model's device (:func:`btnk_env.models.frames_to_tensor`, the
wrappers' own conversion, so the latents equal what ``BtnkMAEObservation`` gives an agent); on a GPU the batches are pinned and copied
asynchronously. Output goes in chunks of ``chunk_size`` frames, each written atomically with a
done-marker, so a killed encode resumes at the first missing chunk and never writes a frame twice.

Several processes split the chunks (``torchrun --nproc_per_node=N -m btnk_env encode ...``, or
several machines on a shared folder): rank ``r`` encodes the missing chunks ``r, r + N, ...``,
then rank 0 joins them into the flat arrays and writes ``latents.json`` (Gloo on the CPU, NCCL on
GPUs, only for the barrier).

Command line::

    btnk-env encode data/episodes --out data/episodes_latents --model panorama-rooms-small --minari-id btnk/rooms/explorer-v0
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from btnk_env.formats import exclusive_lock
from btnk_env.models import BtnkMAE, frames_to_tensor
from btnk_env.models.errors import NotOursError
from btnk_env.models.files import check_replaceable_dir, claim_dir
from btnk_env.models.identity import model_sha256
from btnk_env.models.precision import check_precision, for_inference
from btnk_env.formats import latents as fmt
from btnk_env.training.datasets import MANIFEST, find_images, panorama_files, read_panorama_config
from btnk_env.training.frame_reader import read_batches

__all__ = ["encode_dataset", "open_source", "PanoramaSource", "EpisodeSource", "model_sha256"]

logger = logging.getLogger(__name__)

DEFAULT_CHUNK = 1024
DEFAULT_BATCH = 64


# ---------------------------------------------------------------------------- sources
class PanoramaSource:
    """Single panoramas: a folder written by ``btnk-env collect`` (manifest order) or any image folder."""

    kind = "panoramas"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        config = read_panorama_config(self.root)
        self.files = panorama_files(self.root) if config is not None else find_images(self.root)
        if not self.files:
            raise ValueError(f"no PNG/JPEG images under {self.root}: give a folder written by btnk-env collect, "
                             "an image folder or an episode dataset")
        self.settings = (config or {}).get("collection")
        self.keys = [p.relative_to(self.root).as_posix() for p in self.files]
        size = (config or {}).get("image_size")
        self.frame_hw = tuple(size) if size else None  # one size for all frames, or unknown

    def describe(self) -> dict:
        return {"path": str(self.root.resolve()), "kind": self.kind, "num_frames": len(self.files)}

    def fingerprint(self) -> str:
        """sha256 of what decides the frames: the manifest (or the image list) and the settings."""
        manifest = self.root / MANIFEST
        return _sha256(manifest.read_bytes() if manifest.is_file() else b"", self.keys, self.settings)


class EpisodeSource:
    """The frames of an episode dataset, in order: an episode folder
    (:class:`btnk_env.formats.episodes.EpisodeFolder`) or an episode shard set
    (:class:`btnk_env.formats.episode_shards.EpisodeShards`, its PNG bytes read into memory)."""

    kind = "episodes"

    def __init__(self, path: "str | os.PathLike") -> None:
        from btnk_env.formats.episode_shards import open_episodes

        self.data = open_episodes(path, keep_frames=True)  # raises if there are no episodes
        self.root = self.data.root
        self.files = [f for i in range(len(self.data)) for f in self.data.frame_sources(i)]  # paths or PNG bytes
        self.settings = self.data.config.get("collection")
        self.frame_hw = tuple(self.data.image_size)

    def describe(self) -> dict:
        return {**self.data.describe(), "damaged_records": len(self.data.damaged)}

    def fingerprint(self) -> str:
        """sha256 of the complete episodes' records and the recording settings."""
        return _sha256(b"", self.data.episodes, self.settings)

    def arrays(self) -> dict[str, np.ndarray]:
        """Observation-aligned per-frame arrays (see :mod:`btnk_env.formats.latents`), offsets and goals."""
        per_episode: dict[str, list] = {name: [] for name in fmt.EPISODE_ARRAYS}
        for i in range(len(self.data)):
            s = self.data.steps(i)
            per_episode["actions"].append(np.append(s["actions"], -1))
            per_episode["rewards"].append(np.append(s["rewards"], 0.0))
            per_episode["terminated"].append(np.append(s["terminated"], False))
            per_episode["truncated"].append(np.append(s["truncated"], False))
            per_episode["poses"].append(np.column_stack([s["positions"], s["headings"]]))
        out = {name: np.concatenate(v).astype(fmt.EPISODE_ARRAYS[name]) for name, v in per_episode.items()}
        lengths = [r["num_steps"] + 1 for r in self.data.episodes]
        out["episode_offsets"] = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        out["goals"] = np.array([r["goal"] for r in self.data.episodes], np.float32).reshape(-1, 3)
        return out


def _sha256(data: bytes, *values: Any) -> str:
    """sha256 of ``data`` and JSON-able ``values`` (a source's identity)."""
    h = hashlib.sha256(data)
    for v in values:
        h.update(json.dumps(v, sort_keys=True, default=str).encode())
    return h.hexdigest()


class ShardSource:
    """Single panoramas of a shard set (``btnk-env collect --format shards``: a folder with
    ``index.json``, an index file, a ``.tar`` or a brace pattern), in index order. The frames'
    PNG bytes are read into memory (about 40 KB per 128x256 frame) and decoded by the workers."""

    kind = "panoramas"

    def __init__(self, spec: "str | os.PathLike") -> None:
        from btnk_env.formats import DatasetFormatError, iter_shard, open_shard_set, skipped_note

        self.shards = open_shard_set(spec)
        self.root = Path(self.shards.root)
        self.files: list = []  # PNG bytes, one per frame (what _Frames decodes)
        self.keys: list[str] = []
        unreadable: dict = {}  # entry -> why
        for entry in self.shards.shards:
            try:  # a shard of the size its index says that is still not a whole tar costs itself alone
                samples = [(key, sample["png"]) for key, sample in iter_shard(self.shards.path(entry))]
                if len(samples) != entry.count:
                    raise DatasetFormatError(f"shard {self.shards.path(entry)} holds {len(samples)} samples, its "
                                             f"index says {entry.count}")
            except DatasetFormatError as err:
                unreadable[entry] = str(err).split(";")[0]
                continue
            self.files += [png for _, png in samples]
            self.keys += [f"{entry.file}/{key}" for key, _ in samples]
        if unreadable:
            logger.warning(skipped_note(spec, len(unreadable), "unreadable shard(s)", "", list(unreadable.values())))
            self.shards.shards = [e for e in self.shards.shards if e not in unreadable]
        if not self.files:
            raise ValueError(f"the shard set {spec} holds no frames")
        self.settings = self.shards.settings
        self.frame_hw = tuple(self.shards.image_size) if self.shards.image_size else None

    def describe(self) -> dict:
        return {"path": str(self.root.resolve()), "kind": "shards", "num_frames": len(self.files)}

    def fingerprint(self) -> str:
        """sha256 of what decides the frames: the shard set's entries (file, first, count, bytes) and settings."""
        entries = [[e.file, e.first, e.count, e.bytes] for e in self.shards.shards]
        return _sha256(b"", entries, self.keys, self.settings)


def open_source(path: "str | os.PathLike") -> "PanoramaSource | EpisodeSource | ShardSource":
    """The dataset at ``path``: episodes (a folder or shard set whose settings say so), a shard set
    of panoramas, else a panorama or image folder."""
    from btnk_env.formats.episode_shards import is_episode_shards
    from btnk_env.formats.episodes import is_episode_dataset
    from btnk_env.formats import is_shard_spec

    if is_shard_spec(str(path)):
        return EpisodeSource(path) if is_episode_shards(path) else ShardSource(path)
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ValueError(f"dataset folder not found: {root}")
    return EpisodeSource(root) if is_episode_dataset(root) else PanoramaSource(root)


# ---------------------------------------------------------------------------- model
def _input_size(frame_hw: tuple[int, int], model: BtnkMAE) -> tuple[int, int]:
    from btnk_env.wrappers.frames import target_size

    return target_size(frame_hw, model)  # the wrappers' rule: model height, the frames' aspect ratio


def _frame_hw(path: "Path | bytes") -> tuple[int, int]:
    """``(H, W)`` of an image file (or of PNG bytes, a shard's frame)."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(path) if isinstance(path, bytes) else path) as im:
        return im.height, im.width


# ---------------------------------------------------------------------------- encoding
def encode_dataset(
    source: "str | os.PathLike",
    out: "str | os.PathLike",
    model: "str | os.PathLike | BtnkMAE" = "panorama-rooms-small",
    *,
    batch_size: int = DEFAULT_BATCH,
    precision: str = "fp32",
    device: str = "auto",
    dtype: str = "float32",
    chunk_size: int = DEFAULT_CHUNK,
    workers: int = 2,
    minari_id: str | None = None,
    progress: bool = True,
    on_chunk: Callable[[int], None] | None = None,
    backend: str = "auto",
) -> Path:
    """Encode every frame of ``source`` into a latent dataset at ``out`` (resuming what is there).

    Args:
        source: a panorama dataset folder or shard set (``btnk-env collect``), an image folder, or
            an episode folder or shard set (``btnk-env collect --mode episodes``).
        out: the output folder (created; an existing output must come from the same model, input
            size, precision, dtype, chunk size and source settings).
        model: a name or path for ``BtnkMAE.from_pretrained`` or a ``BtnkMAE`` (not modified).
        batch_size: frames per forward.
        precision: ``"fp32"``, ``"bf16"``, ``"fp16"`` (CUDA) or ``"int8"`` (CPU), via
            :func:`btnk_env.models.precision.for_inference`.
        device: ``"auto"`` (this rank's GPU when there is one), ``"cpu"`` or ``"cuda"``.
        dtype: ``"float32"`` or ``"float16"``, the stored latents' dtype.
        chunk_size: frames per output chunk (the unit of resuming and of splitting across ranks).
        workers: threads decoding images ahead of the model (0: in the model's thread).
        minari_id: also export the episodes as this Minari dataset (episodes only).
        progress: a tqdm progress bar (rank 0).
        on_chunk: called with the chunk index after each chunk is stored.
        backend: ``"auto"``, ``"torch"``, ``"onnxruntime"`` or ``"openvino"`` (:mod:`btnk_env.models.backends`).

    Returns:
        the output folder.

    Raises:
        ValueError: before any work, for a dataset with no frames or episodes, an existing output
            of another model, size, latent width or settings, or a Minari export of panoramas.
    """
    from btnk_env.training.distributed import barrier, init_distributed, shutdown

    if batch_size < 1 or chunk_size < 1:
        raise ValueError(f"batch_size and chunk_size must be >= 1, got {batch_size} and {chunk_size}")
    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype must be float32 or float16, got {dtype!r}")
    src = open_source(source)
    if minari_id is not None:
        if src.kind != "episodes":
            raise ValueError("--minari-id exports episodes; this dataset holds single panoramas")
        from btnk_env.formats.minari_export import check_dataset_id

        check_dataset_id(minari_id)
    ctx = init_distributed("auto", device=device, timeout_s=7 * 24 * 3600)  # ranks wait for the slowest at the end
    stack = contextlib.ExitStack()
    try:
        net, meta = _prepare(src, out, model, precision, ctx.device, dtype, chunk_size, minari_id, backend)
        minari_kept = minari_id is not None and _minari_kept(minari_id, meta)  # another dataset there: refused here
        root = Path(out)
        n = len(src.files)
        chunks = [(k, k * chunk_size, min(chunk_size, n - k * chunk_size)) for k in range(-(-n // chunk_size))]
        old = fmt.read_meta(root)
        if (old is not None and old.get("complete") and old.get("num_frames") == n and not fmt.damaged_files(root, old)
                and (minari_id is None or minari_kept)):
            logger.info("%s is complete: nothing to do", root)
            return root
        lock = f".encode-rank{ctx.rank}.lock"  # one encode (of each rank) at a time writes the folder
        if ctx.is_main:
            claim_dir(root, fmt.KIND, "use another --out", fmt.written_before_markers)
            stack.enter_context(exclusive_lock(root, lock))
            fmt.write_meta(root, {**meta, "complete": False})
        barrier()
        if not ctx.is_main:
            stack.enter_context(exclusive_lock(root, lock))
        todo = [c for c in chunks if not fmt.chunk_is_done(root, *c)]
        barrier()  # every rank has read the same markers before anyone writes
        mine = todo[ctx.rank::ctx.world_size]
        if todo and ctx.is_main:
            logger.info("%d of %d chunks to encode (%d ranks)", len(todo), len(chunks), ctx.world_size)
        _encode_chunks(src, root, net, meta["img_size"], mine, batch_size, workers, ctx.device,
                       np.dtype(dtype), progress and ctx.is_main, on_chunk)
        barrier()
        if ctx.is_main:
            _assemble(src, root, meta, chunks)
            if minari_id is not None and not minari_kept:
                from btnk_env.formats.minari_export import export_minari

                export_minari(root, minari_id)
        barrier()
    finally:
        stack.close()
        shutdown()
    return Path(out)


def _minari_kept(minari_id: str, meta: dict) -> bool:
    """Whether Minari dataset ``minari_id`` already holds this encode's export (reported, kept)."""
    from btnk_env.formats.minari_export import existing_export

    kept = existing_export(minari_id, meta)
    if kept:
        logger.warning("Minari dataset %s already holds these episodes (same model, settings and source): kept", minari_id)
    return kept


def _prepare(src, out, model, precision, device, dtype, chunk_size, minari_id, backend="auto"):
    """Load the model, fix the input size, check an existing output: all before any work."""
    check_precision(precision, device)
    name = str(model) if not isinstance(model, BtnkMAE) else "BtnkMAE (in memory)"
    if not isinstance(model, BtnkMAE):
        model = BtnkMAE.from_pretrained(model)
    size = _input_size(_frame_hw(src.files[0]), model)
    meta = {"format": fmt.FORMAT, "kind": src.kind, "model": name, "model_sha256": model_sha256(model),
            "img_size": list(size), "latent_dim": model.latent_dim, "precision": precision, "dtype": dtype,
            "chunk_size": int(chunk_size), "num_frames": len(src.files), "source": src.describe(),
            "source_settings": src.settings, "source_fingerprint": src.fingerprint(), "minari_id": minari_id}
    check_replaceable_dir(out, fmt.KIND, "use another --out", fmt.written_before_markers)  # before any work
    old = fmt.read_meta(out)
    if old is not None:
        diff = [k for k in fmt.COMPAT_KEYS if old.get(k) != meta[k]]
        if diff:
            said = {"model_sha256": f"model: {old.get('model')!r} there (other weights), {name!r} now",
                    "source_fingerprint": f"source: other frames than those encoded there ({old.get('source', {})})"}
            detail = "; ".join(said.get(k, f"{k}: {old.get(k)!r} there, {meta[k]!r} now") for k in diff)
            raise NotOursError(f"{out} holds latents that do not match this encode ({detail}): "
                               "use another --out, or the same model, source and settings to resume")
    if model.training or model.device != device:
        model = copy.deepcopy(model).eval().to(device)  # the caller's model is never modified
    return for_inference(model, precision, backend), meta


@torch.inference_mode()
def _encode_chunks(src, root: Path, net, size, chunks, batch_size, workers, device, dtype, progress, on_chunk) -> None:
    if not chunks:
        return
    from tqdm.auto import tqdm

    batches, owners = [], []
    for k, start, count in chunks:  # batches never cross a chunk
        for b in range(start, start + count, batch_size):
            batches.append(list(range(b, min(b + batch_size, start + count))))
            owners.append(k)
    loader = read_batches(src.files, batches, tuple(size), src.frame_hw, workers=workers)
    bar = tqdm(total=sum(c for _, _, c in chunks), disable=not progress, desc="encode", unit="frame")
    spans = {k: (start, count) for k, start, count in chunks}
    parts: list[np.ndarray] = []
    try:
        for k, x in zip(owners, loader):
            x = (x.pin_memory() if device.type == "cuda" else x).to(device, non_blocking=True)
            if x.dtype == torch.uint8:  # (B, H, W, 3) frames -> (B, 3, h, w) model input
                x = frames_to_tensor(x, size=size)
            latent = net.encode(x)  # (B, D)
            parts.append(latent.float().cpu().numpy().astype(dtype))
            bar.update(len(x))
            start, count = spans[k]
            if sum(len(p) for p in parts) == count:
                fmt.write_chunk(root, k, start, np.concatenate(parts))
                parts = []
                if on_chunk is not None:
                    on_chunk(k)
    finally:
        bar.close()


def _assemble(src, root: Path, meta: dict, chunks: list) -> None:
    """Join the chunks into ``latents.npy``, write the aligned arrays, then ``latents.json`` (complete)."""
    missing = [k for k, start, count in chunks if not fmt.chunk_is_done(root, k, start, count)]
    if missing:
        raise RuntimeError(f"chunks {missing[:5]} are missing after every rank finished; run the encode again to resume")
    n, d = meta["num_frames"], meta["latent_dim"]
    tmp = root / f".{fmt.LATENTS}.tmp"
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.dtype(meta["dtype"]), shape=(n, d))
    for k, start, count in chunks:
        out[start:start + count] = fmt.read_chunk(root, k)
    out.flush()
    del out
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, root / fmt.LATENTS)
    if src.kind == "episodes":
        for name, array in src.arrays().items():
            fmt.save_npy(root / f"{name}.npy", array)
        fmt.write_json(root / fmt.EPISODES, src.data.episodes)
        meta = {**meta, "num_episodes": len(src.data)}
    else:
        fmt.write_json(root / fmt.KEYS, src.keys)
    fmt.write_meta(root, {**meta, "complete": True})


# ---------------------------------------------------------------------------- command line
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``btnk-env encode``."""
    parser.add_argument("dataset", help="panorama folder or shard set, image folder, or episode folder or shard set "
                        "(btnk-env collect)")
    parser.add_argument("--out", required=True, help="output folder (resumed if it exists)")
    parser.add_argument("--model", default="panorama-rooms-small", help="name, release or checkpoint (BtnkMAE.from_pretrained)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH)
    parser.add_argument("--precision", default="fp32", help="fp32, bf16, fp16 (CUDA) or int8 (CPU)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    parser.add_argument("--dtype", choices=("float32", "float16"), default="float32", help="stored latents' dtype")
    parser.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK, help="frames per output chunk")
    parser.add_argument("--workers", type=int, default=2, help="image-decoding threads (0: none)")
    parser.add_argument("--minari-id", default=None, help="also export the episodes as this Minari dataset, "
                        "e.g. btnk/rooms/explorer-v0 (into MINARI_DATASETS_PATH)")
    parser.add_argument("--backend", default="auto", choices=("auto", "torch", "onnxruntime", "openvino"),
                        help="inference backend (auto: the one measured fastest for this CPU, see docs/speed.md)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run ``btnk-env encode``; returns the exit status."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        out = encode_dataset(args.dataset, args.out, args.model, batch_size=args.batch_size, precision=args.precision,
                             device=args.device, dtype=args.dtype, chunk_size=args.chunk_size, workers=args.workers,
                             minari_id=args.minari_id, progress=not args.no_progress, backend=args.backend)
    except ImportError as err:  # an optional dependency (minari); input errors: one line via btnk_env.models.errors.run_cli
        print(f"btnk-env encode: {err}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        meta = fmt.read_meta(out)
        what = f"{meta['num_episodes']} episodes, " if meta["kind"] == "episodes" else ""
        print(f"{what}{meta['num_frames']} latents of {meta['latent_dim']} ({meta['dtype']}) in {out}"
              + (f"; Minari dataset {meta['minari_id']}" if meta.get("minari_id") else ""))
    return 0

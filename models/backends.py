"""Inference backends: this package's own PyTorch path, or the encoder and decoder exported to
ONNX (opset 18) and run by ONNX Runtime or OpenVINO on the CPU.

``for_inference(model, precision, backend=...)`` (:mod:`btnk_env.models.precision`) takes the backend:

- ``"torch"``: the model itself (fp32) or a converted copy, the fused kernels of
  :mod:`btnk_env.models.kernels`; follows later weight changes of the model (fp32).
- ``"onnxruntime"``: fp32 and int8 (dynamic quantization of the exported graph's MatMuls).
- ``"openvino"``: fp32 and bf16 (``INFERENCE_PRECISION_HINT``).
- ``"auto"``: per op (encode, decode) and batch size, the backend measured fastest on this CPU
  tier at this precision (:data:`MEASURED_FASTEST`, filled from idle
  ``python -m benchmarks.bench_engines`` runs), where its package is installed; ``torch``
  elsewhere. Decided once per process per precision (:func:`backend_choice`, a :class:`Route`),
  forced with ``BTNK_BACKEND=torch|onnxruntime|openvino``. Where the route names an engine for
  any cell, ``for_inference`` returns an :class:`EngineModel` (a snapshot, see below) that runs
  each call on the backend its route names for that op and batch.

An engine runs a snapshot: the model's weights as they were when :class:`EngineModel` was
built (the model itself is not changed), exported once per input size at the first call of
that size (about a second for ViT-B). ``for_inference`` keeps the snapshot of a model while its
weights stay as they were (same storage and version counters), so repeated calls such as
``decode_rollout`` export once. fp32 outputs equal the torch path's within 1e-5 (tested).
Engines run on the CPU only and with the thread count torch runs with
(:func:`btnk_env.models.threads.inference_threads`).
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import os
import tempfile
import warnings
import weakref
from pathlib import Path
from typing import Callable, Dict, NamedTuple, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn as nn

BACKENDS = ("torch", "onnxruntime", "openvino")
#: What a caller may ask for: a backend of :data:`BACKENDS` or ``"auto"``.
CHOICES = ("auto",) + BACKENDS
ENV_VAR = "BTNK_BACKEND"
#: The precisions each engine is offered in (``torch``: all of :data:`btnk_env.models.precision.PRECISIONS`).
ENGINE_PRECISIONS = {"onnxruntime": ("fp32", "int8"), "openvino": ("fp32", "bf16")}
OPS = ("encode", "decode")
#: ``(CPU tier name, precision, op) -> ((smallest batch, backend), ...)``, batches ascending: the
#: backend measured fastest at each measured batch (1, 8, 32) of ViT-B at 224x224, every backend on
#: the same thread count (``python -m benchmarks.bench_engines`` and side-by-side runs, JSON in
#: ``docs/benchmarks/``). An engine is listed for a cell where its paired ratio over the torch path
#: was at least :data:`AHEAD` in every run that measured that cell. A batch runs the backend of the
#: largest listed batch not above it; a tier, precision or op not listed runs ``torch``. int8 stays
#: on torch everywhere: ONNX Runtime's int8 graph is far less exact (latent cosine 0.956 against
#: 0.9994 for the torch path's).
MEASURED_FASTEST: Dict[Tuple[str, str, str], Tuple[Tuple[int, str], ...]] = {
    # AMD EPYC, AVX2, 2 threads, ViT-B 224, idle runs of 2026-12-01 14:35-14:46 (docs/benchmarks/
    # engines-base-224*.json): ONNX Runtime 1.20-1.55x the torch path at encode batch 1; at encode
    # batch 8 and 32 within 1.01-1.06x (a tie: torch); decode: torch ahead of both engines (0.77-1.04x).
    ("AVX2", "fp32", "encode"): ((1, "onnxruntime"), (8, "torch")),
}
#: The paired ratio over the torch path from which an engine counts as ahead (round-to-round noise).
AHEAD = 1.1
OPSET = 18

_CHOICE: Dict[str, "Route"] = {}  # precision -> what "auto" runs, see backend_choice()


class Route(NamedTuple):
    """Which backend runs each op at each batch size (decided once, see :func:`backend_choice`)."""

    steps: Dict[str, Tuple[Tuple[int, str], ...]]
    """``op -> ((smallest batch, backend), ...)``, batches ascending; an op not listed runs ``torch``."""
    why: str

    @classmethod
    def everywhere(cls, backend: str, why: str) -> "Route":
        """One backend for every op and batch."""
        return cls({op: ((1, backend),) for op in OPS}, why)

    def backend(self, op: str, batch: int) -> str:
        """The backend that runs ``op`` (``"encode"`` or ``"decode"``) on a batch of ``batch``."""
        chosen = "torch"
        for smallest, name in self.steps.get(op, ()):
            if batch >= smallest:
                chosen = name
        return chosen

    @property
    def engines(self) -> Tuple[str, ...]:
        """The engine backends this route runs anywhere (empty: the torch path only)."""
        return tuple(sorted({name for steps in self.steps.values() for _, name in steps} - {"torch"}))

    def describe(self) -> str:
        """One line, e.g. ``encode: torch, openvino from batch 8; decode: torch``."""
        parts = []
        for op in OPS:
            steps = self.steps.get(op, ())
            if not steps or steps[0][0] > 1:
                steps = ((1, "torch"),) + steps
            said = [name if smallest <= 1 else f"{name} from batch {smallest}" for smallest, name in steps]
            parts.append(f"{op}: {', '.join(said)}")
        return "; ".join(parts)


def backend_missing(name: str) -> Optional[str]:
    """``None`` where backend ``name`` can run here, else why not (one line)."""
    if name == "torch":
        return None
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {CHOICES}, got {name!r}")
    missing = [m for m in ("onnx", name) if importlib.util.find_spec(m) is None]
    if missing:
        return f"{' and '.join(missing)} not installed (pip install {' '.join(missing)})"
    return None


def backend_choice(precision: str = "fp32") -> Route:
    """What ``backend="auto"`` runs on the CPU at ``precision``, per op and batch (decided once)."""
    if precision not in _CHOICE:
        _CHOICE[precision] = _choose(precision)
    return _CHOICE[precision]


def _choose(precision: str) -> Route:
    from btnk_env.models.hardware import cpu_tier

    forced = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if forced not in CHOICES:
        raise ValueError(f"{ENV_VAR}={forced!r}: use one of {CHOICES}")
    if forced != "auto":
        if forced != "torch" and precision not in ENGINE_PRECISIONS[forced]:
            return Route.everywhere("torch", f"{ENV_VAR}={forced}, but {forced} does not offer {precision}")
        return Route.everywhere(forced, f"forced by {ENV_VAR}")
    tier = cpu_tier().name
    steps = {op: MEASURED_FASTEST.get((tier, precision, op), ()) for op in OPS}
    missing = {name: backend_missing(name) for op_steps in steps.values() for _, name in op_steps}
    missing = {name: why for name, why in missing.items() if why}
    if missing:  # an engine measured faster but absent: torch in its cells
        steps = {op: tuple((b, "torch" if name in missing else name) for b, name in s) for op, s in steps.items()}
    route = Route({op: s for op, s in steps.items() if s}, "")
    if not route.engines:
        why = "; ".join(f"{name} measured faster in some cells, but {why}" for name, why in missing.items())
        return route._replace(why=f"{tier}, {precision}: " + (why or "no engine measured faster than the torch path"))
    return route._replace(why=f"{tier}, {precision}: the backend measured fastest per op and batch")


def check_backend(backend: str, precision: str, device: "torch.device | str") -> Route:
    """Validate ``backend`` for a resolved ``precision`` and ``device``; returns what runs where
    (``"auto"`` resolved by :func:`backend_choice`). Raises ``ValueError`` with the fix."""
    if backend not in CHOICES:
        raise ValueError(f"backend must be one of {CHOICES}, got {backend!r}")
    if torch.device(device).type != "cpu":
        if backend not in ("auto", "torch"):
            raise ValueError(f"the {backend} backend runs on the CPU; use backend='torch' on {torch.device(device)}")
        return Route.everywhere("torch", f"{torch.device(device).type}: the torch path")
    if backend == "auto":
        return backend_choice(precision)
    if backend != "torch":
        if precision not in ENGINE_PRECISIONS[backend]:
            raise ValueError(f"{backend} is offered in {' and '.join(ENGINE_PRECISIONS[backend])}, not {precision}")
        reason = backend_missing(backend)
        if reason:
            raise ValueError(f"backend {backend!r}: {reason}")
    return Route.everywhere(backend, "asked for")


class _Encode(nn.Module):
    """The graph exported for encoding: ``images (B, 3, H, W)`` -> ``latent (B, D)``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.encoder = model.encoder

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder.forward_latent(images)


class _Decode(nn.Module):
    """The graph exported for decoding on one grid: ``latent (B, D)`` -> ``patches (B, N, p * p * 3)``."""

    def __init__(self, model: nn.Module, grid: Tuple[int, int]) -> None:
        super().__init__()
        self.decoder, self.grid = model.decoder, grid

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.decoder(latent, self.grid)


def export_onnx(module: nn.Module, example: torch.Tensor, path: Path) -> Path:
    """Write ``module`` (eval, float32, CPU) as ONNX at ``path``, batch size dynamic."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the grid's Python ints: one graph per size
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter: the other needs onnxscript
        torch.onnx.export(module, (example,), str(path), opset_version=OPSET, dynamo=False, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    return path


def _session(backend: str, precision: str, path: Path, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """A function running the ONNX graph at ``path`` with ``backend``: ``x`` float32 -> ``y`` float32."""
    if backend == "onnxruntime":
        import onnxruntime as ort

        if precision == "int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantized = path.with_suffix(".int8.onnx")
            logging.getLogger().disabled, was = True, logging.getLogger().disabled  # its pre-processing hint
            try:
                quantize_dynamic(str(path), str(quantized), weight_type=QuantType.QInt8)
            finally:
                logging.getLogger().disabled = was
            path = quantized
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1  # 0: ONNX Runtime's default
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return lambda x: session.run(None, {"x": x})[0]
    import openvino as ov

    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": {"fp32": "f32", "bf16": "bf16"}[precision], "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
    request = compiled.create_infer_request()
    return lambda x: request.infer({0: x})[0].copy()


class EngineModel:
    """A bottleneck MAE run by ONNX Runtime or OpenVINO: :meth:`encode`, :meth:`decode_patches`
    and :meth:`decode` as :class:`models.BtnkMAE` has them, outputs float32 on the CPU.

    Args:
        model: a :class:`models.BtnkMAE` (copied as it is now; never changed).
        backend: ``"onnxruntime"`` or ``"openvino"`` for every call, or a :class:`Route` naming the
            backend per op and batch size (cells it gives to ``"torch"`` run the copy's own torch
            path at ``precision``).
        precision: one the route's engines offer (``ENGINE_PRECISIONS``).
        threads: intra-op threads (default: ``torch.get_num_threads()`` when built; 0: the
            engine's own default, all cores).

    Example:
        >>> from models import BtnkMAE
        >>> model = BtnkMAE("test", img_size=(32, 64)).eval()
        >>> engine = EngineModel(model, "onnxruntime")                    # doctest: +SKIP
        >>> tuple(engine.encode(torch.randn(2, 3, 32, 64)).shape)       # doctest: +SKIP
        (2, 64)
    """

    def __init__(self, model: nn.Module, backend: Union[str, Route], precision: str = "fp32",
                 threads: Optional[int] = None) -> None:
        route = check_backend(backend, precision, "cpu") if isinstance(backend, str) else backend
        if not route.engines:
            raise ValueError("EngineModel runs an engine; backend='torch' is the model itself")
        for name in route.engines:
            check_backend(name, precision, "cpu")
        with torch.inference_mode(False):
            self.model = copy.deepcopy(model).float().cpu().eval()
        self.route, self.precision = route, precision
        every = {route.backend(op, b) for op in OPS for b in [1, *(b for b, _ in route.steps.get(op, ()))]}
        self.backend = every.pop() if len(every) == 1 else "auto"  # one engine everywhere, or "auto"
        self.threads = torch.get_num_threads() if threads is None else threads
        self.config = self.model.config
        self._torch: Optional[nn.Module] = None  # the copy at `precision` for the route's torch cells
        self._runs: Dict[tuple, Callable[[np.ndarray], np.ndarray]] = {}

    img_size = property(lambda self: self.model.img_size)
    latent_dim = property(lambda self: self.model.latent_dim)
    patch_size = property(lambda self: self.model.patch_size)
    device = property(lambda self: torch.device("cpu"))
    dtype = property(lambda self: torch.float32)
    training = False

    def _torch_path(self) -> nn.Module:
        if self._torch is None:
            from btnk_env.models.precision import for_inference

            self._torch = for_inference(self.model, self.precision, backend="torch")
        return self._torch

    def _run(self, key: tuple, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        backend = self.route.backend(key[0], x.shape[0])
        key = (backend, *key)
        if key not in self._runs:
            example = x[:1].expand(2, *x.shape[1:]).contiguous()  # batch 2: the exporter keeps it dynamic
            with tempfile.TemporaryDirectory(prefix="btnk_onnx_") as tmp:
                path = export_onnx(module, example, Path(tmp) / "graph.onnx")
                self._runs[key] = _session(backend, self.precision, path, self.threads)
        return torch.from_numpy(self._runs[key](x.detach().float().cpu().contiguous().numpy()))

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """``images: (B, 3, H, W)`` float, ImageNet-normalized -> latent ``(B, D)`` float32."""
        images = self.model._check_images(images)
        if self.route.backend("encode", images.shape[0]) == "torch":
            return self._torch_path().encode(images).float()
        return self._run(("encode", *images.shape[-2:]), _Encode(self.model), images)

    def decode_patches(self, latent: torch.Tensor, size=None) -> torch.Tensor:
        """``latent: (B, D)`` -> patches ``(B, N, p * p * 3)`` of an image of ``size`` (default :attr:`img_size`)."""
        latent = self.model._check_latent(latent)
        if self.route.backend("decode", latent.shape[0]) == "torch":
            return self._torch_path().decode_patches(latent, size).float()
        grid = self.model._grid(size)
        return self._run(("decode", *grid), _Decode(self.model, grid), latent)

    def decode(self, latent: torch.Tensor, size=None) -> torch.Tensor:
        """``latent: (B, D)`` -> images ``(B, 3, H, W)`` of ``size``, ImageNet-normalized."""
        return self.model.unpatchify(self.decode_patches(latent, size), size)

    def __repr__(self) -> str:
        return f"EngineModel({self.route.describe()}; {self.precision}, {self.threads} threads, D={self.latent_dim})"


#: ``model -> (weight state, {(precision, route): EngineModel})``: the snapshots :func:`engine_for` built.
_SNAPSHOTS: "weakref.WeakKeyDictionary[nn.Module, tuple]" = weakref.WeakKeyDictionary()


def _weight_state(model: nn.Module) -> Optional[tuple]:
    """What identifies the model's weights as they are now (``None``: tensors without version counters)."""
    tensors = [*model.parameters(), *model.buffers()]
    if any(t.is_inference() for t in tensors):
        return None
    return tuple((t.data_ptr(), t._version) for t in tensors)


def engine_for(model: nn.Module, route: Route, precision: str) -> EngineModel:
    """An :class:`EngineModel` of ``model`` as it is now, reused while its weights stay unchanged
    (same storage and version counter of every parameter and buffer)."""
    state = _weight_state(model)
    held = _SNAPSHOTS.get(model)
    if state is None or held is None or held[0] != state:
        held = (state, {})
        if state is not None:
            _SNAPSHOTS[model] = held
    key = (precision, route.describe())
    if key not in held[1]:
        held[1][key] = EngineModel(model, route, precision)
    return held[1][key]

"""Inference backends: this package's own PyTorch path, or the encoder and decoder exported to
ONNX (opset 18) and run by ONNX Runtime or OpenVINO on the CPU.

``for_inference(model, precision, backend=...)`` (:mod:`btnk_env.models.precision`) takes the backend:

- ``"torch"``: the model itself (fp32) or a converted copy, the fused kernels of
  :mod:`btnk_env.models.kernels`; follows later weight changes of the model (fp32).
- ``"onnxruntime"``: fp32 and int8 (dynamic quantization of the exported graph's MatMuls).
- ``"openvino"``: fp32 and bf16 (``INFERENCE_PRECISION_HINT``).
- ``"auto"``: the fastest of those measured for this CPU tier and precision
  (:data:`MEASURED_FASTEST`, filled from ``python -m benchmarks.bench_engines`` runs), where its
  package is installed; ``torch`` elsewhere. Decided once per process per precision
  (:func:`backend_choice`), forced with ``BTNK_BACKEND=torch|onnxruntime|openvino``.

An engine runs a snapshot: the model's weights as they were when :class:`EngineModel` was
built (the model itself is not changed), exported once per input size at the first call of
that size (about a second for ViT-B). fp32 outputs equal the torch path's within 1e-5 (tested).
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
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn

BACKENDS = ("torch", "onnxruntime", "openvino")
#: What a caller may ask for: a backend of :data:`BACKENDS` or ``"auto"``.
CHOICES = ("auto",) + BACKENDS
ENV_VAR = "BTNK_BACKEND"
#: The precisions each engine is offered in (``torch``: all of :data:`btnk_env.models.precision.PRECISIONS`).
ENGINE_PRECISIONS = {"onnxruntime": ("fp32", "int8"), "openvino": ("fp32", "bf16")}
#: ``(CPU tier name, precision) -> backend``: where an engine measured faster than the torch path
#: for encode and decode at batch 1, 8 and 32 (paired ratios, ``benchmarks/results/engines-*.json``).
#: Missing entries run ``torch``.
MEASURED_FASTEST: Dict[Tuple[str, str], str] = {}
OPSET = 18

_CHOICE: Dict[str, Tuple[str, str]] = {}  # precision -> (backend, why), see backend_choice()


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


def backend_choice(precision: str = "fp32") -> Tuple[str, str]:
    """``(backend, why)``: what ``backend="auto"`` runs on the CPU at ``precision`` (decided once)."""
    if precision not in _CHOICE:
        _CHOICE[precision] = _choose(precision)
    return _CHOICE[precision]


def _choose(precision: str) -> Tuple[str, str]:
    from btnk_env.models.hardware import cpu_tier

    forced = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if forced not in CHOICES:
        raise ValueError(f"{ENV_VAR}={forced!r}: use one of {CHOICES}")
    if forced != "auto":
        if forced != "torch" and precision not in ENGINE_PRECISIONS[forced]:
            return "torch", f"{ENV_VAR}={forced}, but {forced} does not offer {precision}"
        return forced, f"forced by {ENV_VAR}"
    tier = cpu_tier().name
    best = MEASURED_FASTEST.get((tier, precision), "torch")
    if best == "torch":
        return "torch", f"{tier}, {precision}: no engine measured faster than the torch path"
    reason = backend_missing(best)
    if reason:
        return "torch", f"{tier}, {precision}: {best} measured faster, but {reason}"
    return best, f"{tier}, {precision}: measured faster than the torch path"


def check_backend(backend: str, precision: str, device: "torch.device | str") -> str:
    """Validate ``backend`` for a resolved ``precision`` and ``device``; returns the backend to run
    (``"auto"`` resolved by :func:`backend_choice`). Raises ``ValueError`` with the fix."""
    if backend not in CHOICES:
        raise ValueError(f"backend must be one of {CHOICES}, got {backend!r}")
    if torch.device(device).type != "cpu":
        if backend not in ("auto", "torch"):
            raise ValueError(f"the {backend} backend runs on the CPU; use backend='torch' on {torch.device(device)}")
        return "torch"
    if backend == "auto":
        return backend_choice(precision)[0]
    if backend != "torch":
        if precision not in ENGINE_PRECISIONS[backend]:
            raise ValueError(f"{backend} is offered in {' and '.join(ENGINE_PRECISIONS[backend])}, not {precision}")
        reason = backend_missing(backend)
        if reason:
            raise ValueError(f"backend {backend!r}: {reason}")
    return backend


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
        backend: ``"onnxruntime"`` or ``"openvino"``.
        precision: one of ``ENGINE_PRECISIONS[backend]``.
        threads: intra-op threads (default: ``torch.get_num_threads()`` when built; 0: the
            engine's own default, all cores).

    Example:
        >>> from models import BtnkMAE
        >>> model = BtnkMAE("test", img_size=(32, 64)).eval()
        >>> engine = EngineModel(model, "onnxruntime")                    # doctest: +SKIP
        >>> tuple(engine.encode(torch.randn(2, 3, 32, 64)).shape)       # doctest: +SKIP
        (2, 64)
    """

    def __init__(self, model: nn.Module, backend: str, precision: str = "fp32", threads: Optional[int] = None) -> None:
        check_backend(backend, precision, "cpu")
        if backend == "torch":
            raise ValueError("EngineModel runs an engine; backend='torch' is the model itself")
        with torch.inference_mode(False):
            self.model = copy.deepcopy(model).float().cpu().eval()
        self.backend, self.precision = backend, precision
        self.threads = torch.get_num_threads() if threads is None else threads
        self.config = self.model.config
        self._runs: Dict[tuple, Callable[[np.ndarray], np.ndarray]] = {}

    img_size = property(lambda self: self.model.img_size)
    latent_dim = property(lambda self: self.model.latent_dim)
    patch_size = property(lambda self: self.model.patch_size)
    device = property(lambda self: torch.device("cpu"))
    dtype = property(lambda self: torch.float32)
    training = False

    def _run(self, key: tuple, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if key not in self._runs:
            example = x[:1].expand(2, *x.shape[1:]).contiguous()  # batch 2: the exporter keeps it dynamic
            with tempfile.TemporaryDirectory(prefix="btnk_onnx_") as tmp:
                path = export_onnx(module, example, Path(tmp) / "graph.onnx")
                self._runs[key] = _session(self.backend, self.precision, path, self.threads)
        return torch.from_numpy(self._runs[key](x.detach().float().cpu().contiguous().numpy()))

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """``images: (B, 3, H, W)`` float, ImageNet-normalized -> latent ``(B, D)`` float32."""
        images = self.model._check_images(images)
        return self._run(("encode", *images.shape[-2:]), _Encode(self.model), images)

    def decode_patches(self, latent: torch.Tensor, size=None) -> torch.Tensor:
        """``latent: (B, D)`` -> patches ``(B, N, p * p * 3)`` of an image of ``size`` (default :attr:`img_size`)."""
        latent = self.model._check_latent(latent)
        grid = self.model._grid(size)
        return self._run(("decode", *grid), _Decode(self.model, grid), latent)

    def decode(self, latent: torch.Tensor, size=None) -> torch.Tensor:
        """``latent: (B, D)`` -> images ``(B, 3, H, W)`` of ``size``, ImageNet-normalized."""
        return self.model.unpatchify(self.decode_patches(latent, size), size)

    def __repr__(self) -> str:
        return f"EngineModel({self.backend}, {self.precision}, {self.threads} threads, D={self.latent_dim})"

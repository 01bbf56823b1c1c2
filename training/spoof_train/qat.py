"""Quantisation-aware fine-tuning (``spoof-train qat``) of checkpoints that ``spoof-export --int8`` quantises.

The fake quantisation mirrors what the exporter's ONNX Runtime quantiser (``spoof_export.quantize``) does
to the same model, so the network learns to tolerate exactly that rounding:

* **which ops**: every ``nn.Linear`` (exported as MatMul / Gemm) and, with ``int8_ops="matmul-conv"``, every
  ``nn.Conv1d`` / ``nn.Conv2d`` except the first one in module order (the exporter keeps the first
  convolution FP32 unless ``quantize_first_conv``). With ``int8_ops="matmul"`` convolutions stay FP32.
* **weights**: symmetric per-output-channel int8. Target ``cpu``: ORT's ``reduce_range`` gives the 7-bit
  range ``[-64, 64]`` (scale ``absmax / 64``); target ``tensorrt``: ``[-127, 127]`` (scale ``absmax / 127``).
* **activations** (the input of each quantised op, and the output of a quantised convolution, which is
  where ORT puts Q/DQ): per-tensor with ranges from observers. Target ``cpu``: asymmetric uint8 ``[0, 255]``
  (ORT applies ``reduce_range`` to weights only, not activations); target ``tensorrt``: symmetric int8
  ``[-127, 127]``, zero point 0 (saturating to ``[-128, 127]`` like ``QuantizeLinear``). Scale and zero
  point follow ORT's ``compute_scale_zp`` (range widened to include 0, ``zp = round(qmin - rmin / scale)``),
  and quantise-dequantise is ``(clamp(round_half_even(x / scale) + zp, qmin, qmax) - zp) * scale`` like
  ``QuantizeLinear`` / ``DequantizeLinear``. The straight-through estimator passes gradients inside the
  range and zeroes them where the value was clipped.
* **attention**: HF WavLM calls ``F.multi_head_attention_forward`` with the projections' weights (the
  Linear modules are never called); it is routed through the (fake-quantised) projection modules and the
  two activation x activation MatMuls (``Q K^T``, ``P V``), which ORT's MatMul quantisation also covers,
  get activation fake quantisation on both inputs.
* **not mirrored**: int32 bias quantisation (scale ``s_x * s_w``: far below the weight rounding noise).

Observers are initialised like ORT's MinMax calibration (global min / max over ``calib_batches`` batches
with fake quantisation off), then follow the data during training (``observer="minmax"`` keeps the global
extremes, ``"ema"`` an exponential moving average with ``observer_momentum``).

Loss: ``alpha_ce * CE(student, label) + alpha_kd * T^2 * KL(softmax(teacher / T) || softmax(student / T))``,
the teacher being the frozen FP32 input checkpoint. The result is an ordinary FP32 contract-A checkpoint
(fake quantisation removed; its state dict has exactly the input's keys) whose ``training.json`` records
the ``qat`` settings; ``spoof-export --int8`` then calibrates and quantises it as usual.
"""

from __future__ import annotations

import logging
import math
import types
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from spoof_train.config import FineTuneConfig
from spoof_train.errors import ConfigError

if TYPE_CHECKING:
    import torch

__all__ = [
    "INT8_OPS",
    "OBSERVERS",
    "QAT_TARGETS",
    "ActivationFakeQuant",
    "FakeQuantHook",
    "FakeQuantizer",
    "QATConfig",
    "fake_quant_weight",
    "qat",
    "quant_range",
]

log = logging.getLogger("spoof_train")

QAT_TARGETS = ("cpu", "tensorrt")
INT8_OPS = ("matmul-conv", "matmul")
OBSERVERS = ("minmax", "ema")


def quant_range(target: str, kind: str) -> tuple[int, int, bool]:
    """``(qmin, qmax, symmetric)`` that ORT's quantiser uses for ``kind`` ('weight' | 'activation')."""
    if target not in QAT_TARGETS:
        raise ConfigError(f"qat target: expected one of {QAT_TARGETS}, given {target!r}")
    if kind == "weight":
        return (-64, 64, True) if target == "cpu" else (-127, 127, True)
    if kind == "activation":
        return (0, 255, False) if target == "cpu" else (-127, 127, True)
    raise ConfigError(f"quant_range kind: expected 'weight' or 'activation', given {kind!r}")


def _scale_zero_point(
    rmin: torch.Tensor, rmax: torch.Tensor, qmin: int, qmax: int, symmetric: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """ORT's ``compute_scale_zp`` in float64 (scale returned as float32, zero point as float)."""
    import torch

    rmin = torch.clamp(rmin.double(), max=0.0)
    rmax = torch.clamp(rmax.double(), min=0.0)
    if symmetric:
        absmax = torch.maximum(rmin.abs(), rmax.abs())
        rmin, rmax = -absmax, absmax
    scale = (rmax - rmin) / float(qmax - qmin)
    tiny = torch.finfo(torch.float32).tiny
    degenerate = scale < tiny
    if symmetric:
        zp = torch.full_like(scale, float(round((qmin + qmax) / 2.0)))
    else:
        zp = torch.round(qmin - rmin / torch.where(degenerate, torch.ones_like(scale), scale))
    scale = torch.where(degenerate, torch.ones_like(scale), scale)
    zp = torch.where(degenerate, torch.zeros_like(zp), zp)
    return scale.float(), zp.float()


class _FakeQuantSTE:
    """Quantise-dequantise with a clipping straight-through estimator (autograd.Function built lazily)."""

    fn: Any = None

    @classmethod
    def apply(cls, x: torch.Tensor, scale: torch.Tensor, zp: torch.Tensor, qmin: int, qmax: int) -> Any:
        if cls.fn is None:
            import torch

            class Fn(torch.autograd.Function):
                @staticmethod
                def forward(ctx: Any, x: Any, scale: Any, zp: Any, *bounds: int) -> Any:
                    qmin, qmax = bounds
                    q = torch.round(x / scale) + zp
                    inside = (q >= qmin) & (q <= qmax)
                    ctx.save_for_backward(inside)
                    return (torch.clamp(q, qmin, qmax) - zp) * scale

                @staticmethod
                def backward(ctx: Any, *grads: Any) -> Any:
                    (inside,) = ctx.saved_tensors
                    return grads[0] * inside.to(grads[0].dtype), None, None, None, None

            cls.fn = Fn
        return cls.fn.apply(x, scale, zp, qmin, qmax)


def fake_quant_weight(weight: torch.Tensor, target: str) -> torch.Tensor:
    """Per-output-channel (axis 0) symmetric int8 quantise-dequantise of a weight, as ORT does it."""
    qmin, qmax, sym = quant_range(target, "weight")
    flat = weight.detach().reshape(weight.shape[0], -1)
    scale, zp = _scale_zero_point(flat.amin(1), flat.amax(1), qmin, qmax, sym)
    shape = (-1,) + (1,) * (weight.dim() - 1)
    return _FakeQuantSTE.apply(weight, scale.view(shape), zp.view(shape), qmin, qmax)  # type: ignore[no-any-return]


def _activation_fake_quant_cls() -> type:
    import torch

    class _ActivationFakeQuant(torch.nn.Module):
        """Per-tensor activation fake quantisation with a min/max observer (ORT MinMax calibration)."""

        min_val: torch.Tensor
        max_val: torch.Tensor

        def __init__(self, target: str, observer: str = "minmax", momentum: float = 0.01) -> None:
            super().__init__()
            if observer not in OBSERVERS:
                raise ConfigError(f"qat observer: expected one of {OBSERVERS}, given {observer!r}")
            self.qmin, self.qmax, self.symmetric = quant_range(target, "activation")
            self.observer, self.momentum = observer, momentum
            self.observing = True
            self.quantizing = True
            self.register_buffer("min_val", torch.tensor(float("inf")))
            self.register_buffer("max_val", torch.tensor(float("-inf")))

        @property
        def initialised(self) -> bool:
            return bool(torch.isfinite(self.min_val)) and bool(torch.isfinite(self.max_val))

        def qparams(self) -> tuple[torch.Tensor, torch.Tensor]:
            return _scale_zero_point(self.min_val, self.max_val, self.qmin, self.qmax, self.symmetric)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.observing:
                with torch.no_grad():
                    lo, hi = x.detach().min().float(), x.detach().max().float()
                    if not self.initialised or self.observer == "minmax":
                        self.min_val.copy_(torch.minimum(self.min_val, lo))
                        self.max_val.copy_(torch.maximum(self.max_val, hi))
                    else:
                        m = self.momentum
                        self.min_val.mul_(1 - m).add_(m * lo)
                        self.max_val.mul_(1 - m).add_(m * hi)
            if not self.quantizing or not self.initialised:
                return x
            scale, zp = self.qparams()
            # QuantizeLinear saturates to the storage type: int8 [-128, 127] even when the scale was
            # computed from the symmetric [-127, 127] range
            low = -128 if self.qmin < 0 else self.qmin
            return _FakeQuantSTE.apply(x, scale, zp, low, self.qmax)  # type: ignore[no-any-return]

    return _ActivationFakeQuant


def ActivationFakeQuant(target: str, observer: str = "minmax", momentum: float = 0.01) -> Any:
    """A ``torch.nn.Module`` that observes a tensor's range and fake-quantises it like ORT's Q/DQ pair."""
    return _activation_fake_quant_cls()(target, observer, momentum)


class FakeQuantizer:
    """Insert fake quantisation into a model's Linear / Conv modules in place, and remove it again.

    The observers live in ``self.modules`` (a ``ModuleDict``), not in the model, so the model's state dict
    keeps exactly its contract-A keys while fake quantisation is attached.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        target: str = "cpu",
        int8_ops: str = "matmul-conv",
        quantize_first_conv: bool = False,
        observer: str = "minmax",
        momentum: float = 0.01,
    ) -> None:
        import torch

        if int8_ops not in INT8_OPS:
            raise ConfigError(f"qat int8_ops: expected one of {INT8_OPS}, given {int8_ops!r}")
        quant_range(target, "weight")  # validates target
        self.model, self.target = model, target
        self.modules = torch.nn.ModuleDict()
        self.wrapped: dict[str, torch.nn.Module] = {}
        self.skipped: list[str] = []
        self.attention: dict[str, torch.nn.Module] = {}
        self._state = {"weights": True}  # weight fake quantisation on / off (shared with the forwards)
        convs = (torch.nn.Conv1d, torch.nn.Conv2d)
        first_conv = next((n for n, m in model.named_modules() if isinstance(m, convs)), None)
        for name, mod in model.named_modules():
            is_conv = isinstance(mod, convs)
            if not (isinstance(mod, torch.nn.Linear) or is_conv):
                continue
            if is_conv and (int8_ops == "matmul" or (name == first_conv and not quantize_first_conv)):
                self.skipped.append(name)
                continue
            key = name.replace(".", "__") or "root"
            fqs = {"input": ActivationFakeQuant(target, observer, momentum)}
            if is_conv:
                fqs["output"] = ActivationFakeQuant(target, observer, momentum)
            self.modules[key] = torch.nn.ModuleDict(fqs)
            self.wrapped[name] = mod
            mod.forward = types.MethodType(
                _make_forward(self.modules[key], target, is_conv, self._state), mod
            )
        # WavLM-style attention calls F.multi_head_attention_forward with the projections' weights (the
        # Linear modules are never called): route it through the modules and fake-quantise the two
        # activation x activation MatMuls (Q K^T and P V), which ORT's MatMul quantisation also covers.
        for name, mod in model.named_modules():
            if hasattr(mod, "torch_multi_head_self_attention") and all(
                hasattr(mod, a) for a in ("q_proj", "k_proj", "v_proj", "out_proj", "num_heads")
            ):
                key = (name.replace(".", "__") or "root") + "__matmuls"
                fqs = {part: ActivationFakeQuant(target, observer, momentum) for part in ("q", "k", "p", "v")}
                self.modules[key] = torch.nn.ModuleDict(fqs)
                self.attention[name] = mod
                mod.torch_multi_head_self_attention = types.MethodType(
                    _make_attention(self.modules[key]), mod
                )
        if not self.wrapped:
            raise ConfigError(
                f"qat: the model has no Linear/Conv module to quantise with int8_ops={int8_ops!r}"
            )
        self.modules.to(next(model.parameters()).device)

    def set_mode(self, *, observing: bool, quantizing: bool) -> None:
        """Observers on / off; fake quantisation (weights and activations) on / off."""
        self._state["weights"] = quantizing
        for fq in self.activation_fake_quants():
            fq.observing, fq.quantizing = observing, quantizing

    def activation_fake_quants(self) -> list[Any]:
        return [fq for group in self._groups().values() for fq in group.values()]

    def _groups(self) -> dict[str, torch.nn.ModuleDict]:
        """The observers by wrapped module: each value is a ModuleDict of activation fake quantisers."""
        return {k: cast("torch.nn.ModuleDict", g) for k, g in self.modules.items()}

    def ranges(self) -> dict[str, list[float]]:
        return {
            f"{k}.{part}": [round(float(_buffer(fq, "min_val")), 6), round(float(_buffer(fq, "max_val")), 6)]
            for k, group in self._groups().items()
            for part, fq in group.items()
        }

    def remove(self) -> None:
        """Restore the plain FP32 forward of every wrapped module."""
        for mod in self.wrapped.values():
            if "forward" in mod.__dict__:
                del mod.forward
        for mod in self.attention.values():
            if "torch_multi_head_self_attention" in mod.__dict__:
                del mod.torch_multi_head_self_attention
        self.wrapped, self.attention = {}, {}


def _buffer(module: torch.nn.Module, name: str) -> torch.Tensor:
    return module.get_buffer(name)


def _make_attention(fqs: Any) -> Any:
    """``torch_multi_head_self_attention`` of HF WavLM, equal to ``F.multi_head_attention_forward`` with
    separate projection weights (eager path, need_weights=True) but through the projection modules."""
    import torch

    def attention(
        self: Any, hidden_states: torch.Tensor, attention_mask: Any, gated_position_bias: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        bsz, tgt, embed = hidden_states.shape
        heads = int(self.num_heads)
        head_dim = embed // heads
        x = hidden_states.transpose(0, 1)  # [T, B, E] like the wrapped torch function

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(tgt, bsz * heads, head_dim).transpose(0, 1)

        q, k, v = split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))
        mask = gated_position_bias
        if attention_mask is not None:
            pad = attention_mask.ne(1).view(bsz, 1, 1, tgt).expand(-1, heads, -1, -1)
            pad_f = torch.zeros(pad.shape, dtype=q.dtype, device=q.device).masked_fill(pad, float("-inf"))
            mask = mask + pad_f.reshape(bsz * heads, 1, tgt)
        q_scaled = q * math.sqrt(1.0 / float(head_dim))
        scores = torch.baddbmm(mask, fqs["q"](q_scaled), fqs["k"](k).transpose(-2, -1))
        probs = torch.softmax(scores, dim=-1)
        if self.training and float(self.dropout) > 0:
            probs = torch.nn.functional.dropout(probs, p=float(self.dropout))
        out = torch.bmm(fqs["p"](probs), fqs["v"](v))
        out = out.transpose(0, 1).contiguous().view(tgt * bsz, embed)
        out = self.out_proj(out).view(tgt, bsz, embed).transpose(0, 1)
        weights = probs.view(bsz, heads, tgt, tgt).mean(dim=1)
        weights = weights[:, None].broadcast_to((*weights.shape[:1], heads, *weights.shape[1:]))
        return out, weights

    return attention


def _make_forward(fqs: Any, target: str, is_conv: bool, state: dict[str, bool]) -> Any:
    import torch.nn.functional as F

    def weight(w: torch.Tensor) -> torch.Tensor:
        return fake_quant_weight(w, target) if state["weights"] else w

    if is_conv:

        def conv_forward(self: Any, x: torch.Tensor) -> torch.Tensor:
            y = self._conv_forward(fqs["input"](x), weight(self.weight), self.bias)
            return fqs["output"](y)  # type: ignore[no-any-return]

        return conv_forward

    def linear_forward(self: Any, x: torch.Tensor) -> torch.Tensor:
        return F.linear(fqs["input"](x), weight(self.weight), self.bias)

    return linear_forward


@dataclass
class QATConfig(FineTuneConfig):
    """Everything ``spoof-train qat`` needs; each field is one CLI flag (the shared ones, data, output,
    run folder and loop options, come from :class:`~spoof_train.config.FineTuneConfig`, keyword-only)."""

    checkpoint: str
    steps: int = 200
    lr: float = 1e-5
    head_lr: float = 1e-4
    int8_ops: str = "matmul-conv"
    target: str = "cpu"
    quantize_first_conv: bool = False
    temperature: float = 2.0
    alpha_ce: float = 1.0
    alpha_kd: float = 1.0
    observer: str = "minmax"
    observer_momentum: float = 0.01
    calib_batches: int = 4

    def validate(self) -> None:
        for name in ("steps", "batch_size", "calib_batches", "max_train_files"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v <= 0):
                raise ConfigError(f"qat {name}: expected an integer > 0, given {v!r}")
        for name in ("lr", "head_lr", "crop_seconds", "temperature"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0):
                raise ConfigError(f"qat {name}: expected a finite number > 0, given {v!r}")
        for name in ("alpha_ce", "alpha_kd"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ConfigError(f"qat {name}: expected a finite weight >= 0, given {v!r}")
        if self.alpha_ce + self.alpha_kd <= 0:
            raise ConfigError("qat: alpha_ce and alpha_kd are both 0; expected at least one > 0")
        if not 0 < self.observer_momentum <= 1:
            raise ConfigError(f"qat observer_momentum: expected 0 < m <= 1, given {self.observer_momentum!r}")
        if self.int8_ops not in INT8_OPS:
            raise ConfigError(f"qat int8_ops: expected one of {INT8_OPS}, given {self.int8_ops!r}")
        if self.target not in QAT_TARGETS:
            raise ConfigError(f"qat target: expected one of {QAT_TARGETS}, given {self.target!r}")
        if self.observer not in OBSERVERS:
            raise ConfigError(f"qat observer: expected one of {OBSERVERS}, given {self.observer!r}")
        self.check_loop_options("qat")


class FakeQuantHook:
    """The :class:`~spoof_train.loop.FitHook` of quantisation-aware fine-tuning: at the start of the loop
    it attaches a :class:`FakeQuantizer` to the model and initialises the observers like ORT's MinMax
    calibration (FP32 forwards of ``calib_batches`` training batches, global min / max); the observers
    ride in the trainer state, so a resumed run goes on with them; at the end it records what was
    quantised and the activation ranges, and removes the fake quantisation."""

    def __init__(self, cfg: QATConfig, record: dict[str, Any]) -> None:
        self.cfg = cfg
        self.fq: FakeQuantizer | None = None
        self.record = record  # the checkpoint's training.json "qat" entry: end() adds the ranges

    def attach(self, model: torch.nn.Module) -> FakeQuantizer:
        cfg = self.cfg
        self.fq = FakeQuantizer(
            model,
            target=cfg.target,
            int8_ops=cfg.int8_ops,
            quantize_first_conv=cfg.quantize_first_conv,
            observer=cfg.observer,
            momentum=cfg.observer_momentum,
        )
        log.info(
            "qat: %d modules fake-quantised, %d kept FP32 %s",
            len(self.fq.wrapped),
            len(self.fq.skipped),
            self.fq.skipped,
        )
        return self.fq

    def start(self, run: Any, state: dict[str, Any] | None) -> None:
        fq = self.attach(run.model)
        if state is not None:
            fq.modules.load_state_dict(state["observers"])
        else:
            self._calibrate(run, fq)
        fq.set_mode(observing=True, quantizing=True)

    def _calibrate(self, run: Any, fq: FakeQuantizer) -> None:
        import torch
        from torch.utils.data import DataLoader

        cfg = self.cfg
        loader = DataLoader(
            run.train_set,
            batch_size=cfg.batch_size,
            shuffle=True,
            collate_fn=run.collate_fn,
            generator=torch.Generator().manual_seed(cfg.seed),
        )
        model = run.model
        was_training = model.training
        model.eval()
        fq.set_mode(observing=True, quantizing=False)
        done = 0
        with torch.no_grad():
            while done < cfg.calib_batches:
                before = done
                for b in loader:
                    if len(b["label"]):
                        model(b["wave"].to(run.device), b["lengths"].to(run.device))
                        done += 1
                        if done == cfg.calib_batches:
                            break
                if done == before:
                    raise ConfigError(f"qat: no usable training clips in split {cfg.train_split!r}")
        model.train(was_training)
        log.info("qat: observers calibrated on %d FP32 batches", done)

    def state_dict(self) -> dict[str, Any]:
        return {"observers": self.fq.modules.state_dict() if self.fq is not None else {}}

    def end(self, run: Any) -> None:
        if self.fq is not None:
            self.record["activation_ranges"] = self.fq.ranges()
            self.fq.remove()
            self.fq = None

    def complete(self, model: torch.nn.Module, run_dir: Path) -> None:
        """Ranges of a run that had already finished when it was resumed (the loop did not run): from
        the observers in its last trainer state."""
        if "activation_ranges" in self.record:
            return
        from spoof_train.checkpoint import load_trainer_state

        state = load_trainer_state(run_dir / "checkpoints" / "last") or {}
        fq = self.attach(model)
        try:
            fq.modules.load_state_dict(state["hooks"][0]["observers"])
            self.record["activation_ranges"] = fq.ranges()
        finally:
            fq.remove()


def qat(cfg: QATConfig) -> Path:
    """Fine-tune ``cfg.checkpoint`` with fake int8 quantisation; returns the FP32 output checkpoint dir.

    The fine-tuning runs in :func:`spoof_train.loop.fit` (a :class:`FakeQuantHook` and a
    :class:`~spoof_train.losses.DistillationObjective` towards the frozen FP32 input), so DDP under
    torchrun, AMP, EMA and ``resume`` work as for ``spoof-train train``; the run folder is
    :meth:`QATConfig.run_folder`.
    """
    import torch

    from spoof_train.checkpoint import checkpoint_sha256, load_checkpoint
    from spoof_train.losses import DistillationObjective
    from spoof_train.train import crop_train_set, fine_tune_run_config, prepare_run_dir, run_fine_tune

    cfg.validate()
    out, run_dir = Path(cfg.out_dir), cfg.run_folder()
    if out.exists() and not cfg.overwrite:
        raise ConfigError(f"qat out_dir {out} already exists: expected a new directory (or overwrite)")
    if out.resolve() == Path(cfg.checkpoint).resolve():
        raise ConfigError(f"qat out_dir {out}: expected a directory other than the input checkpoint")
    torch.manual_seed(cfg.seed)
    teacher, config, info_in = load_checkpoint(cfg.checkpoint)
    student, _, _ = load_checkpoint(cfg.checkpoint)
    probe = FakeQuantizer(
        student, target=cfg.target, int8_ops=cfg.int8_ops, quantize_first_conv=cfg.quantize_first_conv
    )  # what will be quantised (and an early error when nothing can be)
    probe.remove()
    train_set = crop_train_set(
        cfg.manifest,
        cfg.train_split,
        sample_rate=int(config.sample_rate),
        crop_seconds=cfg.crop_seconds,
        seed=cfg.seed,
        max_files=cfg.max_train_files,
    )
    if len(train_set) == 0:
        raise ConfigError(f"qat: no usable training clips in split {cfg.train_split!r}")
    prepare_run_dir(run_dir, resume=cfg.resume, overwrite=cfg.overwrite, what="qat")
    run_cfg = fine_tune_run_config(
        "qat",
        cfg,
        model={"init_checkpoint": str(cfg.checkpoint)},
        epochs=math.ceil(cfg.steps / math.ceil(len(train_set) / cfg.batch_size)),
        max_steps=cfg.steps,
        weight_decay=0.0,
    )
    objective = DistillationObjective(
        teacher, temperature=cfg.temperature, alpha_ce=cfg.alpha_ce, alpha_kd=cfg.alpha_kd
    )
    info: dict[str, Any] = {
        "origin": "qat",
        "source_checkpoint": str(cfg.checkpoint),
        "source_sha256": checkpoint_sha256(cfg.checkpoint),
        "train_files": len(train_set),
    }
    for key in ("calibration", "dev_eer", "best_epoch"):
        if key in info_in:
            info[f"source_{key}"] = info_in[key]  # scores moved: recalibrate on dev before shipping
    info["qat"] = {
        **asdict(cfg),
        "weights": "int8 symmetric per-channel "
        + ("[-64, 64] (reduce_range)" if cfg.target == "cpu" else "[-127, 127]"),
        "activations": "uint8 asymmetric [0, 255]" if cfg.target == "cpu" else "int8 symmetric [-127, 127]",
        "fake_quantised_modules": sorted(probe.wrapped),
        "kept_fp32_modules": probe.skipped,
    }
    hook = FakeQuantHook(cfg, info["qat"])
    run_fine_tune(
        student,
        config,
        train_set,
        run_cfg,
        objective=objective,
        hooks=[hook],
        out=out,
        info=info,
        resume=cfg.resume,
        complete=lambda model: hook.complete(model, run_dir),
    )
    return out

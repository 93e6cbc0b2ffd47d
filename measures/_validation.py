"""Shared input validation (in the spirit of scikit-learn's ``check_array``).

Every error is a ``ValueError`` whose message starts with ``measure '<name>':`` and names the problem.
Inputs may be numpy arrays, torch tensors or nested lists; they come back as torch tensors on the
input's device: float64 on the CPU, the input's floating dtype (float32 for integers) on other devices.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from measures._kernels import all_finite

if TYPE_CHECKING:
    from measures._registry import MeasureInfo

#: Inputs of scale-invariant measures beyond these magnitudes are rescaled exactly (see rescale_extreme).
EXTREME_LARGE = 1e100
EXTREME_SMALL = 1e-100
#: Rows of a probability matrix must sum to one within this tolerance (float32 outputs included).
PROBABILITY_ATOL = 1e-4


def _from_numpy(arr: np.ndarray) -> torch.Tensor:
    """A torch view of a C-contiguous version of ``arr``; a read-only array is copied first (torch cannot
    wrap it: it warns that writes would be undefined)."""
    arr = np.ascontiguousarray(arr)
    return torch.from_numpy(arr if arr.flags.writeable else arr.copy())


def as_tensor(measure: str, x: Any, what: str) -> torch.Tensor:
    """Convert one input to a floating torch tensor (float64 on the CPU)."""
    if isinstance(x, torch.Tensor):
        t = x.detach()
        if t.is_complex():
            raise ValueError(f"measure {measure!r}: {what} is complex ({t.dtype}); measures take real arrays")
    else:
        try:
            arr = np.asarray(x)
        except Exception as exc:  # ragged lists and the like
            raise ValueError(f"measure {measure!r}: {what} is not an array ({exc})") from None
        if np.issubdtype(arr.dtype, np.complexfloating):
            raise ValueError(f"measure {measure!r}: {what} is complex ({arr.dtype}); measures take real arrays")
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise ValueError(f"measure {measure!r}: {what} must be numeric, got dtype {arr.dtype}")
        t = _from_numpy(arr)
    if t.dtype is torch.float64:  # (the common case: no conversion call)
        return t
    if t.device.type == "cpu":
        return t.to(torch.float64)
    return t if t.is_floating_point() else t.to(torch.float32)


def _sum_of_squares(t: torch.Tensor) -> float | None:
    """Σ t² by one BLAS dot over a contiguous CPU tensor (None for other tensors).

    One pass serves two checks: a finite sum proves every entry finite (NaN and ±Inf propagate into
    it), and it bounds the largest magnitude, max t² ≤ Σ t² ≤ numel · max t², which settles
    ``rescale_extreme`` without its own two passes (max and min) in all but extreme cases.
    """
    if t.device.type != "cpu" or t.requires_grad or t.dtype not in (torch.float64, torch.float32) or (
            not t.is_contiguous()) or not t.numel():
        return None
    flat = t.numpy().reshape(-1)
    with np.errstate(over="ignore", invalid="ignore"):
        return float(np.dot(flat, flat))


def _check_matrix(measure: str, t: torch.Tensor, what: str, finite: bool = True) -> float | None:
    """Shape and finiteness checks; returns Σ t² where it was computed for the latter (else None)."""
    if t.ndim != 2:
        raise ValueError(
            f"measure {measure!r}: {what} must be 2-D (N x D), got {t.ndim}-D with shape {tuple(t.shape)}; "
            "flatten or pool conv maps first"
        )
    if t.shape[1] == 0:
        raise ValueError(f"measure {measure!r}: {what} has no columns")
    if not finite:
        return None
    squares = _sum_of_squares(t)
    # A finite sum of squares proves every entry finite; otherwise (NaN/Inf, or an overflow of finite
    # squares) the exact test decides.
    if (squares is None or not math.isfinite(squares)) and not all_finite(t):
        _raise_not_finite(measure, t, what)
    return squares


def _raise_not_finite(measure: str, t: torch.Tensor, what: str) -> None:
    n_bad = int((~torch.isfinite(t)).sum())
    raise ValueError(f"measure {measure!r}: {what} contains {n_bad} NaN or Inf value(s)")


def require_finite(measure: str, t: torch.Tensor, what: str, total: float) -> None:
    """Validation's finiteness check for a measure registered with ``checks_finite=True``, fused into a
    sum it computes anyway: ``total`` is any sum over every entry of ``t`` (e.g. of its column sums), or
    anything finite only where such a sum is (e.g. the squared norm of the column means).

    A finite total proves every entry finite: NaN propagates through sums, +Inf + (−Inf) is NaN, and an
    infinite partial sum never becomes finite again. A non-finite total (NaN/Inf entries, or an overflow
    of finite entries) is settled by the exact elementwise test, which raises validation's ValueError.
    """
    if not math.isfinite(total) and not all_finite(t):
        _raise_not_finite(measure, t, what)


def _check_pair(measure: str, a: torch.Tensor, b: torch.Tensor, min_rows: int) -> None:
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"measure {measure!r}: row counts differ ({a.shape[0]} vs {b.shape[0]}); "
            "both inputs must hold the same N instances in the same order"
        )
    if a.shape[0] < min_rows:
        raise ValueError(f"measure {measure!r}: needs at least {min_rows} rows, got {a.shape[0]}")
    if a.device != b.device:
        raise ValueError(f"measure {measure!r}: inputs are on different devices ({a.device} vs {b.device})")


def _check_probabilities(measure: str, t: torch.Tensor, what: str) -> None:
    if (t < -PROBABILITY_ATOL).any():
        raise ValueError(f"measure {measure!r}: {what} has negative entries; expected probabilities")
    err = (t.sum(dim=1) - 1).abs().max().item()
    if err > PROBABILITY_ATOL:
        raise ValueError(
            f"measure {measure!r}: rows of {what} do not sum to one (max deviation {err:.3g}); "
            "expected probabilities (apply a softmax to logits first)"
        )


def _plain_pair(info: "MeasureInfo", args: Sequence[Any], squares: list) -> tuple[torch.Tensor, torch.Tensor] | None:
    """:func:`validate`'s result for the common case, two CPU float64 N x D tensors without autograd
    (representations, or outputs over the same C >= 2 classes) that pass every check, in one step; None
    for anything else (``validate``'s general route, :func:`_matrix_pair`, then runs and raises the
    errors).

    Why: with cold CPU caches (a measure's first call on a pair) each Python call of the general route
    costs cache misses; its ~10 calls cost ~30 µs at 2000x256, more than ``magnitude_difference``'s
    arithmetic beyond its one pass over the inputs. The checks and their order of effects are
    ``validate``'s: the same fresh ``detach()`` views back (not the caller's objects: the memo keeps its
    content key on the tensor object it gets, guarded by torch's version counter, which writes through
    a numpy view of the same memory do not bump) and the same Σ x² appended to ``squares`` (for
    ``rescale_extreme``).
    """
    a, b = args  # validate checked the count
    if not (type(a) is torch.Tensor and type(b) is torch.Tensor):
        return None
    try:
        # The checks read numpy views: ``.numpy()`` succeeds exactly for CPU tensors without autograd
        # (one libtorch entry point instead of a getter per attribute, each cold in the caches).
        na, nb = a.numpy(), b.numpy()
    except (RuntimeError, TypeError):
        return None
    if not (na.dtype == np.float64 and nb.dtype == np.float64 and na.ndim == 2 and nb.ndim == 2):
        return None
    n, width_a = na.shape
    if n != nb.shape[0] or n < info.min_rows or not width_a or not nb.shape[1]:
        return None
    if info.inputs == "outputs" and (nb.shape[1] != width_a or width_a < 2):
        return None  # outputs cover the same classes, at least two
    if info.checks_finite:
        squares.extend((None, None))
        return a.detach(), b.detach()
    if not (na.flags.c_contiguous and nb.flags.c_contiguous):
        return None
    flat_a, flat_b = na.reshape(-1), nb.reshape(-1)
    with np.errstate(over="ignore", invalid="ignore"):
        square_a, square_b = float(np.dot(flat_a, flat_a)), float(np.dot(flat_b, flat_b))
    # a finite Σ x² proves every entry finite; otherwise the general route's exact test decides
    if not (math.isfinite(square_a) and math.isfinite(square_b)):
        return None
    squares.extend((square_a, square_b))
    return a.detach(), b.detach()


def _matrix_pair(info: "MeasureInfo", args: Sequence[Any], squares: list | None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`validate` for two matrices (representations, outputs, probabilities): the general route."""
    name, kind = info.name, info.inputs
    a, b = (as_tensor(name, x, f"input {i + 1}") for i, x in enumerate(args))
    squares_a = _check_matrix(name, a, "input 1", finite=not info.checks_finite)
    squares_b = _check_matrix(name, b, "input 2", finite=not info.checks_finite)
    if squares is not None:
        squares.extend((squares_a, squares_b))
    _check_pair(name, a, b, info.min_rows)
    if kind != "representations":
        if a.shape[1] != b.shape[1]:
            raise ValueError(
                f"measure {name!r}: class counts differ ({a.shape[1]} vs {b.shape[1]}); "
                "outputs must cover the same classes"
            )
        if a.shape[1] < 2:
            raise ValueError(f"measure {name!r}: outputs need at least 2 classes, got {a.shape[1]}")
    if kind == "probabilities":
        _check_probabilities(name, a, "input 1")
        _check_probabilities(name, b, "input 2")
    return a, b


def validate(info: "MeasureInfo", args: Sequence[Any], squares: list | None = None) -> tuple[Any, ...]:
    """Validate and convert the positional inputs of ``info``'s measure.

    ``squares``: a list that receives, for two-matrix inputs, each input's Σ x² from the finiteness
    pass (None where not computed), for ``rescale_extreme``.
    """
    name, kind = info.name, info.inputs
    expected = 1 if kind == "outputs_group" else 2
    if len(args) != expected:
        raise ValueError(f"measure {name!r}: takes {expected} input(s) ({kind}), got {len(args)}")

    if kind in ("representations", "outputs"):
        found: list = []
        plain = _plain_pair(info, args, found)
        if plain is not None:
            if squares is not None:
                squares.extend(found)
            return plain
    if kind in ("representations", "outputs", "probabilities"):
        return _matrix_pair(info, args, squares)

    if kind == "outputs_group":
        group = args[0]
        if isinstance(group, (torch.Tensor, np.ndarray)) or not isinstance(group, Sequence) or len(group) < 2:
            raise ValueError(f"measure {name!r}: takes a list of at least 2 output matrices (one per model)")
        tensors = [as_tensor(name, x, f"output {i + 1}") for i, x in enumerate(group)]
        # shapes, row and class counts first (as for the pairwise output measures), then the values
        for i, t in enumerate(tensors):
            _check_matrix(name, t, f"output {i + 1}")
            if t.shape != tensors[0].shape:
                raise ValueError(
                    f"measure {name!r}: output {i + 1} has shape {tuple(t.shape)}, "
                    f"output 1 has {tuple(tensors[0].shape)}; all must be N x C on the same inputs"
                )
        _check_pair(name, tensors[0], tensors[-1], info.min_rows)
        if tensors[0].shape[1] < 2:
            raise ValueError(f"measure {name!r}: outputs need at least 2 classes, got {tensors[0].shape[1]}")
        for i, t in enumerate(tensors):
            _check_probabilities(name, t, f"output {i + 1}")
        return (tensors,)

    if kind == "preactivations":
        out = []
        for side, layers in enumerate(args, start=1):
            if isinstance(layers, (torch.Tensor, np.ndarray)) or not isinstance(layers, Sequence) or not layers:
                raise ValueError(
                    f"measure {name!r}: input {side} must be a non-empty list of per-layer N x D_l arrays"
                )
            tensors = [as_tensor(name, x, f"input {side} layer {l}") for l, x in enumerate(layers)]
            for l, t in enumerate(tensors):
                _check_matrix(name, t, f"input {side} layer {l}")
            out.append(tensors)
        rows = {t.shape[0] for layers in out for t in layers}
        if len(rows) != 1:
            raise ValueError(
                f"measure {name!r}: layers have different row counts {sorted(rows)}; "
                "all pre-activations must come from the same probe set"
            )
        _check_pair(name, out[0][0], out[1][0], info.min_rows)
        return tuple(out)

    for side, model in enumerate(args, start=1):  # "models": the measure validates the rest itself
        if isinstance(model, torch.nn.Module):
            bad = [n for n, t in (*model.named_parameters(), *model.named_buffers())
                   if t.is_floating_point() and not torch.isfinite(t).all()]
            if bad:
                raise ValueError(f"measure {name!r}: model {side} has NaN or Inf weights in {', '.join(bad)}")
    return tuple(args)


def check_probe(measure: str, probe: Any) -> None:
    """The probe inputs of a model-based measure: real, finite, at least one row (None: not given)."""
    if probe is None:
        return
    t = probe.detach() if isinstance(probe, torch.Tensor) else as_tensor(measure, probe, "probe")
    if t.is_complex():
        raise ValueError(f"measure {measure!r}: probe is complex ({t.dtype}); models take real inputs")
    if t.ndim == 0 or t.shape[0] == 0:
        raise ValueError(f"measure {measure!r}: probe needs at least one input, got shape {tuple(t.shape)}")
    if t.is_floating_point() and not torch.isfinite(t).all():
        raise ValueError(f"measure {measure!r}: probe contains NaN or Inf values")


def _peak(t: torch.Tensor) -> float:
    """Largest absolute entry (0 for an empty tensor); on the CPU two numpy reductions without an |t| copy."""
    if not t.numel():
        return 0.0
    if t.device.type == "cpu" and not t.requires_grad and t.dtype in (torch.float64, torch.float32):
        a = t.numpy()
        return float(max(a.max(), -a.min()))
    return float(t.abs().max())


def rescale_extreme(info: "MeasureInfo", inputs: tuple[torch.Tensor, ...],
                    squares: Sequence[float | None] = ()) -> tuple[torch.Tensor, ...]:
    """For a measure invariant to isotropic scaling, inputs whose largest magnitude lies outside
    [EXTREME_SMALL, EXTREME_LARGE] are divided by a power of two that brings it into [0.5, 1): float64
    would overflow (or underflow) in squares and Gram matrices otherwise. A power of two is exact, so the
    value is the one the measure declares (that of the unscaled input); other inputs, and those of a
    measure registered with ``checks_finite`` (which handles any magnitude itself), are left alone."""
    if "isotropic_scaling" not in info.invariances or info.inputs != "representations" or info.checks_finite:
        return inputs
    out = []
    for i, t in enumerate(inputs):
        total = squares[i] if i < len(squares) else None
        # Σ t² (from validation) within (2·numel·SMALL², LARGE²/2) proves SMALL < max|t| < LARGE (with a
        # margin for the sum's round-off): no pass of its own.
        if total is not None and 2.0 * t.numel() * EXTREME_SMALL**2 < total < 0.5 * EXTREME_LARGE**2:
            out.append(t)
            continue
        peak = _peak(t)
        if peak > EXTREME_LARGE or 0 < peak < EXTREME_SMALL:
            t = torch.ldexp(t, torch.tensor(-math.frexp(peak)[1], device=t.device))
        out.append(t)
    return tuple(out)


def check_labels(measure: str, labels: Any, n_rows: int) -> torch.Tensor:
    """Class labels: a 1-D integer vector with one entry per row."""
    if isinstance(labels, torch.Tensor):
        t = labels.detach()
    else:
        arr = np.asarray(labels)
        if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating) or arr.dtype == bool):
            raise ValueError(f"measure {measure!r}: labels must be integer class indices, got dtype {arr.dtype}")
        t = _from_numpy(arr)
    if t.is_complex():
        raise ValueError(f"measure {measure!r}: labels must be integer class indices, got dtype {t.dtype}")
    if t.ndim != 1 or t.shape[0] != n_rows:
        raise ValueError(f"measure {measure!r}: labels must be a vector of {n_rows} class indices, got {tuple(t.shape)}")
    if t.is_floating_point() and not (torch.isfinite(t).all() and torch.equal(t, t.round())):
        raise ValueError(f"measure {measure!r}: labels must be integer class indices")
    return t.long()


def n_rows(inputs: tuple[Any, ...]) -> int:
    first = inputs[0]
    while isinstance(first, (list, tuple)):
        first = first[0]
    return int(first.shape[0])


def center_columns(x: torch.Tensor) -> torch.Tensor:
    """Column-centred copy X - 1 x̄ᵀ (the centring matrix H is never materialised)."""
    return x - x.mean(dim=0, keepdim=True)

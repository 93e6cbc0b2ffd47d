"""Compare two of your own networks: are they the same solution?

Command line::

    uv run python -m runners.compare A.pt B.pt [--data digits|probe.npz] [--measures cka_linear,...]
        [--arch mlp_small | --arch '{name: mlp, width: 16}'] [--reference C.pt] [--out DIR]

``A`` and ``B`` are checkpoints (a saved module, a state dict plus ``--arch``, or a zoo cache checkpoint,
which names its own architecture and data; ``.pt`` or a ``.safetensors`` state dict) or feature files
(``.npz``, or ``.safetensors`` with ``layers`` metadata or undotted tensor names; one array per layer; see
:mod:`tasks.zoo.byo`). Python: :func:`compare` takes two ``torch.nn.Module`` and a probe set (an array
of inputs or a ``DataLoader``) and returns a :class:`Report`.

What it computes, all through :func:`measures.compute` (and :mod:`measures.significance` for the nulls):

* **functional** on the probe set: disagreement, Cohen's kappa, JSD, KL, total variation, EMD and (with
  labels) the accuracy difference, each with a bootstrap CI over probe inputs;
* **representational**: the layer x layer heatmap of each chosen measure, the matched-layer scores (same
  name, or same position when both models have as many layers) with permutation-null p-values, and the
  activation-region score when both networks have ReLU pre-activations of the same depth;
* **weight space** (same architecture): raw, canonically scaled and permutation-matched (weight matching)
  relative weight distances;
* **a calibrated verdict**: the same headline numbers for A against copies of itself with relative
  Gaussian weight noise σ (``tasks.zoo.training.perturb``) on a grid, and, with ``--reference``, against
  another seed; each headline number is placed on the noise curve (the σ whose copy is as far from A,
  interpolated in log σ) so the report says "as close as weight noise σ ≈ 0.01" or "as different as two
  seeds" instead of a bare number.

Outputs under ``--out`` (default ``results/compare/<A>_vs_<B>/``): ``report.json``, ``report.parquet``
(one row per number), ``report.html`` with the heatmaps and the verdict (also as ``heatmaps.png`` and
``verdict.png``), and a console summary. Bad input is refused in one line naming the file and problem.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
import yaml
from torch import nn
from tqdm.auto import tqdm

import measures
from tasks.zoo import datasets
from tasks.zoo.byo import SourceError, extract, is_feature_file, load_features, read_checkpoint
from tasks.zoo.training import perturb

CONF_ARCH = Path(__file__).resolve().parent.parent / "conf" / "arch"
#: default heatmap measures: fast (no O(N³) or topology work) and high in the benchmark's ranks,
#: one per family that ranks well (RSM, neighbours, alignment) plus linear CKA, the field's reference
DEFAULT_MEASURES = ("cka_linear", "cka_rbf", "knn_jaccard", "procrustes_orthogonal")
FUNCTIONAL = ("disagreement", "cohens_kappa", "jsd", "kl_divergence", "total_variation", "earth_movers",
              "accuracy_difference")
WEIGHT_ALIGNMENTS = ("none", "canonical", "weight_matching")
DEFAULT_SIGMAS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
#: a pair at least this fraction as far apart as the seed reference (median over headline numbers) is
#: reported "as different as two seeds": one seed pair is one draw, and two seed pairs of the same recipe
#: differ by tens of percent (0.54-1.02 per number for two pairs of tiny MLPs while developing)
SEED_FRACTION = 0.5


class CompareError(ValueError):
    """Input the comparison cannot use; one line naming the file (or model) and the problem."""


@dataclass
class Report:
    """Everything :func:`compare` found; ``rows`` is the tidy table (one row per number)."""

    names: tuple[str, str]
    rows: list[dict[str, Any]]
    heatmaps: dict[str, dict[str, Any]]
    verdict: dict[str, Any]
    skipped: dict[str, str]
    n_probe: int
    arrays: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)

    def to_dict(self) -> dict[str, Any]:
        return {"models": list(self.names), "n_probe": self.n_probe, "verdict": self.verdict,
                "skipped": self.skipped, "rows": _jsonable(self.rows),
                "heatmaps": {m: {"layers_a": h["layers_a"], "layers_b": h["layers_b"],
                                 "values": _jsonable(np.asarray(h["values"]).tolist())} for m, h in self.heatmaps.items()}}

    def summary(self) -> str:
        a, b = self.names
        frame = self.frame()
        out = [f"compare {a} vs {b} on {self.n_probe} probe inputs", "", f"VERDICT: {self.verdict['text']}", ""]
        main = frame[frame["pair"].eq("A~B")]
        for section, title in (("functional", "functional (95% bootstrap CI over probe inputs)"),
                               ("matched_layers", "matched layers (permutation p-value)"),
                               ("activation_region", "activation region"), ("weights", "weight space (relative)")):
            part = main[main["section"].eq(section)]
            if part.empty:
                continue
            out.append(title + ":")
            for _, r in part.iterrows():
                where = f" {r['layer_a']}" if section == "matched_layers" else ""
                if section == "weights":
                    where = f" {json.loads(r['params'])['alignment']}"
                extra = ""
                if not math.isnan(r["low"]):
                    extra = f"  [{r['low']:.4f}, {r['high']:.4f}]"
                if not math.isnan(r["p_value"]):
                    extra += f"  p = {r['p_value']:.3g}"
                out.append(f"  {r['measure']:<22}{where:<17} {r['value']:.4f}{extra}")
        per = self.verdict.get("per_measure", {})
        if per:
            out.append("calibration (distance-like value; weight-noise σ that moves A as far; fraction of a seed pair):")
            for key, e in per.items():
                seed = f"  {e['fraction_of_seed']:.2f} of a seed pair" if "fraction_of_seed" in e else ""
                sigma = sigma_text(e["equivalent_sigma"], self.verdict["sigmas"])
                out.append(f"  {key:<48} {e['value']:.4f}  σ: {sigma:<7}{seed}")
        if self.skipped:
            out.append("skipped:")
            out += [f"  {name}: {reason}" for name, reason in sorted(self.skipped.items())]
        return "\n".join(out)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        if math.isinf(obj):  # beyond the σ grid: kept as a string (JSON has no infinity); NaN becomes null
            return "inf" if obj > 0 else "-inf"
        return None if math.isnan(obj) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


# ---------------------------------------------------------------------------------------------- inputs


def probe_inputs(probe: Any, labels: Any = None) -> tuple[np.ndarray, np.ndarray | None]:
    """(inputs, labels or None) from an array/tensor of inputs or a DataLoader of (x, y) or x batches."""
    if isinstance(probe, torch.utils.data.DataLoader):
        xs, ys = [], []
        for batch in probe:
            if isinstance(batch, (list, tuple)):
                xs.append(torch.as_tensor(batch[0]))
                if len(batch) > 1:
                    ys.append(torch.as_tensor(batch[1]))
            else:
                xs.append(torch.as_tensor(batch))
        x = torch.cat(xs).numpy()
        if labels is None and ys:
            labels = torch.cat(ys).numpy()
    else:
        x = probe.detach().cpu().numpy() if isinstance(probe, torch.Tensor) else np.asarray(probe)
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.all(np.isfinite(x)):
        raise CompareError("probe set: NaN or infinite inputs")
    if labels is not None:
        labels = np.asarray(labels).astype(np.int64)
        if labels.shape != (x.shape[0],):
            raise CompareError(f"probe set: {labels.shape[0] if labels.ndim else 0} labels for {x.shape[0]} inputs")
    return x, labels


def _model_arrays(model: nn.Module, x: np.ndarray, labels: np.ndarray | None, name: str,
                  layers: Sequence[str] | None) -> dict[str, np.ndarray]:
    arrays = extract(model, x, layers, path=name)
    if labels is not None:
        arrays["labels"] = labels
    return arrays


def _same_architecture(a: nn.Module, b: nn.Module) -> str | None:
    """Why A and B are not one architecture (None: same module types, parameter names and shapes)."""
    pa = [(n, tuple(p.shape)) for n, p in a.named_parameters()]
    pb = [(n, tuple(p.shape)) for n, p in b.named_parameters()]
    if pa != pb:
        diff = next(((x, y) for x, y in zip(pa, pb) if x != y), None)
        detail = f"first difference {diff[0]} vs {diff[1]}" if diff else f"{len(pa)} vs {len(pb)} parameter tensors"
        return f"A and B have different architectures ({detail})"
    if [type(m) for m in a.modules()] != [type(m) for m in b.modules()]:
        return "A and B have different layer types"
    return None


# ------------------------------------------------------------------------------------------- measures


def sigma_text(sigma: float, sigmas: Sequence[float]) -> str:
    """An equivalent σ as text: "> σ_max" beyond the grid, "0" for no measurable difference."""
    if math.isinf(sigma):
        return f"> {max(sigmas):g}"
    return "0" if sigma == 0 else f"{sigma:.2g}"


def _distance_like(name: str, value: float) -> float:
    """A number that grows as the pair grows apart (similarities are subtracted from their maximum)."""
    info = measures.info(name)
    return value if not info.higher_is_more_similar else info.range[1] - value


def _safe(name: str, *inputs: Any, skipped: dict[str, str], **params: Any) -> float | None:
    try:
        return float(measures.compute(name, *inputs, **params))
    except (measures.UndefinedMeasureError, ValueError) as exc:
        skipped[name] = " ".join(str(exc).split())
        return None


def _functional(a: dict, b: dict, n_bootstrap: int, seed: int, skipped: dict[str, str],
                progress: bool) -> list[dict[str, Any]]:
    rows = []
    for name in tqdm(FUNCTIONAL, desc="functional + bootstrap", disable=not progress, leave=False):
        info = measures.info(name)
        if info.requires_labels and "labels" not in a:
            skipped[name] = "needs labels (a probe set with labels: --data with y, or a labelled DataLoader)"
            continue
        key = "probabilities" if info.inputs == "probabilities" else "logits"
        params = {"labels": a["labels"]} if info.requires_labels else {}
        try:
            ci = measures.bootstrap_ci(name, a[key], b[key], n_resamples=n_bootstrap, seed=seed, **params)
        except (measures.UndefinedMeasureError, ValueError) as exc:
            skipped[name] = " ".join(str(exc).split())
            continue
        rows.append(_row("functional", name, "output", "output", ci.value, low=ci.low, high=ci.high))
    return rows


def _row(section: str, measure: str, layer_a: str, layer_b: str, value: float, *, pair: str = "A~B",
         low: float = math.nan, high: float = math.nan, p_value: float = math.nan, sigma: float = math.nan,
         params: dict | None = None) -> dict[str, Any]:
    return {"pair": pair, "sigma": sigma, "section": section, "measure": measure, "layer_a": layer_a,
            "layer_b": layer_b, "value": float(value), "low": float(low), "high": float(high),
            "p_value": float(p_value), "params": json.dumps(params or {}, sort_keys=True)}


def matched_layers(layers_a: Sequence[str], layers_b: Sequence[str]) -> list[tuple[str, str]]:
    """Layer pairs compared one to one: by position when both have as many layers, else by shared name."""
    if len(layers_a) == len(layers_b):
        return list(zip(layers_a, layers_b))
    return [(la, la) for la in layers_a if la in layers_b]


def _layers(arrays: dict) -> list[str]:
    return [k[4:] for k in arrays if k.startswith("rep/")]


def _preactivations(arrays: dict) -> list[np.ndarray]:
    return [arrays[k] for k in arrays if k.startswith("pre/")]


def _headline(a: dict, b: dict, chosen: Sequence[str], model_a: nn.Module | None, model_b: nn.Module | None,
              weights_ok: bool, skipped: dict[str, str]) -> dict[str, float]:
    """The numbers the verdict calibrates: distance-like, one per (measure, where)."""
    out = {}
    if "logits" in a and "logits" in b:
        for name in ("disagreement", "jsd"):
            key = "probabilities" if measures.info(name).inputs == "probabilities" else "logits"
            value = _safe(name, a[key], b[key], skipped=skipped)
            if value is not None:
                out[name] = _distance_like(name, value)
    pairs = matched_layers(_layers(a), _layers(b))
    for name in chosen:
        values = [_safe(name, a[f"rep/{la}"], b[f"rep/{lb}"], skipped={}) for la, lb in pairs]
        values = [v for v in values if v is not None]
        if values:
            out[f"{name} (mean over matched layers)"] = float(np.mean([_distance_like(name, v) for v in values]))
    if weights_ok and model_a is not None and model_b is not None:
        for alignment in WEIGHT_ALIGNMENTS:
            value = _safe("weight_distance", model_a, model_b, alignment=alignment, relative=True, skipped={})
            if value is not None:
                out[f"weight_distance ({alignment})"] = value
    return out


def equivalent_sigma(observed: float, sigmas: Sequence[float], curve: Sequence[float], at_zero: float) -> float:
    """The weight-noise σ whose copy is as far from A as ``observed`` (log-σ interpolation on the curve
    made non-decreasing); 0 below the smallest σ's half way from σ=0, inf beyond the largest σ."""
    levels = np.maximum.accumulate(np.asarray(curve, dtype=float))
    if observed > levels[-1]:
        return math.inf
    if observed <= at_zero:
        return 0.0
    if observed <= levels[0]:
        return float(sigmas[0] * (observed - at_zero) / max(levels[0] - at_zero, 1e-300))
    i = int(np.searchsorted(levels, observed))  # levels[i-1] < observed <= levels[i]
    lo, hi = levels[i - 1], levels[i]
    t = 0.0 if hi == lo else (observed - lo) / (hi - lo)
    return float(math.exp(math.log(sigmas[i - 1]) + t * (math.log(sigmas[i]) - math.log(sigmas[i - 1]))))


def _verdict(obs: dict[str, float], self_ref: dict[str, float], noise: dict[float, dict[str, float]],
             seed_ref: dict[str, float] | None, sigmas: Sequence[float]) -> dict[str, Any]:
    per = {}
    for key, value in obs.items():
        curve = [noise[s].get(key, math.nan) for s in sigmas]
        if any(math.isnan(c) for c in curve):
            continue
        entry = {"value": value, "equivalent_sigma": equivalent_sigma(value, sigmas, curve, self_ref.get(key, 0.0)),
                 "noise_curve": dict(zip(map(str, sigmas), curve))}
        if seed_ref is not None and key in seed_ref:
            entry["seed_value"] = seed_ref[key]
            entry["seed_equivalent_sigma"] = equivalent_sigma(seed_ref[key], sigmas, curve, self_ref.get(key, 0.0))
            entry["fraction_of_seed"] = value / seed_ref[key] if seed_ref[key] > 0 else math.inf
        per[key] = entry
    if not per:
        return {"text": "no headline number could be calibrated", "per_measure": {}, "equivalent_sigma": math.nan}
    sigma = float(np.median([e["equivalent_sigma"] for e in per.values()]))
    verdict: dict[str, Any] = {"equivalent_sigma": sigma, "sigmas": list(sigmas), "per_measure": per}
    if math.isinf(sigma):
        noise_text = f"further apart than weight noise σ = {sigmas[-1]:g} (the largest tried)"
    elif sigma == 0:
        noise_text = "as close as A to itself"
    else:
        noise_text = f"as close as weight noise σ ≈ {sigma:.2g}"
    if seed_ref is not None:
        fraction = float(np.median([e["fraction_of_seed"] for e in per.values() if "fraction_of_seed" in e]))
        verdict["fraction_of_seed"] = fraction
        if fraction >= SEED_FRACTION:
            verdict["text"] = (f"as different as two seeds ({fraction:.2f} of the seed pair's distance, "
                               f"median over {len(per)} numbers); {noise_text}")
        else:
            verdict["text"] = f"closer than two seeds ({fraction:.2f} of the seed pair's distance): {noise_text}"
    else:
        verdict["text"] = (f"{noise_text} (median over {len(per)} numbers; give --reference <another seed> "
                           "to calibrate against retraining)")
    return verdict


def compare(model_a: nn.Module, model_b: nn.Module, probe: Any, *, labels: Any = None,
            measures_: Sequence[str] = DEFAULT_MEASURES, layers: Sequence[str] | None = None,
            reference: nn.Module | None = None, sigmas: Sequence[float] = DEFAULT_SIGMAS, noise_seed: int = 0,
            n_bootstrap: int = 1000, n_permutations: int = 200, seed: int = 0, names: tuple[str, str] = ("A", "B"),
            progress: bool = True) -> Report:
    """Compare two torch modules on ``probe`` (inputs, or a DataLoader of (x, y) / x batches).

    ``measures_``: the representational measures of the heatmaps and matched-layer scores; ``layers``:
    module names to compare (default: every ReLU and the logits of zoo-style nn.Sequentials); ``reference``:
    another seed of A's recipe (the verdict then says whether B is as different as two seeds).
    """
    x, y = probe_inputs(probe, labels)
    a = _model_arrays(model_a, x, y, names[0], layers)
    b = _model_arrays(model_b, x, y, names[1], layers)
    return compare_arrays(a, b, model_a=model_a, model_b=model_b, measures_=measures_, reference=reference,
                          probe_x=x, layers=layers, sigmas=sigmas, noise_seed=noise_seed, n_bootstrap=n_bootstrap,
                          n_permutations=n_permutations, seed=seed, names=names, progress=progress)


def compare_arrays(a: dict[str, np.ndarray], b: dict[str, np.ndarray], *, model_a: nn.Module | None = None,
                   model_b: nn.Module | None = None, measures_: Sequence[str] = DEFAULT_MEASURES,
                   reference: nn.Module | None = None, probe_x: np.ndarray | None = None,
                   layers: Sequence[str] | None = None, sigmas: Sequence[float] = DEFAULT_SIGMAS,
                   noise_seed: int = 0, n_bootstrap: int = 1000, n_permutations: int = 200, seed: int = 0,
                   names: tuple[str, str] = ("A", "B"), progress: bool = True) -> Report:
    """:func:`compare` on extracted arrays (``rep/<layer>``, optional ``pre/<layer>``, ``logits``,
    ``probabilities``, ``labels``); the weight-space numbers and the calibration need ``model_a`` (and
    ``model_b``) and ``probe_x``, and are skipped with the reason otherwise."""
    unknown = [m for m in measures_ if m not in measures.names()]
    if unknown:
        raise CompareError(f"--measures: unknown measure(s) {unknown}; valid: {', '.join(measures.names())}")
    not_rep = [m for m in measures_ if measures.info(m).inputs != "representations"]
    if not_rep:
        raise CompareError(f"--measures: {not_rep} are not representational measures (functional ones always run)")
    n_a, n_b = next(iter(a.values())).shape[0], next(iter(b.values())).shape[0]
    if n_a != n_b:
        raise CompareError(f"{names[1]}: {n_b} probe rows, but {names[0]} has {n_a}; both must be measured on one probe set")
    skipped: dict[str, str] = {}
    rows: list[dict[str, Any]] = []
    if "logits" in a and "logits" in b:
        rows += _functional(a, b, n_bootstrap, seed, skipped, progress)
    else:
        skipped["functional measures"] = "need outputs of both models (an 'outputs' array in the feature files)"
    layers_a, layers_b = _layers(a), _layers(b)
    heatmaps = {}
    cells = [(m, la, lb) for m in measures_ for la in layers_a for lb in layers_b]
    values: dict[tuple[str, str, str], float] = {}
    for m, la, lb in tqdm(cells, desc="layer x layer heatmaps", disable=not progress, leave=False):
        v = _safe(m, a[f"rep/{la}"], b[f"rep/{lb}"], skipped={})
        values[(m, la, lb)] = math.nan if v is None else v
        if v is not None:
            rows.append(_row("heatmap", m, la, lb, v))
    for m in measures_:
        heatmaps[m] = {"layers_a": layers_a, "layers_b": layers_b,
                       "values": np.array([[values[(m, la, lb)] for lb in layers_b] for la in layers_a])}
    for m in tqdm(measures_, desc="matched layers + permutation nulls", disable=not progress, leave=False):
        for la, lb in matched_layers(layers_a, layers_b):
            try:
                result = measures.permutation_test(m, a[f"rep/{la}"], b[f"rep/{lb}"], n_permutations=n_permutations,
                                                   seed=seed)
            except (measures.UndefinedMeasureError, ValueError) as exc:
                skipped[f"{m} at {la}"] = " ".join(str(exc).split())
                continue
            rows.append(_row("matched_layers", m, la, lb, result.value, p_value=result.p_value))
    pre_a, pre_b = _preactivations(a), _preactivations(b)
    if not pre_a or not pre_b:
        skipped["activation_region"] = "needs ReLU pre-activations of both networks (zoo-style ReLU nn.Sequentials)"
    elif len(pre_a) != len(pre_b):
        skipped["activation_region"] = f"networks of different depth ({len(pre_a)} vs {len(pre_b)} ReLU layers)"
    else:
        v = _safe("activation_region", pre_a, pre_b, skipped=skipped)
        if v is not None:
            rows.append(_row("activation_region", "activation_region", "network", "network", v))
    weights_ok = False
    if model_a is None or model_b is None:
        skipped["weight_distance"] = "needs both models (checkpoints, not feature files)"
    else:
        reason = _same_architecture(model_a, model_b)
        if reason:
            skipped["weight_distance"] = f"{reason}; weight-space distances need one architecture"
        else:
            weights_ok = True
            for alignment in WEIGHT_ALIGNMENTS:
                v = _safe("weight_distance", model_a, model_b, alignment=alignment, relative=True, skipped=skipped)
                if v is not None:
                    rows.append(_row("weights", "weight_distance", "weights", "weights", v,
                                     params={"alignment": alignment, "relative": True}))
    verdict = {"text": "not calibrated: the weight-noise reference needs model A (a checkpoint)", "per_measure": {},
               "equivalent_sigma": math.nan}
    if model_a is not None and probe_x is not None:
        obs = _headline(a, b, measures_, model_a, model_b, weights_ok, skipped={})
        self_ref = _headline(a, a, measures_, model_a, model_a, weights_ok, skipped={})
        labels = a.get("labels")
        noise: dict[float, dict[str, float]] = {}
        for sigma in tqdm(sigmas, desc="weight-noise references", disable=not progress, leave=False):
            noisy = perturb(model_a, sigma, noise_seed)
            arrays = _model_arrays(noisy, probe_x, labels, f"{names[0]} + noise σ={sigma:g}", layers)
            noise[sigma] = _headline(a, arrays, measures_, model_a, noisy, weights_ok, skipped={})
            rows += [_row("reference", k, "", "", v, pair="A~noise", sigma=sigma) for k, v in noise[sigma].items()]
        seed_ref = None
        if reference is not None:
            arrays = _model_arrays(reference, probe_x, labels, "reference", layers)
            same = weights_ok and _same_architecture(model_a, reference) is None
            seed_ref = _headline(a, arrays, measures_, model_a, reference, same, skipped={})
            rows += [_row("reference", k, "", "", v, pair="A~seed") for k, v in seed_ref.items()]
        rows += [_row("reference", k, "", "", v, pair="A~B (headline)") for k, v in obs.items()]
        verdict = _verdict(obs, self_ref, noise, seed_ref, sigmas)
    return Report(names=names, rows=rows, heatmaps=heatmaps, verdict=verdict, skipped=skipped, n_probe=n_a,
                  arrays={"A": a, "B": b})


# ------------------------------------------------------------------------------------------- outputs


def write_report(report: Report, out: Path) -> dict[str, Path]:
    """report.json, report.parquet, heatmaps.png, verdict.png and report.html under ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "report.json", "parquet": out / "report.parquet", "html": out / "report.html",
             "heatmaps": out / "heatmaps.png", "verdict": out / "verdict.png"}
    paths["json"].write_text(json.dumps(report.to_dict(), indent=1, ensure_ascii=False))
    report.frame().to_parquet(paths["parquet"], index=False)
    a_name, b_name = report.names
    k = max(len(report.heatmaps), 1)
    fig, axes = plt.subplots(1, k, figsize=(4.2 * k, 4.0), squeeze=False)
    for ax, (m, h) in zip(axes[0], report.heatmaps.items()):
        info = measures.info(m)
        image = ax.imshow(h["values"], cmap="viridis" if info.higher_is_more_similar else "viridis_r", aspect="auto")
        ax.set_xticks(range(len(h["layers_b"])), h["layers_b"], rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(h["layers_a"])), h["layers_a"], fontsize=8)
        ax.set_xlabel(f"layer of {b_name}", fontsize=9)
        ax.set_ylabel(f"layer of {a_name}", fontsize=9)
        ax.set_title(f"{m} ({'higher' if info.higher_is_more_similar else 'lower'} = more similar)", fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(paths["heatmaps"], dpi=110)
    plt.close(fig)
    per = report.verdict.get("per_measure", {})
    cols = min(max(len(per), 1), 3)
    nrows = max(math.ceil(len(per) / cols), 1)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.0 * cols, 2.9 * nrows), squeeze=False)
    for ax, (key, e) in zip(axes.flat, per.items()):
        sig = [float(s) for s in e["noise_curve"]]
        ax.plot(sig, list(e["noise_curve"].values()), "o-", color="C0", lw=1.2, ms=3, label=f"{a_name} vs noisy copy")
        ax.axhline(e["value"], color="C3", ls="--", lw=1.2, label=f"{a_name} vs {b_name}")
        if "seed_value" in e:
            ax.axhline(e["seed_value"], color="C2", ls=":", lw=1.5, label=f"{a_name} vs another seed")
        ax.set_xscale("log")
        ax.set_title(f"{key}\nσ-equivalent: {sigma_text(e['equivalent_sigma'], sig)}", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(per):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("relative weight noise σ on A", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("distance-like value", fontsize=8)
    if per:
        axes.flat[0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(paths["verdict"], dpi=110)
    plt.close(fig)
    frame = report.frame()
    main = frame[frame["pair"].eq("A~B") & ~frame["section"].eq("heatmap")]

    def png(path: Path) -> str:
        return f'<img alt="{path.stem}" src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}">'

    skipped = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in sorted(report.skipped.items()))
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(a_name)} vs {html.escape(b_name)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}} table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:2px 6px}} img{{max-width:100%}}</style></head><body>
<h1>{html.escape(a_name)} vs {html.escape(b_name)}</h1><p>{report.n_probe} probe inputs.</p>
<h2>Verdict</h2><p><b>{html.escape(report.verdict['text'])}</b></p>{png(paths['verdict'])}
<h2>Layer x layer similarity</h2>{png(paths['heatmaps'])}
<h2>Scores</h2>{main.drop(columns=['pair', 'sigma']).to_html(index=False, float_format=lambda v: f'{v:.4g}', na_rep='')}
<h2>Skipped</h2><ul>{skipped or '<li>nothing</li>'}</ul></body></html>"""
    paths["html"].write_text(page)
    return paths


# ------------------------------------------------------------------------------------------ the CLI


def _arch(value: str | None) -> dict[str, Any] | None:
    """``--arch``: a config name under conf/arch (``mlp_small``) or an inline YAML mapping."""
    if value is None:
        return None
    parsed = yaml.safe_load(value)
    if isinstance(parsed, str) and not (CONF_ARCH / f"{value}.yaml").is_file():
        return {"name": parsed}  # a registered architecture with its defaults
    parsed = _config("arch", value)
    if "name" not in parsed:
        raise CompareError(f"--arch: {value!r} has no name (a registered architecture)")
    return parsed


def _zoo_spec(path: Path) -> dict[str, Any] | None:
    """The model spec a zoo cache checkpoint stores (arch, data, train, intervention, seed), else None."""
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None
    spec = stored.get("spec") if isinstance(stored, dict) else None
    return spec if isinstance(spec, dict) and isinstance(spec.get("data"), dict) else None


def _config(group: str, value: str) -> dict[str, Any]:
    """A config of ``conf/<group>/`` by name, or an inline YAML mapping."""
    path = CONF_ARCH.parent / group / f"{value}.yaml"
    if path.is_file():
        return yaml.safe_load(path.read_text())
    parsed = yaml.safe_load(value)
    if not isinstance(parsed, dict):
        raise CompareError(f"--{'arch' if group == 'arch' else 'recipe'}: {value!r} is neither a config in "
                           f"conf/{group} nor a YAML mapping")
    return parsed


def train_reference(path_a: Path, recipe: str, seed: int | None, arch: dict[str, Any] | None,
                    data: str | None, progress: bool = True) -> nn.Module:
    """Another seed of A's recipe, trained now: ``recipe`` names a ``conf/train`` config (or is a YAML
    mapping of its keys); the architecture comes from ``--arch`` or A's zoo checkpoint, the training data
    from ``--data`` (a registered dataset) or A's zoo checkpoint; the seed defaults to A's seed + 1."""
    from tasks.zoo import architectures
    from tasks.zoo.training import prepare_data, train

    spec = _zoo_spec(path_a) or {}
    arch = arch or spec.get("arch")
    if not arch:
        raise CompareError(f"--recipe: needs A's architecture (--arch, or a zoo checkpoint as {path_a})")
    if data is not None and data not in datasets.DATASETS:
        raise CompareError(f"--recipe: training needs a registered dataset as --data ({', '.join(sorted(datasets.DATASETS))}), "
                           f"got {data!r}")
    data_cfg = {"name": data} if data is not None else dict(spec.get("data") or {})
    if not data_cfg:
        raise CompareError(f"--recipe: needs the training data (--data <dataset>, or a zoo checkpoint as {path_a})")
    settings = {k: v for k, v in _config("train", recipe).items() if k != "warm_start"}
    seed = int(spec.get("seed", 0)) + 1 if seed is None else seed
    name = data_cfg.pop("name")
    intervention = (spec.get("intervention") or {}) if data is None else {}
    prepared = prepare_data(datasets.load(name, **data_cfg), intervention, seed)
    params = dict(arch)
    model = architectures.build(params.pop("name"), prepared.input_shape, prepared.n_classes, **params)
    if progress:
        print(f"training the reference: seed {seed} of recipe {settings} on {name}", file=sys.stderr)
    try:
        train(model, prepared, seed=seed, intervention=intervention, **settings)
    except TypeError as exc:
        raise CompareError(f"--recipe: {exc}") from None
    return model.eval()


def _probe(data: str | None, checkpoints: Sequence[Path]) -> tuple[np.ndarray, np.ndarray | None, str]:
    """--data: an .npz (x, optional y), a registered dataset's probe split; default: the data a zoo
    checkpoint names."""
    if data is None:
        for path in checkpoints:
            try:
                spec = torch.load(path, map_location="cpu", weights_only=True).get("spec", {})
            except Exception:
                continue
            if isinstance(spec, dict) and isinstance(spec.get("data"), dict):
                cfg = dict(spec["data"])
                ds = datasets.load(cfg.pop("name"), **cfg)
                return ds.x_probe, ds.y_probe, f"{ds.name} (from {path.name})"
        raise CompareError("--data: needed (an .npz with x and optional y, or a dataset: "
                           f"{', '.join(sorted(datasets.DATASETS))})")
    if data in datasets.DATASETS:
        ds = datasets.load(data)
        return ds.x_probe, ds.y_probe, data
    from tasks.zoo.byo import load_probe

    probe = load_probe(data)
    return probe.x, probe.y, data


def _load(path: Path, arch: dict | None, x: np.ndarray | None, labels: np.ndarray | None,
          layers: Sequence[str] | None) -> tuple[dict[str, np.ndarray], nn.Module | None]:
    if is_feature_file(path):
        return load_features(path, layers).arrays, None
    model = read_checkpoint(path, arch, None if x is None else x.shape[1:])
    return _model_arrays(model, x, labels, str(path), layers), model


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runners.compare", description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path, help="model A: checkpoint (.pt, .safetensors state dict) or feature "
                        "file (.npz, .safetensors with 'layers' metadata or undotted names)")
    parser.add_argument("b", type=Path, help="model B: like A")
    parser.add_argument("--data", help="probe set: .npz with x (and y), or a dataset name (default: the "
                                       "data a zoo checkpoint names)")
    parser.add_argument("--arch", help="architecture of state-dict checkpoints: conf/arch name or YAML mapping")
    parser.add_argument("--measures", default=",".join(DEFAULT_MEASURES),
                        help=f"representational measures of the heatmaps (default {','.join(DEFAULT_MEASURES)})")
    parser.add_argument("--layers", help="comma-separated module names to compare (default: ReLUs and logits)")
    parser.add_argument("--reference", type=Path, help="another seed of A's recipe (checkpoint): calibrates the verdict")
    parser.add_argument("--recipe", help="instead of --reference: train another seed now with this conf/train "
                                         "config (or YAML mapping), A's architecture and --data's training split")
    parser.add_argument("--recipe-seed", type=int, help="seed of the trained reference (default: A's seed + 1)")
    parser.add_argument("--sigmas", default=",".join(map(str, DEFAULT_SIGMAS)), help="weight-noise grid")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (functional CIs)")
    parser.add_argument("--permutations", type=int, default=200, help="permutations (matched-layer p-values)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="output folder (default results/compare/<A>_vs_<B>)")
    args = parser.parse_args(argv)
    try:
        for path in (args.a, args.b, *([args.reference] if args.reference else [])):
            if not path.is_file():
                raise SourceError(path, "no such file")
        chosen = [m.strip() for m in args.measures.split(",") if m.strip()]
        layers = [n.strip() for n in args.layers.split(",")] if args.layers else None
        sigmas = sorted(float(s) for s in args.sigmas.split(","))
        if not sigmas or sigmas[0] <= 0:
            raise CompareError(f"--sigmas: positive noise scales expected, got {args.sigmas!r}")
        arch = _arch(args.arch)
        checkpoints = [p for p in (args.a, args.b, args.reference) if p is not None and not is_feature_file(p)]
        x, labels, probe_name = _probe(args.data, checkpoints) if checkpoints else (None, None, "feature files")
        a, model_a = _load(args.a, arch, x, labels, layers)
        b, model_b = _load(args.b, arch, x, labels, layers)
        rows_a, rows_b = (next(iter(z.values())).shape[0] for z in (a, b))
        if rows_a != rows_b:
            raise SourceError(args.b, f"{rows_b} probe rows, but {args.a} has {rows_a}; both must be measured on one probe set")
        if args.reference and args.recipe:
            raise CompareError("--reference and --recipe: give one (a checkpoint of another seed, or a recipe to train it)")
        reference = read_checkpoint(args.reference, arch, x.shape[1:]) if args.reference else None
        if args.recipe:
            if model_a is None:
                raise CompareError(f"--recipe: {args.a} is a feature file; the reference needs A's checkpoint")
            reference = train_reference(args.a, args.recipe, args.recipe_seed, arch, args.data)
        names = (args.a.stem, args.b.stem) if args.a.stem != args.b.stem else (str(args.a), str(args.b))
        report = compare_arrays(a, b, model_a=model_a, model_b=model_b, measures_=chosen, reference=reference,
                                probe_x=x, layers=layers, sigmas=sigmas, n_bootstrap=args.bootstrap,
                                n_permutations=args.permutations, seed=args.seed, names=names)
    except (SourceError, CompareError) as exc:
        print(f"compare: {exc}", file=sys.stderr)
        return 2
    out = args.out or Path("results") / "compare" / f"{names[0]}_vs_{names[1]}"
    paths = write_report(report, out)
    print(report.summary())
    print(f"\nprobe set: {probe_name}\nwrote {paths['json']}, {paths['parquet'].name}, {paths['html'].name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Bring your own models: the user's checkpoints or precomputed features as a zoo source.

Two kinds of source, each loaded into the arrays the rest of the benchmark reads (the same keys as the
zoo's extracted representations): ``rep/<layer>`` (N x D), optionally ``pre/<layer>`` (ReLU
pre-activations, checkpoints only), ``logits``, ``probabilities`` and ``labels``.

**Feature files** (``.npz`` or ``.safetensors``, one per model, e.g. ``np.savez("model_a.npz",
layer1=..., layer2=..., outputs=..., labels=...)`` or ``safetensors.numpy.save_file({...},
"model_a.safetensors", metadata={"layers": json.dumps(["layer1", "layer2"])})``): every array is one
layer's representation, rows = probe inputs in one order shared by every file (an N x ... array is
flattened to N x D). The layer order is the order in an ``.npz`` file; a ``.safetensors`` file does not
keep its tensors' order, so its order is the JSON list in its metadata entry ``layers`` or, without one,
the layer names in natural order (digit runs compared as numbers: ``layer2`` before ``layer10``);
half-precision tensors are read as float32. Two names are reserved: ``outputs`` (N x C logits, or
probabilities if every row lies on the simplex) and ``labels`` (N integer classes); with them the
functional measures and the accuracy-based analyses apply.

Where a ``.safetensors`` file may be either (``runners.compare``), it is read as features when its
metadata has ``layers`` or no tensor name contains a ``.`` (see :func:`is_feature_file`).

**Checkpoints** (``.pt`` or ``.safetensors``): a saved ``torch.nn.Module`` (``torch.save(model, path)``;
a pickle, so load only files you trust), a state dict (``torch.save`` or
``safetensors.torch.save_file``), or a ``.pt`` dict holding one under ``state_dict`` (the zoo cache's format).
A state dict needs an architecture config naming a registered architecture
(:mod:`tasks.zoo.architectures`) with its keyword arguments, e.g. ``{"name": "mlp", "depth": 2,
"width": 64}``; the number of classes is read from the ``logits`` layer. A checkpoint is run on a probe
set (``.npz`` with ``x`` and optionally ``y``), and its layers are hooked by module name (default: the
zoo's convention, every ReLU then ``logits``).

Every problem is refused with a ``ValueError`` of one line naming the file and the problem (see
:class:`SourceError`): an unreadable file, rows that disagree with the probe set, a missing layer, NaN
or infinite features, an unknown architecture, a state dict that does not fit the architecture.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import safetensors
import safetensors.torch
import torch
from torch import nn

from tasks.zoo import architectures

#: array names in a feature file that are not layers
RESERVED = ("outputs", "labels")
EXTRACT_BATCH = 4096


class SourceError(ValueError):
    """A user file cannot be used; the message is one line naming the file and the problem."""

    def __init__(self, path: Path | str, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = str(path)


@dataclass
class Source:
    """One user model: its name (file stem), file, content key and arrays (plus the module for checkpoints)."""

    name: str
    path: Path
    key: str
    arrays: dict[str, np.ndarray]
    arch: str
    model: nn.Module | None = None

    @property
    def layers(self) -> list[str]:
        return [k[4:] for k in self.arrays if k.startswith("rep/")]


@dataclass(frozen=True)
class Probe:
    """The inputs checkpoints are run on (N x input shape, float32) and their labels (or None)."""

    x: np.ndarray
    y: np.ndarray | None
    path: str


def file_key(path: Path) -> str:
    """sha256 (first 16 hex digits) of a file's bytes: a source's identity is its content, not its path."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def _existing(path: Path | str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise SourceError(path, "no such file")
    return path


def _finite(path: Path, what: str, array: np.ndarray) -> np.ndarray:
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise SourceError(path, f"{what} has dtype {array.dtype}, not real numbers")
    bad = int(np.size(array) - np.isfinite(array).sum())
    if bad:
        raise SourceError(path, f"{what} has {bad} NaN or infinite value(s)")
    return array


def _probabilities(path: Path, logits: np.ndarray) -> np.ndarray:
    """Rows already on the simplex are kept (the file gave probabilities); other rows get a softmax."""
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise SourceError(path, f"outputs must be N x C with C >= 2 classes, got shape {logits.shape}")
    on_simplex = (logits >= 0).all() and np.allclose(logits.sum(1), 1.0, atol=1e-6)
    if on_simplex:
        return logits.astype(np.float64)
    return torch.softmax(torch.from_numpy(logits).double(), dim=1).numpy()


def _labels(path: Path, labels: np.ndarray, n: int) -> np.ndarray:
    if labels.ndim != 1 or labels.shape[0] != n:
        raise SourceError(path, f"labels must be a vector of {n} entries (one per probe row), got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
            raise SourceError(path, "labels must be integer classes")
        labels = labels.astype(np.int64)
    return labels.astype(np.int64)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` feature file, in file order."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: np.asarray(data[k]) for k in data.files}
    except Exception as exc:
        raise SourceError(path, f"not a readable .npz feature file ({type(exc).__name__}: {exc})") from None


def _natural_key(name: str) -> list[int | str]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a ``.safetensors`` feature file, in the order of its ``layers`` metadata entry (a JSON
    list of names; arrays it does not list follow in natural name order) or, without one, in natural name order."""
    try:
        with safetensors.safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:
        raise SourceError(path, f"not a readable .safetensors feature file ({type(exc).__name__}: {exc})") from None
    # numpy has no bfloat16: half-precision features are widened to float32
    stored = {k: (t.float() if t.is_floating_point() and t.element_size() < 4 else t).numpy() for k, t in tensors.items()}
    order = sorted(stored, key=_natural_key)
    if "layers" in metadata:
        try:
            listed = json.loads(metadata["layers"])
            if not isinstance(listed, list) or not all(isinstance(n, str) for n in listed):
                raise ValueError("not a list of names")
        except ValueError as exc:
            raise SourceError(path, f"metadata 'layers' must be a JSON list of layer names, got "
                                    f"{metadata['layers'][:100]!r} ({exc})") from None
        unknown = [n for n in listed if n not in stored]
        if unknown:
            raise SourceError(path, f"metadata 'layers' names missing layer(s) {unknown}; the file has {order}")
        order = list(dict.fromkeys(listed)) + [n for n in order if n not in listed]
    return {k: stored[k] for k in order}


def is_feature_file(path: Path | str) -> bool:
    """Whether ``path`` holds features rather than a checkpoint: every ``.npz``; a ``.safetensors`` file
    whose metadata names its ``layers`` or none of whose tensor names has a ``.`` (a state dict's names
    are ``<module>.<parameter>``); never a ``.pt``."""
    path = Path(path)
    if path.suffix == ".npz":
        return True
    if path.suffix != ".safetensors":
        return False
    try:
        with safetensors.safe_open(str(path), framework="pt") as fh:
            return "layers" in (fh.metadata() or {}) or not any("." in k for k in fh.keys())
    except Exception as exc:
        raise SourceError(path, f"not a readable .safetensors file ({type(exc).__name__}: {exc})") from None


def load_features(path: Path | str, layers: Sequence[str] | None = None) -> Source:
    """A feature file (``.npz`` or ``.safetensors``) as a :class:`Source` (format: this module's docstring);
    ``layers`` (default: every non-reserved array, in the file's layer order) are the layers kept, each of
    which the file must have."""
    path = _existing(path)
    stored = _read_safetensors(path) if path.suffix == ".safetensors" else _read_npz(path)
    found = [k for k in stored if k not in RESERVED]
    if not found:
        raise SourceError(path, f"no layer arrays (only {sorted(stored) or 'nothing'}); one array per layer expected")
    wanted = list(layers) if layers else found
    missing = [name for name in wanted if name not in stored]
    if missing:
        raise SourceError(path, f"missing layer(s) {missing}; the file has {found}")
    arrays: dict[str, np.ndarray] = {}
    n = None
    for name in wanted:
        x = stored[name]
        if x.ndim < 2:
            raise SourceError(path, f"layer {name!r} has shape {x.shape}; expected N x D (rows = probe inputs)")
        if n is not None and x.shape[0] != n:
            raise SourceError(path, f"layer {name!r} has {x.shape[0]} rows, layer {wanted[0]!r} has {n}; "
                                    "rows must be aligned on one probe set")
        n = x.shape[0]
        arrays[f"rep/{name}"] = _finite(path, f"layer {name!r}", x.reshape(n, -1))
    if "outputs" in stored:
        outputs = _finite(path, "outputs", stored["outputs"])
        if outputs.shape[0] != n:
            raise SourceError(path, f"outputs have {outputs.shape[0]} rows, the layers {n}; rows must be aligned")
        arrays["logits"] = outputs.astype(np.float64)
        arrays["probabilities"] = _probabilities(path, arrays["logits"])
    if "labels" in stored:
        arrays["labels"] = _labels(path, _finite(path, "labels", stored["labels"]), n)
    return Source(name=path.stem, path=path, key=file_key(path), arrays=arrays, arch="features")


def load_probe(path: Path | str) -> Probe:
    """The probe set checkpoints run on: an ``.npz`` with ``x`` (N x input shape) and optional ``y``."""
    path = _existing(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            stored = {k: np.asarray(data[k]) for k in data.files}
    except Exception as exc:
        raise SourceError(path, f"not a readable .npz probe set ({type(exc).__name__}: {exc})") from None
    if "x" not in stored:
        raise SourceError(path, f"a probe set needs an array 'x' (the inputs); the file has {sorted(stored)}")
    x = _finite(path, "x", stored["x"]).astype(np.float32)
    y = _labels(path, _finite(path, "y", stored["y"]), x.shape[0]) if "y" in stored else None
    return Probe(x=x, y=y, path=str(path))


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        try:  # a whole saved module is a pickle: only the user's own files are loaded this way
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:
            raise SourceError(path, f"checkpoint does not load ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None


def read_checkpoint(path: Path | str, arch: dict[str, Any] | None = None,
                    input_shape: tuple[int, ...] | None = None) -> nn.Module:
    """The module saved at ``path``: a whole module, or a state dict (bare or under ``state_dict``) loaded
    into the architecture ``arch`` ({"name": registered name, **kwargs}) built for ``input_shape``."""
    path = _existing(path)
    if path.suffix == ".safetensors":
        try:
            stored = safetensors.torch.load_file(str(path), device="cpu")
        except Exception as exc:
            raise SourceError(path, f"not a readable .safetensors state dict ({type(exc).__name__}: {exc})") from None
    else:
        stored = _torch_load(path)
    if isinstance(stored, nn.Module):
        return stored.float().eval()
    if isinstance(stored, dict) and isinstance(stored.get("state_dict"), dict):
        if arch is None and isinstance(stored.get("spec"), dict):  # the zoo cache's checkpoints name their arch
            arch = stored["spec"].get("arch")
        stored = stored["state_dict"]
    if not isinstance(stored, dict) or not all(isinstance(v, torch.Tensor) for v in stored.values()):
        raise SourceError(path, f"checkpoint holds a {type(stored).__name__}, not a module or a state dict")
    if not arch or "name" not in arch:
        raise SourceError(path, "a state dict needs an architecture config naming a registered architecture "
                                f"(byo.arch / --arch; one of {sorted(architectures.ARCHITECTURES)})")
    params = dict(arch)
    name = params.pop("name")
    if name not in architectures.ARCHITECTURES:
        raise SourceError(path, f"unknown architecture {name!r}; valid choices: {sorted(architectures.ARCHITECTURES)}")
    if input_shape is None:
        raise SourceError(path, "a state dict needs a probe set to know the input shape")
    logits = stored.get("logits.weight")
    n_classes = int(logits.shape[0]) if logits is not None else None
    if n_classes is None:
        raise SourceError(path, "state dict has no 'logits.weight'; the zoo architectures end in a 'logits' layer")
    try:
        model = architectures.build(name, tuple(input_shape), n_classes, **params)
        model.load_state_dict(stored)
    except Exception as exc:
        raise SourceError(path, f"state dict does not fit architecture {name} {params} "
                                f"({type(exc).__name__}: {' '.join(str(exc).split())[:300]})") from None
    return model.float().eval()


@torch.no_grad()
def extract(model: nn.Module, x: np.ndarray, layers: Sequence[str] | None = None, *,
            path: Path | str = "model") -> dict[str, np.ndarray]:
    """Run ``x`` through ``model`` and keep ``layers`` (module names; default the zoo's convention), the
    ReLU pre-activations where the architecture has them, the logits and the probabilities."""
    modules = dict(model.named_modules())
    try:
        layers = list(layers) if layers else architectures.representation_layers(model)
        pre = architectures.preactivation_layers(model) if isinstance(model, nn.Sequential) else []
    except Exception as exc:
        raise SourceError(path, f"cannot tell the model's layers ({exc}); name them (byo.layers / --layers)") from None
    missing = [n for n in (*layers, *pre) if n not in modules]
    if missing:
        raise SourceError(path, f"missing layer(s) {missing}; the model's modules are {[n for n in modules if n]}")
    try:
        captured, out = architectures.run_capturing(
            model, torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), [*layers, *pre], EXTRACT_BATCH)
    except Exception as exc:
        raise SourceError(path, f"model does not run on the probe inputs of shape {x.shape} "
                                f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from None
    captured = {n: t.float() for n, t in captured.items()}
    logits = _finite(Path(path), "outputs", out.double().numpy())
    arrays = {f"rep/{n}": _finite(Path(path), f"layer {n!r}", captured[n].numpy()) for n in layers}
    arrays.update({f"pre/{n}": captured[n].numpy() for n in pre})
    arrays["logits"] = logits
    logits = torch.from_numpy(logits)
    arrays["probabilities"] = torch.softmax(logits, dim=1).numpy()
    return arrays


def load_checkpoint(path: Path | str, probe: Probe, arch: dict[str, Any] | None = None,
                    layers: Sequence[str] | None = None) -> Source:
    """A checkpoint run on ``probe`` as a :class:`Source` (its module kept for weight-space measures)."""
    path = _existing(path)
    model = read_checkpoint(path, arch, probe.x.shape[1:])
    arrays = extract(model, probe.x, layers, path=path)
    if probe.y is not None:
        arrays["labels"] = probe.y
    name = (arch or {}).get("name") or type(model).__name__
    return Source(name=path.stem, path=path, key=file_key(path), arrays=arrays, arch=str(name), model=model)


def check_aligned(sources: Sequence[Source]) -> None:
    """Every source has the first one's probe rows, layers and labels (else :class:`SourceError` naming it)."""
    if not sources:
        raise ValueError("bring-your-own: no models given (byo.features or byo.checkpoints)")
    first = sources[0]
    n = next(iter(first.arrays.values())).shape[0]
    for s in sources[1:]:
        rows = next(iter(s.arrays.values())).shape[0]
        if rows != n:
            raise SourceError(s.path, f"{rows} probe rows, but {first.path.name} has {n}; "
                                      "every model must be measured on the same probe set")
        missing = [layer for layer in first.layers if layer not in s.layers]
        if missing:
            raise SourceError(s.path, f"missing layer(s) {missing} that {first.path.name} has")
        if ("labels" in s.arrays) != ("labels" in first.arrays) or (
                "labels" in s.arrays and not np.array_equal(s.arrays["labels"], first.arrays["labels"])):
            raise SourceError(s.path, f"labels differ from {first.path.name}'s; the files must share one probe set")
        if ("logits" in s.arrays) != ("logits" in first.arrays):
            raise SourceError(s.path, f"outputs given in only one of this file and {first.path.name}")


def load_sources(features: Sequence[str | Path] = (), checkpoints: Sequence[str | Path] = (),
                 arch: dict[str, Any] | None = None, probe: str | Path | None = None,
                 layers: Sequence[str] | None = None) -> list[Source]:
    """Every user model, checked to share one probe set and layer list. ``features`` may name a directory
    (its ``*.npz`` and ``*.safetensors`` files in name order) and so may ``checkpoints`` (its ``*.pt`` and
    ``*.safetensors`` files)."""
    features = _expand(features, "*.npz", "*.safetensors")
    checkpoints = _expand(checkpoints, "*.pt", "*.safetensors")
    sources = [load_features(p, layers) for p in features]
    if checkpoints:
        if probe is None:
            raise SourceError(checkpoints[0], "checkpoints need a probe set to run on (byo.probe / --data: an .npz "
                                              "with x and optional y)")
        probe_set = load_probe(probe)
        sources += [load_checkpoint(p, probe_set, arch, layers) for p in checkpoints]
    check_aligned(sources)
    names = [s.name for s in sources]
    if len(set(s.key for s in sources)) < len(sources):
        dup = next(s for s in sources if [t.key for t in sources].count(s.key) > 1)
        raise SourceError(dup.path, "the same file content is given twice")
    if len(set(names)) < len(names):
        for s in sources:  # two files with one stem: name them by their path instead
            s.name = str(s.path)
    return sources


def _expand(paths: Sequence[str | Path] | str | None, *patterns: str) -> list[Path]:
    if not paths:
        return []
    if isinstance(paths, (str, Path)):
        paths = [paths]
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for pattern in patterns for f in p.glob(pattern))
            if not found:
                raise SourceError(p, f"directory has no {' or '.join(patterns)} files")
            out += found
        else:
            out.append(p)
    return out

"""Content-addressed caches of trained models and extracted representations.

A model is keyed by its semantic spec (architecture, data, training, intervention, seed); a
representation set by (model spec, weight perturbation, probe set, extraction version). Both are
computed at most once: a file lock per key makes concurrent jobs wait for the one that computes it.
Corrupt files (truncated, failed CRC) are detected on load and recomputed, never read as data.

A model file also holds the model's probe-set predictions recorded during training (its function-space
trajectory, :class:`tasks.zoo.training.ProbeHistory`), so maps of models and checkpoints need no extra
training; files written before these were recorded load as before, without them. A spec whose
``train.warm_start`` is set is retrained from a perturbed copy of its origin, the same spec without the
warm start, which is taken from (or first put into) the cache.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import logging
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from filelock import FileLock

from tasks.storage import atomic_write, content_key, read_arrays, write_arrays
from tasks.zoo import architectures, datasets
from tasks.zoo.training import (
    ProbeHistory,
    TrainingDivergedError,
    check_finite_weights,
    perturb,
    perturbation_seed,
    prepare_data,
    train,
    warm_start_config,
)

log = logging.getLogger(__name__)

#: Bump when extraction changes what is stored (invalidates every representation key).
EXTRACTION_VERSION = "1"
#: Probe inputs per forward pass during extraction (bounded memory for big probe sets).
EXTRACT_BATCH = 4096
#: Bump when training code changes the trained weights (invalidates every model key).
TRAINING_VERSION = "1"


class _Kept(OrderedDict):
    """Values kept in this process, least recently used dropped first, within a budget: ``budget()`` (read
    at each insertion) of ``size(value)`` units (1 per value by default). Each entry holds the signature
    it was kept under (e.g. its file's :func:`_file_signature`; None where the key says it all), and
    :meth:`fetch` returns it only under the same signature."""

    def __init__(self, budget: Callable[[], int], size: Callable[[Any], int] = lambda value: 1):
        super().__init__()
        self._budget, self._size = budget, size

    def fetch(self, key: Any, signature: Any = None) -> Any:
        """The value kept under ``key`` and ``signature`` (now the most recently used), or None."""
        entry = self.get(key)
        if entry is None or entry[0] != signature:
            return None
        self.move_to_end(key)
        return entry[1]

    def keep(self, key: Any, signature: Any, value: Any) -> None:
        """Keep ``value`` (unless it alone exceeds the budget), dropping the least recently used beyond it."""
        self.pop(key, None)
        size = self._size(value)
        if size > self._budget():
            return
        self[key] = (signature, value, size)
        while sum(entry[2] for entry in self.values()) > self._budget():
            self.popitem(last=False)


#: Loaded (and perturbed) models kept per process for :meth:`ZooCache.variant_model`: the functional
#: measures ask for both models of every row (~10,000 loads in the default benchmark, 2-13 ms each).
LOADED_MODELS = 64
_loaded = _Kept(lambda: LOADED_MODELS)


#: Bytes of representation arrays kept per process by :meth:`ZooCache.representations` (each job reads its
#: model's and every partner's file, ~1-7 ms each with the CRC check; a group job has up to 14 partners).
KEPT_REPRESENTATION_BYTES = 256 * 2**20
_arrays = _Kept(lambda: KEPT_REPRESENTATION_BYTES, size=lambda arrays: sum(a.nbytes for a in arrays.values()))


#: Datasets made from their config alone kept per process, and the versions of them that interventions
#: prepare (shortcut markers): each job makes its own ZooCache, and a worker runs many jobs on the same data
#: (generating the language domain's sentences takes ~0.2 s; the markers ~1.5 ms, asked for by every
#: functional measure's row).
KEPT_DATASETS = 32
_datasets = _Kept(lambda: KEPT_DATASETS)


def _load(data_cfg: dict[str, Any]) -> datasets.Dataset:
    return datasets.load(data_cfg["name"], **{k: v for k, v in data_cfg.items() if k != "name"})


#: data-config keys that say where files are, not what the data is: never part of a key
LOCATION_KEYS = ("root",)


def semantic_data(data: dict[str, Any]) -> dict[str, Any]:
    """The data config without its location keys (moving the data folder changes no key)."""
    return {k: v for k, v in data.items() if k not in LOCATION_KEYS}


@dataclass(frozen=True)
class ModelSpec:
    """Everything that determines a trained model's weights."""

    arch: dict[str, Any]
    data: dict[str, Any]
    train: dict[str, Any]
    intervention: dict[str, Any]
    seed: int

    def as_dict(self) -> dict[str, Any]:
        # ``warm_start: null`` (the default) is left out, so models trained before the option existed keep
        # their keys; a set warm start enters the key in its normalised form.
        train = {k: v for k, v in self.train.items() if k != "warm_start"}
        warm_start = warm_start_config(self.train.get("warm_start"))
        if warm_start is not None:
            train["warm_start"] = warm_start
        return {
            "arch": self.arch,
            "data": semantic_data(self.data),
            "train": train,
            "intervention": self.intervention,
            "seed": self.seed,
            "training_version": TRAINING_VERSION,
        }

    @functools.cached_property
    def key(self) -> str:
        """Content key of :meth:`as_dict` (computed once per spec: a job asks for it for every result row;
        a spec is frozen and its dicts are not changed after it is made)."""
        return content_key(self.as_dict())

    @property
    def warm_start(self) -> dict[str, Any] | None:
        """The normalised ``train.warm_start`` ({scale, seed, epochs}) or None."""
        return warm_start_config(self.train.get("warm_start"))

    @property
    def origin(self) -> "ModelSpec | None":
        """For a warm-started spec, the spec it restarts from (the same without the warm start)."""
        if self.warm_start is None:
            return None
        return ModelSpec(self.arch, self.data, {**self.train, "warm_start": None}, self.intervention, self.seed)

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> "ModelSpec":
        """The spec stored in a model file (the inverse of :meth:`as_dict`, ``training_version`` aside)."""
        return cls(spec["arch"], spec["data"], spec["train"], spec["intervention"], int(spec["seed"]))


@dataclass(frozen=True)
class Variant:
    """A model spec plus a weight perturbation (scale 0 = the trained model itself)."""

    model: ModelSpec
    scale: float = 0.0
    perturb_seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        pert = {"scale": self.scale, "seed": self.perturb_seed} if self.scale > 0 else None
        return {"model": self.model.key, "perturbation": pert, "extraction_version": EXTRACTION_VERSION}

    @functools.cached_property
    def key(self) -> str:
        """Content key of :meth:`as_dict` (computed once per variant, as :attr:`ModelSpec.key`)."""
        return content_key(self.as_dict())


class ZooCache:
    def __init__(self, root: Path, device: str = "cpu"):
        self.root = Path(root)
        self.device = device
        self._files: dict[tuple, datasets.Dataset] = {}
        self.trained = 0
        self.extracted = 0

    def dataset(self, data_cfg: dict[str, Any]) -> datasets.Dataset:
        """The dataset of ``data_cfg`` (loaded once, see :meth:`_kept`; callers share it and must not change
        its arrays)."""
        return self._kept(data_cfg, ("data", content_key(data_cfg)), lambda: _load(data_cfg))

    def data_for(self, spec: ModelSpec) -> datasets.Dataset:
        """The dataset as the model of ``spec`` sees it (interventions that change inputs applied), made
        once like :meth:`dataset`."""
        data = self.dataset(spec.data)
        if spec.intervention.get("shortcut") is None:
            return prepare_data(data, spec.intervention, spec.seed)  # the dataset itself
        key = ("prepared", content_key(spec.data), content_key(spec.intervention), spec.seed)
        return self._kept(spec.data, key, lambda: prepare_data(data, spec.intervention, spec.seed))

    def _kept(self, data_cfg: dict[str, Any], key: tuple, make: Callable[[], datasets.Dataset]) -> datasets.Dataset:
        """``make()``, or what it returned for ``key`` before: data made from its config alone (generated or
        bundled with a package) once per process (:data:`KEPT_DATASETS`, least recently used dropped), data
        read from files (its config has a location key such as ``root``) once per ZooCache."""
        if any(k in data_cfg for k in LOCATION_KEYS):
            if key not in self._files:
                self._files[key] = make()
            return self._files[key]
        data = _datasets.fetch(key)
        if data is None:
            data = make()
            _datasets.keep(key, None, data)
        return data

    def build(self, spec: ModelSpec) -> torch.nn.Sequential:
        data = self.data_for(spec)
        arch = dict(spec.arch)
        return architectures.build(arch.pop("name"), data.input_shape, data.n_classes, **arch)

    def model_path(self, spec: ModelSpec) -> Path:
        return self.root / "models" / f"{spec.key}.pt"

    def diverged_path(self, spec: ModelSpec) -> Path:
        return self.root / "models" / f"{spec.key}.diverged.json"

    def _diverged(self, spec: ModelSpec, reason: str) -> TrainingDivergedError:
        """Record that ``spec``'s training diverged (so no later job retrains it) and return the error."""
        message = f"model {spec.arch['name']} ({spec.key}): {reason}"
        atomic_write(self.diverged_path(spec), lambda fh: fh.write(json.dumps({"reason": message}).encode()))
        log.warning("%s; recorded as diverged, its comparisons are undefined", message)
        return TrainingDivergedError(message)

    def model(self, spec: ModelSpec) -> torch.nn.Sequential:
        """The trained model of ``spec``, from the cache or trained now (once, under a lock).

        A warm-started spec starts from its origin's trained weights (:attr:`ModelSpec.origin`, from the
        cache or trained first); ``train`` perturbs and retrains them (:func:`tasks.zoo.training.train`).
        A model whose training diverged (non-finite loss or weights) raises
        :class:`~tasks.zoo.training.TrainingDivergedError`; a marker file next to the model files records
        it, so later jobs raise the same error at once instead of training again.
        """
        path = self.model_path(spec)
        path.parent.mkdir(parents=True, exist_ok=True)
        model = self.build(spec)
        with FileLock(str(path) + ".lock"):
            marker = self.diverged_path(spec)
            if marker.exists():
                raise TrainingDivergedError(json.loads(marker.read_text())["reason"])
            state = _load_state(path)
            if state is not None and not all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point()):
                raise self._diverged(spec, "training diverged: the cached checkpoint holds non-finite weights")
            if state is None:
                settings = {k: v for k, v in spec.train.items() if k != "warm_start"}
                if spec.origin is not None:
                    model.load_state_dict(self.model(spec.origin).state_dict())
                history = ProbeHistory()
                try:
                    metrics = train(model, self.data_for(spec), seed=spec.seed, device=self.device,
                                    intervention=spec.intervention, warm_start=spec.warm_start, history=history,
                                    **settings)
                except TrainingDivergedError as exc:
                    raise self._diverged(spec, str(exc)) from None
                recorded = {"epochs": torch.tensor(history.epochs, dtype=torch.int64),
                            "probabilities": torch.from_numpy(np.stack(history.probabilities))}
                buffer = {"state_dict": model.state_dict(), "spec": spec.as_dict(), "metrics": metrics,
                          "sha256": state_digest(model.state_dict()),
                          "probe_history": recorded, "probe_history_sha256": state_digest(recorded)}
                atomic_write(path, lambda fh: torch.save(buffer, fh))
                # Logged once the model is stored: a sweep stopped between the two would otherwise log a
                # model as trained that the rerun must train (and log) again.
                log.info("trained %s seed=%d%s: probe accuracy %.3f", spec.arch["name"], spec.seed,
                         f" warm start {spec.warm_start}" if spec.warm_start else "", metrics["probe_accuracy"])
                self.trained += 1
                return model
        model.load_state_dict(state)
        model.to(self.device).eval()
        return model

    def verify_model(self, spec: ModelSpec) -> None:
        """Check the model file of ``spec`` if there is one, and retrain it if it is damaged (a job's own
        model is verified even when its representations are cached and the model would not be loaded)."""
        path = self.model_path(spec)
        if not path.exists():
            return
        with FileLock(str(path) + ".lock"):
            damaged = path.exists() and _load_state(path, consequence="repairing it: retraining") is None
            if damaged:
                path.unlink()
        if damaged:
            self.model(spec)

    def cached_model(self, spec: ModelSpec) -> torch.nn.Sequential | None:
        """The trained model of ``spec`` if the cache holds it, else None (never trains: for analyses)."""
        state = _load_state(self.model_path(spec), consequence="treated as missing")
        if state is None:
            return None
        model = self.build(spec)
        model.load_state_dict(state)
        return model.to(self.device).eval()

    def probe_history(self, spec: ModelSpec) -> tuple[np.ndarray, np.ndarray] | None:
        """(epochs, probabilities: checkpoints x N x C float32) recorded while ``spec`` was trained, or None
        when the cache lacks the model or it was trained before the history was recorded."""
        try:
            checkpoint = torch.load(self.model_path(spec), map_location="cpu", weights_only=True)
            recorded = checkpoint["probe_history"]
            if checkpoint["probe_history_sha256"] != state_digest(recorded):
                raise ValueError("checksum mismatch")
        except FileNotFoundError:
            return None
        except KeyError:
            return None  # written before probe histories were recorded
        except Exception as exc:
            log.warning("unreadable probe history in %s (%s: %s)", self.model_path(spec), type(exc).__name__, exc)
            return None
        return recorded["epochs"].numpy(), recorded["probabilities"].numpy()

    def specs(self) -> list[ModelSpec]:
        """The specs of every model in the cache (read from the model files; unreadable ones and models of
        another training version are skipped), in file-name order."""
        out = []
        for path in sorted((self.root / "models").glob("*.pt")):
            try:
                stored = torch.load(path, map_location="cpu", weights_only=True, mmap=True)["spec"]
            except Exception as exc:
                log.warning("skipping unreadable model file %s (%s: %s)", path.name, type(exc).__name__, exc)
                continue
            if stored.get("training_version") != TRAINING_VERSION:
                continue
            spec = ModelSpec.from_dict(stored)
            if spec.key == path.stem:
                out.append(spec)
        return out

    def representations(self, variant: Variant) -> dict[str, np.ndarray]:
        """Per-layer representations, pre-activations, logits and probabilities on the probe set.

        Keys: ``rep/<layer>`` (N x D, conv maps flattened channel-major), ``pre/<layer>`` (the
        affine output feeding each ReLU, flattened), ``logits``, ``probabilities``, ``labels``.

        The arrays of an unchanged file are kept in this process (:data:`KEPT_REPRESENTATION_BYTES`, keyed by
        the file's path, size, mtime and inode), so a job that compares its model with many partners, and
        the later jobs of a worker, read and check each file once; callers share the arrays (as the rows of
        one pair always have) and must not change them.
        """
        path = self.root / "representations" / f"{variant.key}.npz"
        signature = _file_signature(path)
        kept = _arrays.fetch(str(path), signature) if signature is not None else None
        if kept is not None:
            return dict(kept)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = read_arrays(path)
        if arrays is None:
            with FileLock(str(path) + ".lock"):
                arrays = read_arrays(path)
                if arrays is None:
                    if path.exists():
                        log.warning("repairing damaged representation file %s (unreadable or failed its CRCs): "
                                    "extracting it again", path)
                    model = self.variant_model(variant)
                    arrays = extract(model, self.data_for(variant.model))
                    write_arrays(arrays, path)
                    self.extracted += 1
                signature = _file_signature(path)
        if signature is None:  # not on disk (an unwritable cache): nothing to check a kept copy against
            _arrays.pop(str(path), None)
        else:
            _arrays.keep(str(path), signature, dict(arrays))
        return dict(arrays)

    def variant_model(self, variant: Variant) -> torch.nn.Sequential:
        """The model of ``variant`` (its trained model, perturbed when ``variant.scale`` > 0).

        Each call returns a model of its own (a caller may change it). A model read from an unchanged model
        file is kept in this process (:data:`LOADED_MODELS` of them, keyed by the file's path, size, mtime
        and inode, the perturbation and the device) and later calls get a deep copy of it: the same module
        and the same weights bit for bit, without reading, checking, building and perturbing it again."""
        path = self.model_path(variant.model)
        memo = (str(path), variant.scale if variant.scale > 0 else 0.0, variant.perturb_seed if variant.scale > 0 else 0,
                str(self.device))
        before = _file_signature(path)
        kept = _loaded.fetch(memo, before) if before is not None else None
        if kept is not None:
            return copy.deepcopy(kept)
        model = self.model(variant.model)
        if variant.scale > 0:
            model = perturb(model, variant.scale, perturbation_seed(variant.model.seed, variant.perturb_seed))
            check_finite_weights(model, f"the weight perturbation of scale {variant.scale!r} overflowed")
        if before is not None and _file_signature(path) == before:  # loaded from this very file (not trained)
            _loaded.keep(memo, before, copy.deepcopy(model))
        return model


def _file_signature(path: Path) -> tuple[int, int, int] | None:
    """(size, mtime, inode) of a file, None when it does not exist: a file replaced by an atomic write
    (a new inode) or rewritten in place has another signature."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns, st.st_ino


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 of a state dict's names, dtypes, shapes and bytes. torch.load does not check the zip CRCs,
    so a damaged checkpoint can load as wrong weights; this digest, stored in the checkpoint, catches it."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _load_state(path: Path, consequence: str = "retraining") -> dict[str, torch.Tensor] | None:
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        state = checkpoint["state_dict"]
        if checkpoint["sha256"] != state_digest(state):
            raise ValueError("checksum mismatch")
        return state
    except FileNotFoundError:
        return None
    except Exception as exc:  # damaged, truncated, or written before checkpoints carried a digest
        log.warning("corrupt model checkpoint %s (%s: %s): %s", path, type(exc).__name__, exc, consequence)
        return None


def extract(model: torch.nn.Sequential, data: datasets.Dataset) -> dict[str, np.ndarray]:
    """Run the probe set through ``model`` and keep every named layer the benchmark compares."""
    rep_layers = architectures.representation_layers(model)
    pre_layers = architectures.preactivation_layers(model)
    outputs, logits = architectures.run_capturing(model, torch.from_numpy(data.x_probe),
                                                  [*rep_layers, *pre_layers], EXTRACT_BATCH)
    arrays = {f"rep/{n}": outputs[n].numpy() for n in rep_layers}
    arrays.update({f"pre/{n}": outputs[n].numpy() for n in pre_layers})
    arrays["logits"] = logits.numpy()
    arrays["probabilities"] = torch.softmax(logits.double(), dim=1).numpy()
    arrays["labels"] = data.y_probe
    return arrays


def layer_names(arrays: dict[str, np.ndarray], prefix: str = "rep/") -> list[str]:
    return [k[len(prefix):] for k in arrays if k.startswith(prefix)]


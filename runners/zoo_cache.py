"""Content-addressed caches of trained models and extracted representations.

A model is keyed by its semantic spec (architecture, data, training, intervention, seed); a
representation set by (model spec, weight perturbation, probe set, extraction version). Both are
computed at most once: a file lock per key makes concurrent jobs wait for the one that computes it.
Corrupt files (truncated, failed CRC) are detected on load and recomputed, never read as data.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import FileLock

from runners.storage import atomic_write, content_key, read_arrays, write_arrays
from tasks.zoo import architectures, datasets
from tasks.zoo.training import perturb, prepare_data, seed_streams, train

log = logging.getLogger(__name__)

#: Bump when extraction changes what is stored (invalidates every representation key).
EXTRACTION_VERSION = "1"
#: Probe inputs per forward pass during extraction (bounded memory for big probe sets).
EXTRACT_BATCH = 4096
#: Bump when training code changes the trained weights (invalidates every model key).
TRAINING_VERSION = "1"


@dataclass(frozen=True)
class ModelSpec:
    """Everything that determines a trained model's weights."""

    arch: dict[str, Any]
    data: dict[str, Any]
    train: dict[str, Any]
    intervention: dict[str, Any]
    seed: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "arch": self.arch,
            "data": self.data,
            "train": self.train,
            "intervention": self.intervention,
            "seed": self.seed,
            "training_version": TRAINING_VERSION,
        }

    @property
    def key(self) -> str:
        return content_key(self.as_dict())


@dataclass(frozen=True)
class Variant:
    """A model spec plus a weight perturbation (scale 0 = the trained model itself)."""

    model: ModelSpec
    scale: float = 0.0
    perturb_seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        pert = {"scale": self.scale, "seed": self.perturb_seed} if self.scale > 0 else None
        return {"model": self.model.key, "perturbation": pert, "extraction_version": EXTRACTION_VERSION}

    @property
    def key(self) -> str:
        return content_key(self.as_dict())


class ZooCache:
    def __init__(self, root: Path, device: str = "cpu"):
        self.root = Path(root)
        self.device = device
        self._data: dict[str, datasets.Dataset] = {}
        self.trained = 0
        self.extracted = 0

    def dataset(self, data_cfg: dict[str, Any]) -> datasets.Dataset:
        key = content_key(data_cfg)
        if key not in self._data:
            cfg = dict(data_cfg)
            self._data[key] = datasets.load(cfg.pop("name"), **cfg)
        return self._data[key]

    def data_for(self, spec: ModelSpec) -> datasets.Dataset:
        """The dataset as the model of ``spec`` sees it (interventions that change inputs applied)."""
        return prepare_data(self.dataset(spec.data), spec.intervention, spec.seed)

    def build(self, spec: ModelSpec) -> torch.nn.Sequential:
        data = self.data_for(spec)
        arch = dict(spec.arch)
        return architectures.build(arch.pop("name"), data.input_shape, data.n_classes, **arch)

    def model(self, spec: ModelSpec) -> torch.nn.Sequential:
        """The trained model of ``spec``, from the cache or trained now (once, under a lock)."""
        path = self.root / "models" / f"{spec.key}.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        model = self.build(spec)
        with FileLock(str(path) + ".lock"):
            state = _load_state(path)
            if state is None:
                metrics = train(model, self.data_for(spec), seed=spec.seed, device=self.device,
                                intervention=spec.intervention, **spec.train)
                log.info("trained %s seed=%d: probe accuracy %.3f", spec.arch["name"], spec.seed, metrics["probe_accuracy"])
                buffer = {"state_dict": model.state_dict(), "spec": spec.as_dict(), "metrics": metrics,
                          "sha256": state_digest(model.state_dict())}
                atomic_write(path, lambda fh: torch.save(buffer, fh))
                self.trained += 1
                return model
        model.load_state_dict(state)
        model.to(self.device).eval()
        return model

    def representations(self, variant: Variant) -> dict[str, np.ndarray]:
        """Per-layer representations, pre-activations, logits and probabilities on the probe set.

        Keys: ``rep/<layer>`` (N x D, conv maps flattened channel-major), ``pre/<layer>`` (the
        affine output feeding each ReLU, flattened), ``logits``, ``probabilities``, ``labels``.
        """
        path = self.root / "representations" / f"{variant.key}.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = read_arrays(path)
        if arrays is not None:
            return arrays
        with FileLock(str(path) + ".lock"):
            arrays = read_arrays(path)
            if arrays is None:
                model = self.variant_model(variant)
                arrays = extract(model, self.data_for(variant.model))
                write_arrays(arrays, path)
                self.extracted += 1
        return arrays

    def variant_model(self, variant: Variant) -> torch.nn.Sequential:
        model = self.model(variant.model)
        if variant.scale == 0:
            return model
        seed = seed_streams(variant.model.seed * 1_000_003 + variant.perturb_seed, "perturbation")["perturbation"]
        return perturb(model, variant.scale, seed)


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 of a state dict's names, dtypes, shapes and bytes. torch.load does not check the zip CRCs,
    so a damaged checkpoint can load as wrong weights; this digest, stored in the checkpoint, catches it."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _load_state(path: Path) -> dict[str, torch.Tensor] | None:
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        state = checkpoint["state_dict"]
        if checkpoint["sha256"] != state_digest(state):
            raise ValueError("checksum mismatch")
        return state
    except FileNotFoundError:
        return None
    except Exception as exc:  # damaged, truncated, or written before checkpoints carried a digest
        log.warning("corrupt model checkpoint %s (%s: %s): retraining", path, type(exc).__name__, exc)
        return None


@torch.no_grad()
def extract(model: torch.nn.Sequential, data: datasets.Dataset) -> dict[str, np.ndarray]:
    """Run the probe set through ``model`` and keep every named layer the benchmark compares."""
    rep_layers = architectures.representation_layers(model)
    pre_layers = architectures.preactivation_layers(model)
    outputs: dict[str, list[torch.Tensor]] = {}
    wanted = set(rep_layers) | set(pre_layers)
    hooks = [
        module.register_forward_hook(lambda _m, _i, out, name=name: outputs.setdefault(name, []).append(out.detach().cpu()))
        for name, module in model.named_modules()
        if name in wanted
    ]
    missing = wanted - {name for name, _ in model.named_modules()}
    if missing:
        raise ValueError(f"model has no module(s) named {sorted(missing)} to extract")
    device = next(model.parameters()).device
    try:
        model.eval()
        logits = torch.cat([model(batch.to(device)).cpu()
                            for batch in torch.from_numpy(data.x_probe).split(EXTRACT_BATCH)])
    finally:
        for h in hooks:
            h.remove()
    arrays = {f"rep/{n}": torch.cat(outputs[n]).flatten(1).numpy() for n in rep_layers}
    arrays.update({f"pre/{n}": torch.cat(outputs[n]).flatten(1).numpy() for n in pre_layers})
    arrays["logits"] = logits.numpy()
    arrays["probabilities"] = torch.softmax(logits.double(), dim=1).numpy()
    arrays["labels"] = data.y_probe
    return arrays


def layer_names(arrays: dict[str, np.ndarray], prefix: str = "rep/") -> list[str]:
    return [k[len(prefix):] for k in arrays if k.startswith(prefix)]


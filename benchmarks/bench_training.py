"""CPU time of training the zoo's models, checked bit for bit against the models of an earlier run.

Usage::

    uv run python -m benchmarks.bench_training CACHE                        # every model in CACHE/models
    uv run python -m benchmarks.bench_training CACHE --arch transformer mlp --per-arch 3

``CACHE`` is a model cache (``results/cache`` of a sweep). Each model file holds the spec it was trained
from; this script trains the same spec again with the code on the path (one torch thread, deterministic
algorithms, as a job trains), prints the CPU time (``time.process_time``) per architecture and checks that
the weights, the stored sha256 of the state dict, the metrics and the probe-history digest equal those of
the file: a speed-up must not change a single trained weight. Exits 1 when a model differs.

To compare two versions of the code, run this script from each version's checkout, alternating, and take
the minimum of the repeats (BENCHMARKS.md, "From an empty cache, sixth round (train)").
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from tasks.zoo.cache import ModelSpec, ZooCache, state_digest
from tasks.zoo.training import ProbeHistory, train


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cache", type=Path, help="a model cache folder (with models/*.pt)")
    parser.add_argument("--arch", nargs="*", default=None, help="architectures to train (default: all)")
    parser.add_argument("--per-arch", type=int, default=None, help="at most this many models per architecture")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    files = sorted((args.cache / "models").glob("*.pt"))
    if not files:
        parser.error(f"{args.cache / 'models'} holds no model files")
    chosen: dict[str, list[tuple[Path, ModelSpec]]] = defaultdict(list)
    for path in files:
        spec = ModelSpec.from_dict(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["spec"])
        name = spec.arch["name"]
        if spec.warm_start is None and (args.arch is None or name in args.arch) \
                and (args.per_arch is None or len(chosen[name]) < args.per_arch):
            chosen[name].append((path, spec))
    zoo = ZooCache(args.cache)  # read only: data and model builds, no files written
    seconds: dict[str, float] = defaultdict(float)
    differ = []
    for path, spec in tqdm([m for ms in chosen.values() for m in ms], desc="training", unit="model"):
        data, model = zoo.data_for(spec), zoo.build(spec)
        history = ProbeHistory()
        start = time.process_time()
        metrics = train(model, data, seed=spec.seed, intervention=spec.intervention, history=history,
                        **{k: v for k, v in spec.train.items() if k != "warm_start"})
        seconds[spec.arch["name"]] += time.process_time() - start
        stored = torch.load(path, map_location="cpu", weights_only=True)
        recorded = {"epochs": torch.tensor(history.epochs, dtype=torch.int64),
                    "probabilities": torch.from_numpy(np.stack(history.probabilities))}
        state = model.state_dict()
        same = (state.keys() == stored["state_dict"].keys()
                and all(state[k].reshape(-1).view(torch.uint8).equal(stored["state_dict"][k].reshape(-1).view(torch.uint8))
                        for k in state)
                and state_digest(state) == stored["sha256"] and metrics == stored["metrics"]
                and state_digest(recorded) == stored.get("probe_history_sha256"))
        if not same:
            differ.append(path.name)
    print(f"{'architecture':14s} {'models':>6s} {'CPU s':>8s} {'per model':>10s}")
    for name, models in chosen.items():
        print(f"{name:14s} {len(models):6d} {seconds[name]:8.2f} {seconds[name] / len(models):10.3f}")
    print(f"{'all':14s} {sum(map(len, chosen.values())):6d} {sum(seconds.values()):8.2f}")
    if differ:
        print(f"NOT bit-identical to the stored models: {len(differ)}: {', '.join(differ)}")
        return 1
    print("every model bit-identical to the stored one (weights, sha256, metrics, probe history)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

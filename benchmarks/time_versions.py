"""CPU time of one cold call per O(N²) measure, old code against new, interleaved (one child process per
version and round, alternating; minimum over the rounds), with both values.

Usage (the old code as a ``git archive`` of its ``measures`` package)::

    mkdir -p /tmp/old && git archive <commit> measures | tar -x -C /tmp/old
    OMP_NUM_THREADS=1 env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        uv run python -m benchmarks.time_versions 2000x256 5 /tmp/old [comma-separated subset of SPECS]
"""

import json
import os
import subprocess
import sys
from pathlib import Path
SPECS = ["distance_correlation", "eigenspace_overlap:center=False", "rsa", "uniformity_difference:include_diagonal=True",
         "knn_jaccard", "rank_similarity", "joint_rank_jaccard", "second_order_cosine:entries=distance", "mutual_knn",
         "cknna", "cka_rbf", "rsm_norm_difference"]
CHILD = r'''
import sys, time, json, numpy as np, torch
torch.set_num_threads(1)
import measures
from measures import _memo, cca
n, d = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
x = rng.standard_normal((n, d)); y = 0.3 * x @ (rng.standard_normal((d, d)) / np.sqrt(d)) + rng.standard_normal((n, d))
X, Y = torch.from_numpy(x), torch.from_numpy(y)
measures.compute("cka_linear", X[:64].clone(), Y[:64].clone())
out = {}
for spec in sys.argv[3].split(","):
    name, *kw = spec.split(":"); kw = dict(k.split("=") for k in kw)
    kw = {k: (v == "True" if v in ("True", "False") else v) for k, v in kw.items()}
    _memo.clear(); cca._SVD_CACHE.clear()
    t0 = time.process_time(); v = measures.compute(name, X, Y, **kw); out[spec] = (time.process_time() - t0, v)
print(json.dumps(out))
'''


def main(argv: list[str]) -> None:
    size = argv[1]; n, d = size.split("x"); rounds = int(argv[2]); old = argv[3]
    specs = argv[4].split(",") if len(argv) > 4 else SPECS  # optional subset, same spelling as SPECS
    new = str(Path(__file__).resolve().parents[1])
    best = {}
    for r in range(rounds):
        for version, path in (("before", old), ("after", new)):
            env = dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
            env.pop("OPENBLAS_CORETYPE", None); env.pop("OPENBLAS_L2_SIZE", None)
            res = json.loads(subprocess.run([sys.executable, "-c", CHILD, n, d, ",".join(specs)], env=env, cwd="/tmp",
                                            capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
            for spec, (t, v) in res.items():
                b = best.setdefault((spec, version), [1e9, v]); b[0] = min(b[0], t)
    print("| measure | before (s) | after (s) | before/after | value before | value after |")
    print("|---|---|---|---|---|---|")
    for spec in specs:
        (tb, vb), (ta, va) = best[(spec, "before")], best[(spec, "after")]
        print(f"| {spec.replace(':', ' ')} | {tb:.4f} | {ta:.4f} | {tb/ta:.2f} | {vb:.15g} | {va:.15g} |")


if __name__ == "__main__":
    main(sys.argv)

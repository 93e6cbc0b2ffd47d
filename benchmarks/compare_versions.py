"""Values of the O(N²) family before and after a change, over random, rank-deficient with duplicate rows,
near-identical, identical and integer-lattice pairs at 60x8, 300x40 and 700x20 (570 combinations).

Usage (the old code as a ``git archive`` of its ``measures`` package, put first on ``PYTHONPATH``)::

    mkdir -p /tmp/old && git archive <commit> measures | tar -x -C /tmp/old
    (cd /tmp && PYTHONPATH=/tmp/old python <repo>/benchmarks/compare_versions.py dump /tmp/old.pkl)
    python -m benchmarks.compare_versions compare /tmp/old.pkl

``compare`` prints the largest relative difference per measure and parameters, and every combination
beyond 1e-9 relative (or whose error message changed).
"""

import pickle
import sys

import numpy as np
import torch
torch.set_num_threads(1)
import measures
from measures import _memo, cca

CASES = [("knn_jaccard", {}), ("knn_jaccard", {"metric": "euclidean", "k": 5}), ("rank_similarity", {}),
         ("rank_similarity", {"metric": "euclidean"}), ("joint_rank_jaccard", {}), ("mutual_knn", {}),
         ("mutual_knn", {"metric": "euclidean"}), ("cknna", {}), ("cknna", {"metric": "euclidean"}),
         ("second_order_cosine", {}), ("second_order_cosine", {"entries": "distance"}),
         ("second_order_cosine", {"entries": "distance", "metric": "euclidean"}),
         ("uniformity_difference", {}), ("uniformity_difference", {"include_diagonal": True}),
         ("uniformity_difference", {"normalize": True}), ("uniformity_difference", {"t": 0.01}),
         ("distance_correlation", {}), ("distance_correlation", {"estimator": "unbiased"}),
         ("cka_rbf", {}), ("rsm_norm_difference", {}), ("eigenspace_overlap", {}), ("eigenspace_overlap", {"center": False})]
for inner in ("correlation", "euclidean", "sqeuclidean", "cosine"):
    for outer in ("spearman", "pearson", "kendall_tau_b", "cosine"):
        CASES.append(("rsa", {"inner": inner, "outer": outer}))
def inputs():  # -> (tag, x, y)
    for n, d in ((60, 8), (300, 40), (700, 20), (1500, 30)):
        rng = np.random.default_rng(n)
        x = rng.standard_normal((n, d)); y = 0.3 * x @ rng.standard_normal((d, d)) + rng.standard_normal((n, d))
        yield f"random{n}", x, y
        r = x.copy(); r[:, -1] = 0; r[:, -2] = 2 * r[:, 0]; r = r @ np.diag(rng.random(d)); r[5] = r[3]; r[7] = r[3]
        yield f"rankdef_dup{n}", r, y
        yield f"near{n}", x, x + 1e-7 * rng.standard_normal((n, d))
        yield f"identical{n}", x, x.copy()
        yield f"lattice{n}", rng.integers(0, 3, (n, d)).astype(float), rng.integers(0, 3, (n, d)).astype(float)


def main(argv: list[str]) -> None:
    out = {}
    for tag, x, y in inputs():
        for name, kw in CASES:
            _memo.clear(); cca._SVD_CACHE.clear()
            try:
                v = measures.compute(name, torch.from_numpy(x), torch.from_numpy(y), **kw)
            except Exception as e:
                v = f"{type(e).__name__}: {str(e)[:80]}"
            out[(tag, name, tuple(sorted(kw.items())))] = v
    if argv[1] == "dump":
        pickle.dump(out, open(argv[2], "wb"))
    else:
        old = pickle.load(open(argv[2], "rb"))
        worst = {}
        bad = 0
        for key, v in out.items():
            o = old[key]
            if isinstance(o, str) or isinstance(v, str):
                if o != v: bad += 1; print("DIFF", key, o, v)
                continue
            rel = abs(v - o) / max(abs(o), 1e-300) if o != v else 0.0
            name = key[1] + str(dict(key[2]))
            worst[name] = max(worst.get(name, 0), rel)
            if rel > 1e-9: bad += 1; print("REL", key, o, v, rel)
        for k, w in sorted(worst.items()): print(f"{k}: {w:.1e}")
        print(len(out), "combinations,", bad, "beyond 1e-9")


if __name__ == "__main__":
    main(sys.argv)

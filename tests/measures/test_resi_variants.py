"""Properties of the parameter variants that give ReSi's remaining definitions (issue 15, sixth round).

``test_properties`` checks every measure's declared metadata at its defaults; these variants change the
invariances (and the range), so their claims are checked here the same way: the documented invariances
hold on both sides, the others move the value, and the declared metrics satisfy the triangle inequality.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import measures
from tests.measures.conftest import representations
from tests.measures.test_properties import close, transform

# (measure, params, invariances, metric, range)
VARIANTS = [
    ("procrustes_angular", {"center": False}, {"permutation", "orthogonal", "isotropic_scaling"}, True,
     (0.0, math.pi / 2)),
    ("procrustes_permutation", {"form": "angular"}, {"permutation", "isotropic_scaling"}, True, (0.0, math.pi)),
    ("aligned_cosine", {"alignment": "permutation"}, {"permutation", "isotropic_scaling"}, False, (-1.0, 1.0)),
    ("procrustes_orthogonal", {"center": False, "normalize": False}, {"permutation", "orthogonal"}, True,
     (0.0, math.inf)),
    ("rsm_norm_difference", {"norm": "spectral"}, {"permutation", "orthogonal", "translation"}, True,
     (0.0, math.inf)),
    ("rsm_norm_difference", {"norm": "spectral", "inner": "linear"}, {"permutation", "orthogonal"}, True,
     (0.0, math.inf)),
]
IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in params.items())}" for name, params, *_ in VARIANTS]


@pytest.mark.parametrize(("name", "params", "invariances", "metric", "bounds"), VARIANTS, ids=IDS)
@pytest.mark.parametrize("shape", [(60, 8, 8), (50, 5, 12), (24, 30, 26)], ids=lambda s: "x".join(map(str, s)))
def test_variant_invariances_and_range(name, params, invariances, metric, bounds, shape):
    rng = np.random.default_rng(11)
    n, d1, d2 = shape
    x, y = representations(rng, n, d1, d2)
    x = x + 0.5  # uncentred inputs: the non-centred variants see the offset
    base = measures.compute(name, x, y, **params)
    assert bounds[0] - 1e-9 <= base <= bounds[1] + 1e-9
    assert close(measures.compute(name, x, x, **params), 1.0 if name == "aligned_cosine" else 0.0)
    for kind in measures.INVARIANCES:
        moved_x = measures.compute(name, transform(kind, x, rng), y, **params)
        moved_y = measures.compute(name, x, transform(kind, y, rng), **params)
        if kind in invariances:
            assert close(base, moved_x) and close(base, moved_y), f"{kind}: {base} -> {moved_x}, {moved_y}"
        else:
            assert not (close(base, moved_x, 1e-4) and close(base, moved_y, 1e-4)), f"{kind} never moved it"
    assert close(base, measures.compute(name, y, x, **params), 1e-9)  # symmetric


@pytest.mark.parametrize(("name", "params", "invariances", "metric", "bounds"),
                         [v for v in VARIANTS if v[3]], ids=[i for i, v in zip(IDS, VARIANTS) if v[3]])
def test_variant_triangle_inequality(name, params, invariances, metric, bounds):
    rng = np.random.default_rng(12)
    for _ in range(15):
        a, b, c = (rng.standard_normal((31, 6)) * rng.uniform(0.5, 2.0, 6) + rng.standard_normal(6)
                   for _ in range(3))
        ab, bc, ac = (measures.compute(name, p, q, **params) for p, q in ((a, b), (b, c), (a, c)))
        assert ac <= ab + bc + 1e-9


def test_disagreement_numpy_route():
    """disagreement (ReSi's Disagreement) on the numpy route against a plain comparison of argmaxes, float32
    too; a NaN or +Inf anywhere still raises, −Inf below a row's maximum is a masked class, and huge finite
    entries (the sum of the row maxima overflows) do not raise."""
    rng = np.random.default_rng(14)
    a, b = rng.standard_normal((3000, 200)), rng.standard_normal((3000, 200))
    b[::3] = a[::3]
    expected = float(np.mean(a.argmax(axis=1) != b.argmax(axis=1)))
    assert measures.compute("disagreement", a, b) == expected
    assert measures.compute("disagreement", a.astype(np.float32), b.astype(np.float32)) == expected
    for bad in (np.nan, np.inf):
        c = b.copy()
        c[2900, 7] = bad
        with pytest.raises(ValueError, match="disagreement.*input 2 contains 1 NaN or Inf"):
            measures.compute("disagreement", a, c)
    c = b.copy()
    low = int(b[2900].argmin())
    c[2900, low] = -np.inf  # a masked class: the row's prediction is unchanged
    assert measures.compute("disagreement", a, c) == expected
    huge = a * 1e307  # finite entries whose block sums overflow: the exact test lets them through
    assert measures.compute("disagreement", huge, b) == expected

"""RSM family: measures that compare instance-by-instance similarity structure (CKA, RSA, ...)."""

from __future__ import annotations

import torch

from measures._registry import UndefinedMeasureError, register
from measures._validation import center_columns


@register(
    "cka_linear",
    family="rsm",
    kind="similarity",
    range=(0.0, 1.0),
    symmetric=True,
    invariances=("permutation", "orthogonal", "isotropic_scaling", "translation"),
    reference="Kornblith, Norouzi, Lee, Hinton. Similarity of Neural Network Representations Revisited. ICML 2019",
    cost="O(N·D²) feature route if N > D, else O(N²·D) Gram route",
)
def cka_linear(X: torch.Tensor, Y: torch.Tensor) -> float:
    """Linear centred kernel alignment (biased HSIC estimator).

    Formula: CKA = ‖ỸᵀX̃‖_F² / (‖X̃ᵀX̃‖_F · ‖ỸᵀỸ‖_F) with X̃, Ỹ column-centred; equivalently
    tr(K̃L̃) / (‖K̃‖_F ‖L̃‖_F) for the linear Grams K = XXᵀ, L = YYᵀ. Range [0, 1]; higher is more
    similar; symmetric. Invariant to orthogonal maps, isotropic scaling, permutation and translation,
    not to invertible linear maps. A constant representation has no variance and CKA is 0/0:
    ``UndefinedMeasureError`` is raised with that reason.
    The feature route is used when N > max(D1, D2), the Gram route otherwise (same number).
    """
    x, y = center_columns(X), center_columns(Y)
    if x.shape[0] > max(x.shape[1], y.shape[1]):
        cross = (y.T @ x).square().sum()
        norm_x = torch.linalg.matrix_norm(x.T @ x)
        norm_y = torch.linalg.matrix_norm(y.T @ y)
    else:
        k, l = x @ x.T, y @ y.T  # Grams of centred data are already double-centred
        cross = (k * l).sum()
        norm_x, norm_y = torch.linalg.matrix_norm(k), torch.linalg.matrix_norm(l)
    denom = norm_x * norm_y
    if denom == 0:
        raise UndefinedMeasureError("cka_linear: a representation is constant (zero variance), CKA is 0/0")
    return (cross / denom).clamp(0.0, 1.0)

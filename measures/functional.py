"""Functional measures on model outputs (predictions and class probabilities on the same inputs)."""

from __future__ import annotations

import torch

from measures._registry import register


@register(
    "disagreement",
    family="functional_outputs",
    kind="distance",
    range=(0.0, 1.0),
    symmetric=True,
    metric=True,
    inputs="outputs",
    min_rows=1,
    reference="Madani et al. 2004; Fort, Hu, Lakshminarayanan 2019 (churn); Klabunde et al. survey §5.2",
    cost="O(N·C)",
)
def disagreement(O_a: torch.Tensor, O_b: torch.Tensor) -> float:
    """Prediction disagreement (churn): the fraction of inputs whose predicted classes differ.

    Formula: Dis = (1/N) Σ_i 1[argmax_c O_ic ≠ argmax_c O'_ic]; ties in a row go to the first maximal
    class (torch/numpy argmax). Range [0, 1]; 0 means identical predictions; symmetric; a metric
    (normalised Hamming distance of the prediction vectors). Works on logits or probabilities.
    """
    return (O_a.argmax(dim=1) != O_b.argmax(dim=1)).double().mean()

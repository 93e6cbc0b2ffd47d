"""Weight-space baselines: parameter distances raw, after canonical scaling and after permutation matching."""

from __future__ import annotations

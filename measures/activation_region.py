"""Activation-region metric: binary ReLU signatures, exact and MinHash Jaccard, Hungarian matching."""

from __future__ import annotations

"""Descriptive statistics: differences of one-representation statistics (magnitude, concentricity, uniformity, intrinsic dimension)."""

from __future__ import annotations

"""Alignment family: measures that optimally align one representation to the other (Procrustes, matching, regression)."""

from __future__ import annotations

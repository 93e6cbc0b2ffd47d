"""Topology family: measures that compare the shape of the data manifolds (geometry score, IMD, RTD)."""

from __future__ import annotations

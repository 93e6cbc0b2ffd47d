"""Neighbourhood family: measures that compare the k-nearest-neighbour structure of the instances."""

from __future__ import annotations

"""CCA family: canonical correlation analysis and its variants (mean rho, R², SVCCA, PWCCA)."""

from __future__ import annotations

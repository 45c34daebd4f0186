"""The one error every engine reports, whatever its noise model: an amplitude R-factor.

``error = sum_j sum_k (sqrt(I_jk) - sqrt(M_jk))^2 / sum_j sum_k M_jk`` over the positions ``j`` of a
pass and the detector pixels ``k``, with ``I`` the modelled and ``M`` the measured intensity
(negative counts, e.g. after a background subtraction, taken as 0). It is dimensionless, does not
depend on the noise model or its epsilon, and so stays one comparable curve across a plan whose
engines use different noise models. With Poisson counts its floor is about ``(pixels / 4) / counts``
per pattern, since ``var(sqrt(M)) -> 1/4`` for large counts.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np


def amplitude_residuals(xp: ModuleType, model_I: Any, measured_I: Any) -> Any:
    """``sum_k (sqrt(I_k) - sqrt(M_k))^2`` per pattern ``(B,)``; the numerator of the common error."""
    difference = xp.sqrt(xp.maximum(model_I, 0.0)) - xp.sqrt(xp.maximum(measured_I, 0.0))
    return xp.sum(difference * difference, axis=(-2, -1))


def total_counts(patterns: Any) -> float:
    """The denominator of the common error: the measured counts of all patterns (at least 1e-30)."""
    return max(float(np.sum(np.maximum(np.asarray(patterns, dtype=np.float64), 0.0))), 1e-30)

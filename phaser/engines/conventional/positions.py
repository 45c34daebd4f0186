"""Position refinement of the conventional engines: a shift estimate per position, then a step.

The estimate is the probe shift that best explains, in the least-squares sense, the correction
``chi_j`` of the wave leaving the first slice: with ``P_j = P(r - s_j)`` and its Fourier derivative
``dP_j/ds = ifft2(fft2(P) ramp_j (-2 pi i f))``, the columns ``J_j = (dP_j/ds_y O_j, dP_j/ds_x O_j)``
give ``ds_j = (Re J^H J)^-1 Re J^H chi_j`` [px] (the 2x2 normal equations, summed over modes and
pixels). It is scale-free: it does not change with the dose or the probe intensity.

:func:`position_step` (the ``steepest_descent`` position solver) turns the estimates of an
iteration into moves: ``u = step_size * ds + momentum * u_previous``, each move clipped to
``max_step`` px, then the mean move removed (the data do not fix a common shift).
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import TYPE_CHECKING, Any

from phaser.engines.conventional.arrays import TINY, abs2
from phaser.engines.conventional.forward import GroupForward
from phaser.schedules import schedule_at

if TYPE_CHECKING:  # a runtime import would close an import cycle through phaser.plan
    from phaser.engines.conventional_props import PositionSolverProps

# the momentum of `kind: momentum` when the plan leaves `momentum` at 0 (as the original package)
DEFAULT_MOMENTUM = 0.9


def shift_estimate(xp: ModuleType, forward: GroupForward, chi_first: Any, weights: Any) -> Any:
    """Least-squares probe shift ``(B, 2)`` [px] explaining ``chi_first``; zero for padding."""
    shape = forward.probe_k.shape[-2:]
    real = forward.subpixel.dtype
    fy = xp.fft.fftfreq(shape[0]).astype(real)[:, None]
    fx = xp.fft.fftfreq(shape[1]).astype(real)[None, :]
    spectra = forward.probe_k[None] * forward.ramps[:, None]  # (B, M, N, N)
    patch = forward.patches[:, 0, None]
    d_y = xp.fft.ifft2(spectra * (-2j * math.pi * fy)) * patch
    d_x = xp.fft.ifft2(spectra * (-2j * math.pi * fx)) * patch

    def inner(a: Any, b: Any) -> Any:
        return xp.sum(xp.real(xp.conj(a) * b), axis=(1, 2, 3))

    yy, xx, yx = inner(d_y, d_y) + TINY, inner(d_x, d_x) + TINY, inner(d_y, d_x)
    ry, rx = inner(d_y, chi_first), inner(d_x, chi_first)
    det = xp.maximum(yy * xx - yx**2, TINY)
    step = xp.stack([(ry * xx - rx * yx) / det, (rx * yy - ry * yx) / det], axis=-1)
    return step * weights[:, None]


def position_step(
    xp: ModuleType, shift_px: Any, previous_px: Any, i: int, niter: int, props: PositionSolverProps
) -> Any:
    """Moves ``(P, 2)`` [px] of iteration ``i`` from the shift estimates ``shift_px``.

    ``previous_px`` is the previous iteration's move (the momentum term). Returns the new move,
    which is also the next call's ``previous_px``.
    """
    momentum = props.momentum or (DEFAULT_MOMENTUM if props.kind == "momentum" else 0.0)
    update = schedule_at(props.step_size, i, niter) * shift_px + momentum * previous_px
    length = xp.sqrt(xp.sum(update**2, axis=-1, keepdims=True))
    update = update * (xp.minimum(length, props.max_step) / xp.maximum(length, TINY))
    return update - xp.mean(update, axis=0, keepdims=True)


def rms_move(xp: ModuleType, update_px: Any) -> float:
    """Root-mean-square length of the moves [px] (for logging)."""
    return float(xp.sqrt(xp.mean(xp.sum(abs2(xp, update_px), axis=-1))))

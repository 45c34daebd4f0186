"""Cost regularizers: terms added to the gradient engine's loss, each with a schedulable weight.

Each is a pure function ``cost(xp, variables, params) -> scalar`` over the variables dict
(``object`` (S, Ny, Nx) complex, ``probe`` (M, N, N) complex, real space, centred at ``N//2``,
...). ``params`` holds the traced numbers (``weight``, ``eps``), so a new weight never recompiles.
The engine scales each term by the group's share of the positions, so one iteration adds the full
cost once. Every term has a finite gradient everywhere: ``eps`` goes inside each square root.

The names, and ``cost`` as another name of ``weight``, follow the original phaser package, so its
plans run here; ``*_tikh`` are its short names of the ``*_tikhonov`` terms. ``obj_l1``/``obj_l2``
measure the distance to vacuum (``O - 1``), as there.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from pydantic import AliasChoices, Field

from phaser.hooks import HookProps
from phaser.schedules import NonNegativeSchedule

# below this |z|^2 the phase of z is taken as 0 (its gradient would be infinite)
_TINY = 1e-20


class WeightProps(HookProps):
    """A regularizer with only a weight (``cost`` in the original's plans)."""

    weight: NonNegativeSchedule = Field(
        validation_alias=AliasChoices("weight", "cost"), description="weight of the term (per object pixel sum)"
    )


class SmoothWeightProps(WeightProps):
    """A regularizer with an ``eps`` that smooths a square root (|x| is ``sqrt(x^2 + eps)``)."""

    eps: float = Field(1e-6, gt=0, description="smoothing inside the square root, in the squared units of the term")


def _abs2(xp: ModuleType, z: Any) -> Any:
    return xp.real(z) ** 2 + xp.imag(z) ** 2


def _smooth_abs(xp: ModuleType, z: Any, eps: Any) -> Any:
    return xp.sqrt(_abs2(xp, z) + eps)


def _lateral_differences(xp: ModuleType, array: Any) -> tuple[Any, Any]:
    return array[..., 1:, :] - array[..., :-1, :], array[..., :, 1:] - array[..., :, :-1]


def _isotropic_tv(xp: ModuleType, dy2: Any, dx2: Any, eps: Any) -> Any:
    """``sum sqrt(dy^2 + dx^2 + eps)`` over the pixels that have both forward differences."""
    return xp.sum(xp.sqrt(dy2[..., :, :-1] + dx2[..., :-1, :] + eps))


def _safe_angle(xp: ModuleType, z: Any) -> Any:
    """``arg z``, with 0 (and a zero gradient) where ``z`` is 0."""
    small = _abs2(xp, z) <= _TINY
    return xp.where(small, 0.0, xp.angle(xp.where(small, 1.0, z)))


def _phase_differences(xp: ModuleType, array: Any) -> tuple[Any, Any]:
    """Wrapped phase differences [rad] to the next pixel along y and x: ``arg(z_{j+1} conj(z_j))``.

    Free of the 2 pi branch cut of ``arg``, so a phase that wraps costs nothing extra.
    """
    return (
        _safe_angle(xp, array[..., 1:, :] * xp.conj(array[..., :-1, :])),
        _safe_angle(xp, array[..., :, 1:] * xp.conj(array[..., :, :-1])),
    )


def _probe_spectrum(xp: ModuleType, probe: Any) -> Any:
    """The Fourier probe ``(M, N, N)``, zero frequency at ``N//2`` (ortho norm: ``sum |P|^2 = sum |probe|^2``)."""
    centred_at_zero = xp.fft.ifftshift(probe, axes=(-2, -1))
    return xp.fft.fftshift(xp.fft.fft2(centred_at_zero, norm="ortho"), axes=(-2, -1))


def _weighted_phase_misfit(xp: ModuleType, spectrum: Any, eps: Any) -> tuple[Any, Any]:
    """``2 (|a||b| - Re(b conj a)) = 2 |a||b| (1 - cos dphi) ~ |a||b| dphi^2`` for neighbours a, b along y and x.

    The phase difference weighted by the amplitudes: where the probe is dark (outside the aperture)
    its phase is noise and costs nothing; bounded gradient, no branch cut.
    """
    amp = xp.sqrt(_abs2(xp, spectrum) + eps)

    def misfit(a: Any, b: Any, amp_a: Any, amp_b: Any) -> Any:
        return 2.0 * (amp_a * amp_b - xp.real(b * xp.conj(a)))

    along_y = misfit(spectrum[..., :-1, :], spectrum[..., 1:, :], amp[..., :-1, :], amp[..., 1:, :])
    along_x = misfit(spectrum[..., :, :-1], spectrum[..., :, 1:], amp[..., :, :-1], amp[..., :, 1:])
    return along_y, along_x


# --- object --------------------------------------------------------------------------------------


def obj_l1(xp: ModuleType, variables: dict[str, Any], params: Any) -> Any:
    """``weight * sum sqrt(|O - 1|^2 + eps)``: sparse deviations from vacuum."""
    return params["weight"] * xp.sum(_smooth_abs(xp, variables["object"] - 1.0, params["eps"]))


def obj_l2(xp: ModuleType, variables: dict[str, Any], params: Any) -> Any:
    """``weight * sum |O - 1|^2``: small deviations from vacuum."""
    return params["weight"] * xp.sum(_abs2(xp, variables["object"] - 1.0))


def obj_phase_l1(xp: ModuleType, variables: dict[str, Any], params: Any) -> Any:
    """``weight * sum |arg O|``: pulls the phase [rad] towards zero (vacuum)."""
    return params["weight"] * xp.sum(xp.abs(_safe_angle(xp, variables["object"])))


def obj_recip_l1(xp: ModuleType, variables: dict[str, Any], params: Any) -> Any:
    """``weight * sum sqrt(|FFT(O - mean O)|^2 + eps)`` per slice (ortho FFT): a sparse spectrum."""
    obj = variables["object"]
    spectrum = xp.fft.fft2(obj - xp.mean(obj, axis=(-2, -1), keepdims=True), norm="ortho")
    return params["weight"] * xp.sum(_smooth_abs(xp, spectrum, params["eps"]))


def obj_tikhonov(xp: ModuleType, variables: dict[str, Any], params: Any) -> Any:
    """``weight * sum |grad O|^2`` over the lateral axes."""
    dy, dx = _lateral_differences(xp, variables["object"])
    return params["weight"] * (xp.sum(_abs2(xp, dy)) + xp.sum(_abs2(xp, dx)))


def obj_tv(xp: ModuleType, variables: dict[str, Any], params: Any) -> Any:
    """``weight * sum sqrt(|dO/dy|^2 + |dO/dx|^2 + eps)`` (isotropic total variation)."""
    dy, dx = _lateral_differences(xp, variables["object"])
    return params["weight"] * _isotropic_tv(xp, _abs2(xp, dy), _abs2(xp, dx), params["eps"])


def obj_phase_tikhonov(xp: ModuleType, variables: dict[str, Any], params: Any) -> Any:
    """``weight * sum |grad arg O|^2`` [rad^2], with wrapped phase differences; the amplitude is free."""
    dy, dx = _phase_differences(xp, variables["object"])
    return params["weight"] * (xp.sum(dy**2) + xp.sum(dx**2))


def obj_phase_tv(xp: ModuleType, variables: dict[str, Any], params: Any) -> Any:
    """``weight * sum sqrt(|d arg O/dy|^2 + |d arg O/dx|^2 + eps)`` [rad], wrapped differences."""
    dy, dx = _phase_differences(xp, variables["object"])
    return params["weight"] * _isotropic_tv(xp, dy**2, dx**2, params["eps"])


# --- layers (depth) ------------------------------------------------------------------------------


def layers_tikhonov(xp: ModuleType, variables: dict[str, Any], params: Any) -> Any:
    """``weight * sum |O_{s+1} - O_s|^2``: smoothness along depth (0 for one slice)."""
    obj = variables["object"]
    return params["weight"] * xp.sum(_abs2(xp, obj[1:] - obj[:-1]))


def layers_tv(xp: ModuleType, variables: dict[str, Any], params: Any) -> Any:
    """``weight * sum sqrt(|O_{s+1} - O_s|^2 + eps)``: total variation along depth (0 for one slice)."""
    obj = variables["object"]
    return params["weight"] * xp.sum(_smooth_abs(xp, obj[1:] - obj[:-1], params["eps"]))


# --- probe (reciprocal space: P = FFT(probe), zero frequency centred) ----------------------------


def probe_phase_tikhonov(xp: ModuleType, variables: dict[str, Any], params: Any) -> Any:
    """``weight * sum 2 (|P_a||P_b| - Re(P_b conj P_a))``, about ``sum |P_a||P_b| dphi^2``, over neighbours.

    Smooths the phase (the aberration function) of the Fourier probe where it is bright; ``eps``
    [e/px] smooths ``|P|``.
    """
    along_y, along_x = _weighted_phase_misfit(xp, _probe_spectrum(xp, variables["probe"]), params["eps"])
    return params["weight"] * (xp.sum(along_y) + xp.sum(along_x))


def probe_phase_tv(xp: ModuleType, variables: dict[str, Any], params: Any) -> Any:
    """``weight * sum sqrt(m_y + m_x + eps)`` with ``m ~ |P_a||P_b| dphi^2``: the total-variation form."""
    along_y, along_x = _weighted_phase_misfit(xp, _probe_spectrum(xp, variables["probe"]), params["eps"])
    return params["weight"] * _isotropic_tv(xp, along_y, along_x, params["eps"])


def probe_recip_tikhonov(xp: ModuleType, variables: dict[str, Any], params: Any) -> Any:
    """``weight * sum |grad |P||^2``: smoothness of the Fourier-probe amplitude (``eps`` smooths ``|P|``)."""
    amp = _smooth_abs(xp, _probe_spectrum(xp, variables["probe"]), params["eps"])
    dy, dx = _lateral_differences(xp, amp)
    return params["weight"] * (xp.sum(dy**2) + xp.sum(dx**2))


def probe_recip_tv(xp: ModuleType, variables: dict[str, Any], params: Any) -> Any:
    """``weight * sum sqrt(|d|P|/dky|^2 + |d|P|/dkx|^2 + eps)``: total variation of the Fourier-probe amplitude."""
    amp = _smooth_abs(xp, _probe_spectrum(xp, variables["probe"]), params["eps"])
    dy, dx = _lateral_differences(xp, amp)
    return params["weight"] * _isotropic_tv(xp, dy**2, dx**2, params["eps"])


COST_REGULARIZERS: dict[str, tuple[Any, type[HookProps]]] = {
    "obj_l1": (obj_l1, SmoothWeightProps),
    "obj_l2": (obj_l2, WeightProps),
    "obj_phase_l1": (obj_phase_l1, WeightProps),
    "obj_recip_l1": (obj_recip_l1, SmoothWeightProps),
    "obj_tikhonov": (obj_tikhonov, WeightProps),
    "obj_tikh": (obj_tikhonov, WeightProps),
    "obj_tv": (obj_tv, SmoothWeightProps),
    "obj_phase_tikhonov": (obj_phase_tikhonov, WeightProps),
    "obj_phase_tv": (obj_phase_tv, SmoothWeightProps),
    "layers_tikhonov": (layers_tikhonov, WeightProps),
    "layers_tikh": (layers_tikhonov, WeightProps),
    "layers_tv": (layers_tv, SmoothWeightProps),
    "probe_phase_tikhonov": (probe_phase_tikhonov, SmoothWeightProps),
    "probe_phase_tikh": (probe_phase_tikhonov, SmoothWeightProps),
    "probe_phase_tv": (probe_phase_tv, SmoothWeightProps),
    "probe_recip_tikhonov": (probe_recip_tikhonov, SmoothWeightProps),
    "probe_recip_tikh": (probe_recip_tikhonov, SmoothWeightProps),
    "probe_recip_tv": (probe_recip_tv, SmoothWeightProps),
}

"""What XLA makes of the gradient engine's forward model: phase-ramp exponentials once per row.

The sub-pixel shift ramp ``(B, N, N)`` and the tilt ramps ``(B, S-1, N, N)`` are outer products of
1D factors. Left to itself XLA fuses the factors' exponentials into the loops that consume the
product, evaluating a sine and a cosine per pixel and per use (a quarter of a 1-slice iteration on
the CPU). The compiled loss and gradient must have no fused loop over waves (rank 4) that computes
a sine or cosine. Timing is measured in ``benchmarks/breakdown_gradient.py``, not here.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np

from phaser.engines.forward_jax import model_intensity, tilted_propagators

_COMPUTATION = re.compile(r"^%(\S+) \(.*\) -> (.+) \{$")
_SHAPE = re.compile(r"[a-z]\w*\[([\d,]*)\]")


def _fused_wave_loops_with_trig(hlo: str) -> list[str]:
    """Names of fused computations whose output has rank >= 4 and that evaluate sine or cosine."""
    found, name, rank, trig = [], None, 0, False
    for line in hlo.splitlines():
        header = _COMPUTATION.match(line)
        if header:
            name, trig = header.group(1), False
            rank = max((len(dims.split(",")) for dims in _SHAPE.findall(header.group(2)) if dims), default=0)
        elif line.startswith("}"):
            if name and (name.startswith("fused") or name.startswith("wrapped")) and rank >= 4 and trig:
                found.append(name)
            name = None
        elif name and any(op in line for op in (" sine(", " cosine(", " exponential(")):
            trig = True
    return found


def _compiled_loss_and_gradient(tilt: bool) -> str:
    """The engine's pattern: per group, loss and gradient inside ``lax.scan`` (64 positions of 64x64)."""
    rng = np.random.default_rng(0)
    n, n_slices, n_groups, batch = 64, 3, 2, 64
    obj = jnp.asarray(np.exp(0.1j * rng.standard_normal((n_slices, 96, 96))), jnp.complex64)
    probe = jnp.asarray(rng.standard_normal((1, n, n)) + 1j * rng.standard_normal((1, n, n)), jnp.complex64)
    positions = jnp.asarray(rng.uniform(32.0, 60.0, (n_groups, batch, 2)), jnp.float32)
    base = jnp.asarray(np.exp(1j * rng.random((n_slices - 1, n, n))), jnp.complex64)
    freqs = jnp.asarray(np.fft.fftfreq(n), jnp.float32)
    tilt_mrad = jnp.asarray(rng.normal(0.0, 2.0, (n_groups, batch, 2)), jnp.float32)

    def loss(variables, positions, tilt_mrad):
        obj, probe = variables
        props = tilted_propagators(base, jnp.full((n_slices,), 5.0), freqs, freqs, tilt_mrad) if tilt else base
        return jnp.sum(model_intensity(probe, obj, positions, props))

    def iteration(variables, positions, tilt_mrad):
        def step(variables, group):
            grads = jax.grad(loss)(variables, *group)
            return jax.tree_util.tree_map(lambda v, g: v - 1e-3 * jnp.conj(g), variables, grads), None

        return jax.lax.scan(step, variables, (positions, tilt_mrad))[0]

    return jax.jit(iteration).lower((obj, probe), positions, tilt_mrad).compile().as_text()


def test_the_parser_finds_fused_trigonometry_over_waves() -> None:
    """The check itself: a per-pixel cosine of a broadcast 1D factor is found."""

    def per_pixel(x, phases):
        return x * jnp.cos(phases)[:, None, None, :]

    x = jnp.ones((4, 2, 8, 8), jnp.float32)
    hlo = jax.jit(per_pixel).lower(x, jnp.ones((4, 8), jnp.float32)).compile().as_text()
    assert _fused_wave_loops_with_trig(hlo)


def test_shift_ramp_exponentials_are_not_fused_into_wave_loops() -> None:
    assert _fused_wave_loops_with_trig(_compiled_loss_and_gradient(tilt=False)) == []


def test_tilt_ramp_exponentials_are_not_fused_into_wave_loops() -> None:
    assert _fused_wave_loops_with_trig(_compiled_loss_and_gradient(tilt=True)) == []

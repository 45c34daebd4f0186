"""Where a gradient iteration's time goes: its pieces timed one by one on the benchmark's shapes.

Rebuilds one iteration of the gradient engine from the package's public parts (the jax forward model
:func:`phaser.engines.forward_jax.model_intensity`, the Poisson loss of :mod:`phaser.noise`, optax
Adam with Nesterov) on 1024 positions of 64x64 in groups of 64, each variant one jit with the groups
inside ``lax.scan`` like the engine, and times (best and median of ``--repeats``):

- ``ffts``: the FFT floor, the engine's ``4 S`` complex64 FFTs per position as one batch-64 loop;
- ``forward``: model + loss;
- ``forward+backward``: ``value_and_grad`` over object, probe and positions (as the engine does);
- ``... no sub-pixel shift``: the same, probe not Fourier-shifted (2 FFTs fewer per position);
- ``full iteration``: forward + backward + Adam on object and probe (what the engine runs);
- ``adam updates``: the 16 optimizer steps alone;
- ``patch cut + gradient``: ``vmap(dynamic_slice)`` of each slice's patches and its transpose;
- with ``--cpu-devices 2``: forward+backward with each group split over 2 CPU devices
  (``shard_map``, gradients summed with ``psum``), the engine's unused second core.

Run ``python benchmarks/breakdown_gradient.py --help``. The data are random (timings do not depend
on the values); compare the full iteration with ``speed_gradient.py``'s s/iter.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from phaser.engines.forward_jax import cut_all_slices, cut_slice_patches, model_intensity, split_positions
from phaser.initial import object_shape_for, place_positions
from phaser.noise import poisson_loss
from phaser.physics.constants import electron_wavelength_A
from phaser.physics.grids import real_space_sampling_A
from phaser.physics.scan import raster_positions_A

PATTERN_PX = 64
SCAN_SHAPE = (32, 32)
GROUP_SIZE = 64
OBJ_PAD_PX = 5.0


def make_inputs(n_slices: int, seed: int = 0) -> dict[str, Any]:
    """Random variables and data of the benchmark's shapes (200 kV, 1.5 mrad/px, 0.5 A step)."""
    rng = np.random.default_rng(seed)
    shape = (PATTERN_PX, PATTERN_PX)
    sampling = real_space_sampling_A(electron_wavelength_A(200.0), shape, 1.5)
    positions_A = place_positions(raster_positions_A(SCAN_SHAPE, 0.5), sampling, shape, OBJ_PAD_PX)
    positions_px = positions_A / np.asarray(sampling)
    obj_shape = (n_slices, *object_shape_for(positions_px, shape, OBJ_PAD_PX))
    n_positions = positions_px.shape[0]
    return {
        "object": jnp.asarray(np.exp(0.1j * rng.standard_normal(obj_shape)), jnp.complex64),
        "probe": jnp.asarray(_complex_normal(rng, (1, *shape)), jnp.complex64),
        "positions": jnp.asarray(positions_px, jnp.float32),
        "propagators": jnp.asarray(np.exp(2j * np.pi * rng.random((n_slices - 1, *shape))), jnp.complex64),
        "patterns": jnp.asarray(rng.poisson(25.0, (n_positions, *shape)), jnp.float32),
        "groups": jnp.asarray(rng.permutation(n_positions).reshape(-1, GROUP_SIZE), jnp.int32),
    }


def _complex_normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


def group_loss(variables: dict[str, Any], idx: Any, inputs: dict[str, Any], shift: bool) -> Any:
    """Summed Poisson loss of one group; ``shift=False`` skips the Fourier sub-pixel shift."""
    positions = variables["positions"][idx]
    if shift:
        model = model_intensity(variables["probe"], variables["object"], positions, inputs["propagators"])
    else:
        model = _unshifted_intensity(variables, positions, inputs["propagators"])
    return jnp.sum(poisson_loss(jnp, model, inputs["patterns"][idx], {"eps": jnp.float32(0.1)}))


def _unshifted_intensity(variables: dict[str, Any], positions: Any, propagators: Any) -> Any:
    """The multislice model with integer-pixel positions only (no shift FFT pair)."""
    obj, probe = variables["object"], variables["probe"]
    top_left, _ = split_positions(positions, probe.shape[-2:], obj.shape[-2:])
    wave = jnp.broadcast_to(probe[None], (positions.shape[0], *probe.shape))
    for s in range(obj.shape[0]):
        wave = wave * cut_slice_patches(obj[s], top_left, probe.shape[-2:])[:, None]
        if s < obj.shape[0] - 1:
            wave = jnp.fft.ifft2(jnp.fft.fft2(wave) * propagators[s])
    far = jnp.fft.fft2(wave, norm="ortho")
    return jnp.sum(jnp.real(far) ** 2 + jnp.imag(far) ** 2, axis=1)


def variables_of(inputs: dict[str, Any]) -> dict[str, Any]:
    """The differentiated variables, as in the engine."""
    return {name: inputs[name] for name in ("object", "probe", "positions")}


def forward_fn(inputs: dict[str, Any]) -> Callable[[], Any]:
    """Model + loss over every group."""

    @jax.jit
    def run(variables: dict[str, Any], groups: Any) -> Any:
        return jax.lax.scan(lambda c, idx: (c, group_loss(variables, idx, inputs, True)), 0, groups)[1]

    return lambda: run(variables_of(inputs), inputs["groups"])


def gradient_fn(inputs: dict[str, Any], shift: bool = True) -> Callable[[], Any]:
    """Loss and gradients (object, probe, positions) of every group, variables held fixed."""

    @jax.jit
    def run(variables: dict[str, Any], groups: Any) -> Any:
        def step(total: Any, idx: Any) -> tuple[Any, Any]:
            loss, grads = jax.value_and_grad(group_loss)(variables, idx, inputs, shift)
            # consume every gradient so that none is optimised away
            used = sum(jnp.sum(jnp.abs(g)) for g in jax.tree_util.tree_leaves(grads))
            return total + used, loss

        return jax.lax.scan(step, jnp.float32(0.0), groups)

    return lambda: run(variables_of(inputs), inputs["groups"])


def iteration_fn(inputs: dict[str, Any]) -> Callable[[], Any]:
    """One engine iteration: per group, gradients then Adam on object and probe."""
    optimizer = optax.adam(0.01, nesterov=True)
    solved = ("object", "probe")

    @jax.jit
    def run(variables: dict[str, Any], opt_state: Any, groups: Any) -> Any:
        def step(carry: Any, idx: Any) -> tuple[Any, Any]:
            variables, opt_state = carry
            loss, grads = jax.value_and_grad(group_loss)(variables, idx, inputs, True)
            params = {name: variables[name] for name in solved}
            descent = {name: jnp.conj(grads[name]) for name in solved}
            updates, opt_state = optimizer.update(descent, opt_state, params)
            return ({**variables, **optax.apply_updates(params, updates)}, opt_state), loss

        return jax.lax.scan(step, (variables, opt_state), groups)

    variables = variables_of(inputs)
    state = optimizer.init({name: variables[name] for name in solved})
    return lambda: run(variables, state, inputs["groups"])


def adam_fn(inputs: dict[str, Any]) -> Callable[[], Any]:
    """The iteration's Adam steps alone (one per group) on object and probe."""
    optimizer = optax.adam(0.01, nesterov=True)
    params = {"object": inputs["object"], "probe": inputs["probe"]}
    grads = jax.tree_util.tree_map(lambda x: 1e-3 * x, params)
    n_groups = inputs["groups"].shape[0]

    @jax.jit
    def run(params: Any, opt_state: Any) -> Any:
        def step(carry: Any, _: Any) -> tuple[Any, None]:
            params, opt_state = carry
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None

        return jax.lax.scan(step, (params, opt_state), None, length=n_groups)[0]

    state = optimizer.init(params)
    return lambda: run(params, state)


def patches_fn(inputs: dict[str, Any]) -> Callable[[], Any]:
    """Cutting every group's object patches and the transpose (the object gradient's scatter)."""
    shape = inputs["probe"].shape[-2:]

    @jax.jit
    def run(obj: Any, positions: Any, groups: Any) -> Any:
        def energy(o: Any, idx: Any) -> Any:
            top_left, _ = split_positions(positions[idx], shape, o.shape[-2:])
            return sum(jnp.sum(jnp.abs(p) ** 2) for p in cut_all_slices(o, top_left, shape))

        def step(total: Any, idx: Any) -> tuple[Any, None]:
            return total + jnp.sum(jnp.abs(jax.grad(energy)(obj, idx))), None

        return jax.lax.scan(step, jnp.float32(0.0), groups)[0]

    return lambda: run(inputs["object"], inputs["positions"], inputs["groups"])


def fft_fn(inputs: dict[str, Any]) -> Callable[[], Any]:
    """``4 S`` batch-64 FFTs per position: the engine's FFT count with nothing else."""
    n_slices = inputs["object"].shape[0]
    n_batches = 4 * n_slices * inputs["positions"].shape[0] // GROUP_SIZE
    wave = jnp.broadcast_to(inputs["probe"], (GROUP_SIZE, *inputs["probe"].shape[-2:]))

    @jax.jit
    def run(wave: Any) -> Any:
        return jax.lax.fori_loop(0, n_batches, lambda _, w: jnp.fft.fft2(w, norm="ortho"), wave)

    return lambda: run(wave)


def sharded_gradient_fn(inputs: dict[str, Any]) -> Callable[[], Any]:
    """Forward+backward with each group's positions split over every CPU device."""
    from jax.sharding import Mesh
    from jax.sharding import PartitionSpec as Spec

    mesh = Mesh(np.array(jax.devices()), ("devices",))

    def part(variables: dict[str, Any], idx: Any) -> tuple[Any, Any]:
        loss, grads = jax.value_and_grad(group_loss)(variables, idx, inputs, True)
        return jax.lax.psum((loss, grads), "devices")

    split = jax.shard_map(part, mesh=mesh, in_specs=(Spec(), Spec("devices")), out_specs=(Spec(), Spec()))

    @jax.jit
    def run(variables: dict[str, Any], groups: Any) -> Any:
        def step(total: Any, idx: Any) -> tuple[Any, Any]:
            loss, grads = split(variables, idx)
            used = sum(jnp.sum(jnp.abs(g)) for g in jax.tree_util.tree_leaves(grads))
            return total + used, loss

        return jax.lax.scan(step, jnp.float32(0.0), groups)

    return lambda: run(variables_of(inputs), inputs["groups"])


def time_call(fn: Callable[[], Any], repeats: int) -> dict[str, float]:
    """Best and median wall time [s] of ``fn`` after one warm-up (compile) call."""
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return {"best_s": min(times), "median_s": statistics.median(times)}


def breakdown(n_slices: int, repeats: int) -> dict[str, dict[str, float]]:
    """Every piece's timing for ``n_slices``."""
    inputs = make_inputs(n_slices)
    pieces = {
        "ffts (4 S per position)": fft_fn(inputs),
        "forward": forward_fn(inputs),
        "forward+backward": gradient_fn(inputs),
        "forward+backward, no sub-pixel shift": gradient_fn(inputs, shift=False),
        "full iteration (+ adam)": iteration_fn(inputs),
        "adam updates alone": adam_fn(inputs),
        "patch cut + gradient alone": patches_fn(inputs),
    }
    if len(jax.devices()) > 1:
        pieces[f"forward+backward on {len(jax.devices())} CPU devices"] = sharded_gradient_fn(inputs)
    return {name: time_call(fn, repeats) for name, fn in pieces.items()}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--slices", type=int, nargs="+", default=[1, 4], help="slice counts")
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per piece")
    parser.add_argument("--cpu-devices", type=int, default=1, help="JAX CPU devices (>1 adds the sharded piece)")
    parser.add_argument("--out", type=Path, default=None, help="also write the timings as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Time the pieces and print one table per slice count."""
    args = parse_args(argv)
    # must precede the first use of the backend
    jax.config.update("jax_num_cpu_devices", args.cpu_devices)
    results = {}
    for n_slices in args.slices:
        rows = breakdown(n_slices, args.repeats)
        results[f"{n_slices} slices"] = rows
        print(f"\n{n_slices} slice(s), {np.prod(SCAN_SHAPE)} positions, groups of {GROUP_SIZE}")
        print("| piece | best ms | median ms |\n|---|---|---|")
        for name, row in rows.items():
            print(f"| {name} | {row['best_s'] * 1e3:.1f} | {row['median_s'] * 1e3:.1f} |")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"jax": jax.__version__, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

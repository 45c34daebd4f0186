"""Array backends (numpy, jax, cupy), precision and the one seeded random source.

Array code never consults a global switch: it takes its namespace ``xp`` as an argument or asks
:func:`namespace_of` for the namespace of the arrays it was given.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal

import array_api_compat
import numpy as np

BackendName = Literal["numpy", "jax", "cupy"]
DTypeName = Literal["float32", "float64"]
BACKEND_NAMES: tuple[str, ...] = ("numpy", "jax", "cupy")


class BackendUnavailable(RuntimeError):
    """The requested backend cannot be imported on this machine."""


def backend_available(name: str) -> bool:
    """Whether backend ``name`` can be used here (cupy needs a GPU and the cupy package)."""
    if name == "numpy":
        return True
    if name == "jax":
        return importlib.util.find_spec("jax") is not None
    if name == "cupy":
        if importlib.util.find_spec("cupy") is None:
            return False
        try:
            import cupy

            return cupy.cuda.runtime.getDeviceCount() > 0
        except Exception:  # noqa: BLE001 - any CUDA failure means "not available"
            return False
    return False


def namespace_of(*arrays: Any) -> ModuleType:
    """The numpy-like module (numpy, jax.numpy or cupy) that owns ``arrays``."""
    for array in arrays:
        if array_api_compat.is_jax_array(array):
            import jax.numpy as jnp

            return jnp
        if array_api_compat.is_cupy_array(array):
            import cupy

            return cupy
    return np


@dataclass(frozen=True)
class Backend:
    """A chosen array namespace plus the precision every array of a run uses."""

    name: str
    xp: ModuleType
    real_dtype: Any
    complex_dtype: Any

    def asarray(self, array: Any, dtype: Any = None) -> Any:
        """Move ``array`` onto this backend (default dtype: real or complex at run precision)."""
        if dtype is None:
            dtype = self.complex_dtype if np.iscomplexobj(array) else self.real_dtype
        return self.xp.asarray(array, dtype=dtype)

    def to_numpy(self, array: Any) -> np.ndarray:
        """Copy ``array`` to host memory as a numpy array."""
        return to_numpy(array)


def to_numpy(array: Any) -> np.ndarray:
    """Host copy of an array from any backend."""
    if array_api_compat.is_cupy_array(array):
        return array.get()
    return np.asarray(array)


def get_backend(name: str = "numpy", dtype: str = "float32") -> Backend:
    """Select backend ``name`` at precision ``dtype``; raises :class:`BackendUnavailable`."""
    if name not in BACKEND_NAMES:
        raise ValueError(f"backend: {name!r} is not one of {', '.join(BACKEND_NAMES)}")
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype: {dtype!r} is not one of float32, float64")
    if not backend_available(name):
        raise BackendUnavailable(
            f"backend {name!r} is not available here"
            + (" (cupy needs an NVIDIA GPU and `pip install phaser[cupy]`)" if name == "cupy" else "")
        )
    if name == "numpy":
        xp: ModuleType = np
    elif name == "jax":
        import jax

        from phaser.jax_devices import configure_cpu_devices

        configure_cpu_devices()

        if dtype == "float64":
            jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        xp = jnp
    else:
        import cupy

        xp = cupy
    real = xp.float32 if dtype == "float32" else xp.float64
    cplx = xp.complex64 if dtype == "float32" else xp.complex128
    return Backend(name=name, xp=xp, real_dtype=real, complex_dtype=cplx)


@contextmanager
def precision_scope(name: str) -> Iterator[None]:
    """Restore JAX's ``jax_enable_x64`` on exit, so a float64 run (which turns it on) does not
    leave later float32 runs of the same process in double precision."""
    if name != "jax":
        yield
        return
    import jax

    before = bool(jax.config.read("jax_enable_x64"))
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", before)


def make_rng(seed: int | None) -> np.random.Generator:
    """The run's one random source: host-side PCG64, so results match across backends."""
    return np.random.default_rng(seed)

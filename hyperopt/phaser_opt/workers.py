"""Worker processes on this machine, each on its own GPU or its own share of the CPU cores.

The study is created once by the process that starts the workers; each worker only loads it
(concurrent creation races on the schema), runs trials until the study's count is reached, and
shares nothing with the others but the storage. Optuna's RDB storage is the whole coordination:
there is no scheduler here.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import TextIO


def gpu_ids() -> list[str]:
    """The NVIDIA GPUs this process may use: ``CUDA_VISIBLE_DEVICES`` if set, else those
    ``nvidia-smi -L`` lists (none on a machine without it)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g for g in visible.split(",") if g.strip() and g.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(listed.splitlines()) if line.startswith("GPU ")]


def core_shares(n_workers: int, cores: list[int] | None = None) -> list[list[int]]:
    """The usable cores split into ``n_workers`` contiguous shares (workers beyond the core
    count share cores round-robin), so workers do not oversubscribe the CPU."""
    cores = sorted(os.sched_getaffinity(0)) if cores is None else cores
    if n_workers >= len(cores):
        return [[cores[k % len(cores)]] for k in range(n_workers)]
    size, extra = divmod(len(cores), n_workers)
    shares, start = [], 0
    for k in range(n_workers):
        end = start + size + (1 if k < extra else 0)
        shares.append(cores[start:end])
        start = end
    return shares


def worker_environment(index: int, n_workers: int, gpus: list[str], cores: list[list[int]]) -> dict[str, str]:
    """Environment of worker ``index``: one GPU (round-robin) where there are GPUs, else its
    share of the cores (``PHASER_CPU_CORES``, applied by the worker before JAX starts)."""
    env = dict(os.environ)
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]
    else:
        share = cores[index]
        env["PHASER_CPU_CORES"] = ",".join(map(str, share))
        env["PHASER_CPU_DEVICES"] = str(len(share))
    return env


def pin_to_cores() -> None:
    """Apply ``PHASER_CPU_CORES`` (set by :func:`worker_environment`) to this process."""
    value = os.environ.get("PHASER_CPU_CORES")
    if value and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(c) for c in value.split(",")})


def worker_command(study_path: Path, index: int, n_trials: int | None) -> list[str]:
    """The command line of worker ``index`` (the same as ``phaser-opt worker`` on another machine)."""
    command = [sys.executable, "-m", "phaser_opt", "worker", str(study_path), "--worker-index", str(index)]
    return command + (["--n-trials", str(n_trials)] if n_trials is not None else [])


def run_worker_processes(study_path: Path, n_workers: int, n_trials: int | None, stream: TextIO) -> int:
    """Start ``n_workers`` workers on this machine and wait for them; returns the number that
    failed. Ctrl-C reaches every worker (one process group), each marks its trial interrupted."""
    gpus, cores = gpu_ids(), core_shares(n_workers)
    processes = []
    for index in range(n_workers):
        env = worker_environment(index, n_workers, gpus, cores)
        where = f"GPU {env['CUDA_VISIBLE_DEVICES']}" if gpus else f"cores {env['PHASER_CPU_CORES']}"
        print(f"worker {index}: {where}", file=stream, flush=True)
        processes.append(subprocess.Popen(worker_command(study_path, index, n_trials), env=env))
    failed = 0
    try:
        for process in processes:
            failed += process.wait() != 0
    except KeyboardInterrupt:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in processes:
            process.wait()
        raise
    return failed


def compilation_cache_dir() -> Path | None:
    """Where compiled XLA programs persist between processes: ``PHASER_JAX_CACHE`` (empty: off),
    else ``$XDG_CACHE_HOME/phaser/jax`` (``~/.cache/phaser/jax``)."""
    value = os.environ.get("PHASER_JAX_CACHE")
    if value is not None:
        return Path(value) if value else None
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "phaser" / "jax"


def enable_compilation_cache() -> Path | None:
    """Turn on JAX's persistent compilation cache, so a new worker process starts warm: the
    programs of trials that only change numbers are read from disk instead of compiled."""
    folder = compilation_cache_dir()
    if folder is None:
        return None
    import jax

    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # every program: trials are short
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder

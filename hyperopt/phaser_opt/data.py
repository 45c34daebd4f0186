"""The study's dataset: made by the simulator when its file is absent, and fingerprinted."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import os
from pathlib import Path
from typing import Any

# The part of a file read for its fingerprint, at each end [bytes]: enough to tell datasets apart
# without reading gigabytes per trial (the size and both ends change when the data do).
_FINGERPRINT_BYTES = 4 << 20


def simulate_arguments(recipe: dict[str, Any], out: Path, resolve: Any) -> list[str]:
    """``phaser simulate`` arguments from a ``data.simulate`` mapping (option names without ``--``,
    underscores or dashes; ``specimen`` is the positional specimen file)."""
    argv = ["simulate"]
    for key, value in recipe.items():
        if key == "specimen":
            argv.insert(1, str(resolve(value)))
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            raise ValueError(f"data.simulate.{key}: expected a number, got {value!r}")
        values = value if isinstance(value, (list, tuple)) else [value]
        argv += [flag, *(str(v) for v in values)]
    return [*argv, "--out", str(out)]


def ensure_dataset(recipe: dict[str, Any] | None, path: Path, resolve: Any) -> str | None:
    """Make the dataset at ``path`` from ``recipe`` when the file is absent; returns the
    simulator's summary line (None when the file was there). Raises ValueError naming the option."""
    if path.exists():
        return None
    if recipe is None:
        raise ValueError(f"data.path: file not found: {path}")
    from phaser.cli import build_parser

    # written aside and renamed: workers starting together never read a half-written file
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    argv = simulate_arguments(recipe, partial, resolve)
    parser = build_parser()
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            args = parser.parse_args(argv)
    except SystemExit:
        message = errors.getvalue().strip().splitlines()
        raise ValueError(f"data.simulate: {message[-1] if message else 'invalid options'}") from None
    output = io.StringIO()
    try:
        with contextlib.redirect_stdout(output):
            args.handler(argparse.Namespace(**vars(args)))
    except SystemExit as exc:
        partial.unlink(missing_ok=True)
        raise ValueError(f"data.simulate: {exc}") from None
    os.replace(partial, path)
    return output.getvalue().strip().replace(str(partial), str(path))


def fingerprint(path: Path) -> str:
    """A short hex digest of a data file: its size and its first and last 4 MiB."""
    digest = hashlib.sha256()
    size = path.stat().st_size
    digest.update(str(size).encode())
    with path.open("rb") as f:
        digest.update(f.read(_FINGERPRINT_BYTES))
        if size > _FINGERPRINT_BYTES:
            f.seek(max(size - _FINGERPRINT_BYTES, _FINGERPRINT_BYTES))
            digest.update(f.read())
    return digest.hexdigest()[:16]

"""A plan checked against its data's metadata: what ``phaser run`` would refuse, found by ``validate``.

Only headers are read (:func:`phaser.io.metadata.read_metadata`): shapes, attributes, XML, sizes.
Post-load hooks are followed for what they do to the shapes and the detector pixel; after a
custom post-load hook (whose effect is unknown) only the file itself is checked.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from phaser.io.metadata import DataMetadata, read_metadata
from phaser.io.raw_data import RawDataError
from phaser.io.state_file import StateFileError, read_state_header

Problems = list[tuple[str, str]]


def data_source(plan: Any) -> Path | None:
    """The file :func:`check_against_data` reads, None when the raw-data hook is custom."""
    if plan.raw_data.name in ("manual", "empad"):
        return Path(plan.raw_data.props.path).expanduser()
    return None


def check_against_data(plan: Any) -> Problems:
    """Every ``(field path, message)`` problem of ``plan`` against its data file's metadata.

    Checks what a run would otherwise fail on after loading: the file itself (missing, empty,
    truncated, not an array, pickled, wrong rank), the scan shape against the pattern count, the
    accelerating voltage and detector pixel size being known, post-load crops and bins fitting the
    detector, a starting state or tilt file matching the patterns.
    """
    try:
        meta = read_metadata(plan.raw_data)
    except RawDataError as exc:
        return [("raw_data", str(exc))]
    if meta is None:
        return []
    problems: Problems = []
    meta = _after_post_load(plan.post_load, meta, problems)
    if meta is None:
        return problems
    source = meta.source
    if plan.wavelength is None and meta.wavelength_A is None and meta.kv is None:
        problems.append(("raw_data.kv", f"the accelerating voltage [kV] is neither in the plan nor in {source}"))
    if meta.diff_step_mrad is None:
        problems.append(
            ("raw_data.diff_step", f"the detector pixel size [mrad] is neither in the plan nor in {source}")
        )
    if plan.init.state is not None:
        problems += _check_state(plan, meta)
    else:
        problems += _check_scan(plan, meta)
    problems += _check_tilt(plan, meta)
    return problems


def _after_post_load(hooks: list[Any], meta: DataMetadata, problems: Problems) -> DataMetadata | None:
    """``meta`` as the post-load hooks leave it; None after a hook whose effect is unknown."""
    for i, hook in enumerate(hooks):
        field = f"post_load[{i}]"
        props = hook.props
        if hook.name in ("crop", "crop_data"):
            window = props.scan_crop if hook.name == "crop" else props.crop
            if window is not None:
                if meta.scan_shape is None:
                    problems.append(
                        (field, f"a scan crop needs raster data, but {meta.source} has no scan shape (set scan_shape)")
                    )
                    return None
                y0, y1, x0, x1 = window
                scan = (len(range(meta.scan_shape[0])[y0:y1]), len(range(meta.scan_shape[1])[x0:x1]))
                if 0 in scan:
                    problems.append((field, f"{list(window)} leaves no positions of scan {meta.scan_shape}"))
                    return None
                meta = replace(meta, scan_shape=scan, n_patterns=math.prod(scan))
            shape = getattr(props, "shape", None)
            if shape is not None:
                if shape[0] > meta.pattern_shape[0] or shape[1] > meta.pattern_shape[1]:
                    problems.append(
                        (f"{field}.shape", f"cannot crop detector {meta.pattern_shape} to larger {tuple(shape)}")
                    )
                    return None
                meta = replace(meta, pattern_shape=tuple(shape))
        elif hook.name == "bin":
            k_y, k_x = meta.pattern_shape
            if k_y % props.factor or k_x % props.factor:
                problems.append(
                    (f"{field}.factor", f"detector shape {(k_y, k_x)} is not divisible by bin factor {props.factor}")
                )
                return None
            step = meta.diff_step_mrad * props.factor if meta.diff_step_mrad is not None else None
            meta = replace(meta, pattern_shape=(k_y // props.factor, k_x // props.factor), diff_step_mrad=step)
        elif hook.name not in ("scale", "offset", "poisson"):
            return None
    return meta


def _check_scan(plan: Any, meta: DataMetadata) -> Problems:
    """The raster scan's shape and step known, and its positions one per pattern."""
    hook = plan.init.scan
    if hook is not None and hook.name != "raster":
        return []
    shape = hook.props.shape if hook is not None else None
    step = hook.props.step_size if hook is not None else None
    problems: Problems = []
    if shape is None and meta.scan_shape is None:
        problems.append(
            (
                "init.scan.shape",
                f"not given, and {meta.source} has no scan shape ({meta.n_patterns} patterns); "
                "give init.scan.shape or raw_data.scan_shape",
            )
        )
    if step is None and meta.scan_step_A is None:
        problems.append(
            ("init.scan.step_size", f"not given, and {meta.source} has no scan step [A]; give init.scan.step_size")
        )
    if shape is not None and math.prod(shape) != meta.n_patterns:
        problems.append(
            (
                "init.scan.shape",
                f"{tuple(shape)} has {math.prod(shape)} positions but {meta.source} holds {meta.n_patterns} "
                f"patterns" + (f" (scan {meta.scan_shape})" if meta.scan_shape else ""),
            )
        )
    return problems


def _check_state(plan: Any, meta: DataMetadata) -> Problems:
    """The starting state's positions one per pattern, its probe on the grid the run expects."""
    from phaser.plan.resume import resume_point

    try:
        header = read_state_header(plan.init.state)
        point = resume_point(plan, header)
    except StateFileError as exc:
        return [("init.state", str(exc).removeprefix("init.state: "))]
    problems: Problems = []
    if header.n_positions != meta.n_patterns:
        problems.append(
            (
                "init.state",
                f"{plan.init.state} has {header.n_positions} positions but {meta.source} holds "
                f"{meta.n_patterns} patterns",
            )
        )
    # the state is on the grid of the engine it was saved in; starting afresh, on the data's
    grid_engines = plan.engines[: point.state_engine_index + 1] if point is not None else []
    expected = meta.pattern_shape
    for engine in grid_engines:
        expected = tuple(engine.sim_shape) if engine.sim_shape is not None else expected
    if tuple(header.probe_shape) != tuple(expected):
        where = f"engines[{point.state_engine_index}]" if point is not None else "the patterns"
        problems.append(
            (
                "init.state",
                f"{plan.init.state} has a {tuple(header.probe_shape)} probe but {where} of {meta.source} "
                f"need {tuple(expected)}",
            )
        )
    return problems


def _check_tilt(plan: Any, meta: DataMetadata) -> Problems:
    """A custom tilt file: readable and one tilt per pattern."""
    hook = plan.init.tilt
    if hook is None or hook.name != "custom" or plan.init.state is not None:
        return []
    from phaser.initial import check_tilt_file

    try:
        check_tilt_file(hook.props.path, meta.n_patterns)
    except RawDataError as exc:
        return [("init.tilt.path", str(exc).removeprefix("init.tilt.path: "))]
    return []


def fill_from_data(plan: Any) -> Any:
    """``plan`` with the defaults it leaves to the data written out, for ``validate --resolved``.

    The raw-data hook's ``kv``, ``diff_step``, ``scan_shape`` and ``scan_step`` get the file's
    values where the plan has none (a plan value overrides the file's, so the meaning is the same),
    and ``init.scan`` and ``init.object`` the default hooks (raster, random) when not starting from
    a state. A file that cannot be read leaves the plan as it is.
    """
    from phaser.hooks import Hook, entry

    try:
        meta = read_metadata(plan.raw_data)
    except RawDataError:
        meta = None
    changes: dict[str, Any] = {}
    if meta is not None:
        props = plan.raw_data.props
        found = {"kv": meta.kv, "diff_step": meta.diff_step_mrad, "scan_shape": meta.scan_shape}
        found["scan_step"] = meta.scan_step_A
        fields = type(props).model_fields
        updates = {k: v for k, v in found.items() if k in fields and getattr(props, k) is None and v is not None}
        if updates:
            props = type(props).model_validate({**props.model_dump(), **updates})
            changes["raw_data"] = Hook(plan.raw_data.kind, plan.raw_data.name, props)
    if plan.init.state is None:
        defaults = {"scan": "raster", "object": "random"}
        init = {
            k: Hook(k, name, entry(k, name).props_class())
            for k, name in defaults.items()
            if getattr(plan.init, k) is None
        }
        if init:
            changes["init"] = plan.init.model_copy(update=init)
    return plan.model_copy(update=changes) if changes else plan

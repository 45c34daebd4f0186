"""Per-trial artifacts for optuna-dashboard: figures, the plan, a note, and the study's gallery.

Each trial uploads its figures (summed object phase, slice montage, probe modes, error curve,
and against a truth the FRC curve and the aligned difference) and its concrete plan to a
file-system artifact store beside the database, plus the summed phase as a small array from which
the study page's gallery (the top trials' phases side by side on one colour scale) is drawn.
"""

from __future__ import annotations

import logging
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.artifacts import FileSystemArtifactStore, download_artifact, get_all_artifact_meta, upload_artifact

from phaser.metrics import illuminated_mask, mask_bounding_box, object_phase, probe_radius_px
from phaser.state import ReconsState

logger = logging.getLogger("phaser_opt")

PHASE_ARRAY = "object_phase.npy"
GALLERY_ID = "gallery"


def artifact_store(folder: Path) -> FileSystemArtifactStore:
    """The file-system artifact store in ``folder`` (created)."""
    folder.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(str(folder))


def scanned_region(state: ReconsState) -> tuple[slice, slice]:
    """The object pixels the probe illuminated (where a reconstruction means something)."""
    shape = np.asarray(state.object_slices).shape[-2:]
    mask = illuminated_mask(shape, state.positions_px(np), probe_radius_px(np.asarray(state.probe_modes)))
    return mask_bounding_box(mask)


def engine_boundaries(plan: Any) -> list[int]:
    """Total iteration counts at which the plan switches engine."""
    return list(np.cumsum([engine.niter for engine in plan.engines])[:-1])


def trial_figures(
    run: Any, comparison: Any, kinds: tuple[str, ...], dpi: int, region: tuple[slice, slice]
) -> dict[str, Any]:
    """The figures of a finished trial by file name (``kinds`` as in the study's ``artifacts.images``)."""
    from phaser import figures

    state: ReconsState = run.state
    slices = np.angle(np.asarray(state.object_slices))[(slice(None), *region)]
    sampling = tuple(float(s) for s in state.sampling_A)
    out: dict[str, Any] = {}
    if "object_phase" in kinds:
        out["object_phase.png"] = figures.object_phase_figure(slices.sum(axis=0), sampling, dpi=dpi)
    if "slices" in kinds and slices.shape[0] > 1:
        out["slices.png"] = figures.slice_montage_figure(slices, sampling, list(state.slice_thicknesses_A), dpi=dpi)
    if "probe" in kinds:
        out["probe.png"] = figures.probe_modes_figure(
            np.asarray(state.probe_modes), sampling, state.wavelength_A, dpi=dpi
        )
    if "error" in kinds and state.error_history:
        out["error.png"] = figures.error_curve_figure(state.error_history, engine_boundaries(run.plan), dpi=dpi)
    if comparison is not None and "frc" in kinds and comparison.curve is not None:
        curve = comparison.curve
        resolutions = {
            "1/7": comparison.scores.get("frc_resolution_A", math.nan),
            "half-bit": comparison.scores.get("frc_half_bit_resolution_A", math.nan),
        }
        out["frc.png"] = figures.frc_figure(curve.frequencies, curve.curve, resolutions_A=resolutions, dpi=dpi)
    if comparison is not None and "difference" in kinds:
        pair = comparison.pair
        box = mask_bounding_box(pair.mask)
        out["difference.png"] = figures.difference_figure(
            pair.image_aligned[box], pair.reference[box], sampling, mask=pair.mask[box], unit="rad", dpi=dpi
        )
    return out


def trial_note(trial: optuna.Trial, run: Any, values: dict[str, float]) -> str:
    """A Markdown summary of the trial for its dashboard page."""
    lines = [f"## Trial {trial.number}", "", "| metric | value |", "|---|---|"]
    lines += [f"| {name} | {value:.5g} |" for name, value in values.items()]
    lines += ["", "| parameter | value |", "|---|---|"]
    lines += [f"| `{name}` | {value} |" for name, value in trial.params.items()]
    first, last = (run.state.error_history[0], run.state.error_history[-1]) if run.state.error_history else (0, 0)
    lines += [
        "",
        f"{run.state.iteration} iterations in {run.wall_time_s:.1f} s; error {first:.4g} -> {last:.4g}; "
        f"peak memory {run.peak_memory_mb:.0f} MB.",
    ]
    return "\n".join(lines)


class ArtifactWriter:
    """Uploads each finished trial's artifacts and note; refreshes the study's gallery."""

    def __init__(self, folder: Path, spec: Any):
        self.store = artifact_store(folder)
        self.spec = spec
        self._gallery_of: tuple[int, ...] = ()  # the trials the gallery last showed

    def record(self, trial: optuna.Trial, run: Any, truth: Any) -> None:
        """Upload the trial's figures, plan, phase array (and state, when asked) and its note."""
        from phaser import figures

        comparison = run.cache.get("truth")
        if comparison is None and truth is not None:
            from phaser_opt.scoring import compare_with_truth

            comparison = compare_with_truth(run.state, truth)
        with tempfile.TemporaryDirectory(prefix="phaser-opt-") as tmp:
            folder = Path(tmp)
            region = scanned_region(run.state)
            for name, figure in trial_figures(run, comparison, self.spec.images, self.spec.dpi, region).items():
                self._upload(trial, figures.save_figure(figure, folder / name), "image/png")
            if "plan" in self.spec.images:
                path = folder / "plan.yaml"
                path.write_text(trial.user_attrs.get("plan_yaml", ""))
                self._upload(trial, path, "text/yaml")
            phase = object_phase(np.asarray(run.state.object_slices))[region].astype(np.float32)
            np.save(folder / PHASE_ARRAY, phase)
            self._upload(trial, folder / PHASE_ARRAY, "application/octet-stream")
            if self.spec.state:
                self._upload_state(trial, run, folder)
        values = {k.removeprefix("metric."): v for k, v in trial.user_attrs.items() if k.startswith("metric.")}
        try:
            import optuna_dashboard

            optuna_dashboard.save_note(
                trial, trial_note(trial, run, {k: v for k, v in values.items() if v is not None})
            )
        except Exception as exc:  # noqa: BLE001 - a note is a nicety; the trial's value stands
            logger.warning("trial %d: could not save its note (%s)", trial.number, exc)

    def _upload(self, trial: optuna.Trial, path: Path, mimetype: str) -> None:
        upload_artifact(artifact_store=self.store, file_path=str(path), study_or_trial=trial, mimetype=mimetype)

    def _upload_state(self, trial: optuna.Trial, run: Any, folder: Path) -> None:
        from phaser.io.state_file import save_state

        path = save_state(folder / "final.h5", run.state, trial.user_attrs.get("plan_yaml", ""))
        size_mb = path.stat().st_size / 1e6
        if size_mb > self.spec.max_state_mb:
            trial.set_user_attr("state_not_kept", f"{size_mb:.1f} MB over the {self.spec.max_state_mb:g} MB cap")
            return
        self._upload(trial, path, "application/x-hdf5")

    def phase_of(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> np.ndarray | None:
        """The summed object phase a finished trial uploaded, or None."""
        for meta in get_all_artifact_meta(trial, storage=study._storage):
            if meta.filename == PHASE_ARRAY:
                with tempfile.TemporaryDirectory() as tmp:
                    target = Path(tmp) / PHASE_ARRAY
                    download_artifact(artifact_store=self.store, artifact_id=meta.artifact_id, file_path=str(target))
                    return np.load(target, allow_pickle=False)
        return None

    def refresh_gallery(self, study: optuna.Study) -> None:
        """Redraw the study page's gallery of the top trials (a study callback)."""
        if self.spec.gallery_top == 0:
            return
        from phaser_opt.gallery import gallery_figure, top_trials

        top = top_trials(study, self.spec.gallery_top)
        shown = tuple(t.number for t in top)
        if shown == self._gallery_of:
            return  # the new trial did not enter the top: the stored gallery is still right
        phases = [(t, self.phase_of(study, t)) for t in top]
        phases = [(t, p) for t, p in phases if p is not None]
        if not phases:
            return
        import optuna_dashboard

        figure = gallery_figure(study, phases)
        # the dashboard draws graphs in a fixed-height card: let the figure fill it, not overflow it
        figure.update_layout(width=None, height=None, autosize=True, margin=dict(l=10, r=10, t=70, b=10))
        figure.update_layout(title_font_size=13)
        optuna_dashboard.save_plotly_graph_object(study, figure, graph_object_id=GALLERY_ID)
        self._gallery_of = shown

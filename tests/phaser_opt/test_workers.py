"""Studies at scale: one suite over SQLite and PostgreSQL, worker processes, crash recovery,
Ctrl-C and resume, and trials that cost only their reconstruction."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import jax
import numpy as np
import optuna
import pytest
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from phaser_opt.runner import open_study, run_study, run_trials
from phaser_opt.study import load_study
from phaser_opt.workers import core_shares, worker_command, worker_environment
from tests.phaser_opt.conftest import TEMPLATE, write_study

# Trials long enough to be caught mid-run (about 2-4 s each here).
LONG_TEMPLATE = TEMPLATE.replace("niter: 6", "niter: 60")


def unique_name() -> str:
    return f"tiny_{uuid.uuid4().hex[:8]}"


def quiet_run(path: Path, **kwargs) -> optuna.Study:
    return run_study(load_study(path), stream=io.StringIO(), **kwargs)


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


def states(study: optuna.Study) -> list[TrialState]:
    return [t.state for t in study.get_trials(deepcopy=False)]


def test_study_end_to_end_on_each_storage(tmp_path, dataset_file, storage_url):
    path = write_study(
        tmp_path, dataset_file, name=unique_name(), storage=storage_url, enqueue=[{"lr": 0.002}], n_trials=3
    )
    study = quiet_run(path)
    assert states(study) == [TrialState.COMPLETE] * 3
    assert study.best_value < study.get_trials()[0].value
    assert all("metric.mse" in t.user_attrs and "plan_yaml" in t.user_attrs for t in study.get_trials())
    resumed = quiet_run(path, n_trials=4)
    assert len(resumed.get_trials()) == 4 and resumed.get_trials()[0].params == {"lr": 0.002}


def test_two_worker_processes_fill_one_study_without_duplicates(tmp_path, dataset_file, storage_url):
    path = write_study(
        tmp_path, dataset_file, name=unique_name(), storage=storage_url, n_trials=6, artifacts={"enabled": False}
    )
    study = quiet_run(path, workers=2)
    trials = study.get_trials()
    # the count is checked before each trial: two workers finishing together may start one more
    assert len(trials) in (6, 7) and all(t.state == TrialState.COMPLETE for t in trials)
    learning_rates = [round(t.params["lr"], 12) for t in trials]
    assert len(set(learning_rates)) == len(trials), learning_rates


def start_worker(path: Path, index: int = 0) -> subprocess.Popen:
    env = {**os.environ, "PHASER_CPU_DEVICES": "1"}
    return subprocess.Popen(
        worker_command(path, index, None), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_a_killed_workers_trial_fails_and_is_retried_with_its_parameters(tmp_path, dataset_file, storage_url):
    path = write_study(
        tmp_path,
        dataset_file,
        template_text=LONG_TEMPLATE,
        name=unique_name(),
        storage=storage_url,
        n_trials=1,
        enqueue=[{"lr": 0.03}],
        heartbeat={"interval": 1, "grace_period": 2, "max_retry": 1},
        artifacts={"enabled": False},
    )
    loaded = load_study(path)
    study = open_study(loaded)
    worker = start_worker(path)
    try:
        wait_for(lambda: TrialState.RUNNING in states(study), 60, "the worker to start its trial")
        time.sleep(0.5)
        killed_at = time.monotonic()
        os.kill(worker.pid, signal.SIGKILL)
    finally:
        worker.wait(timeout=30)
    assert states(study) == [TrialState.RUNNING]  # stranded until its heartbeat goes stale
    time.sleep(2.5)  # past the grace period
    run_trials(loaded, open_study(loaded, create=False), 1, stream=io.StringIO())
    failed, retried = study.get_trials()
    recovered_in = time.monotonic() - killed_at
    assert failed.state == TrialState.FAIL and retried.state == TrialState.COMPLETE
    assert retried.params == failed.params == {"lr": 0.03}
    assert RetryHeartbeatStaleTrialCallback.retried_trial_number(retried) == failed.number
    assert recovered_in < 60


def test_ctrl_c_marks_the_running_trial_and_the_same_command_completes_the_study(tmp_path, dataset_file):
    # 400 iterations, each reported: the signal is sent once the first report shows the trial is in
    # its iterations (compiled), with hundreds of them still to go however fast the machine is
    path = write_study(
        tmp_path,
        dataset_file,
        template_text=TEMPLATE.replace("niter: 6", "niter: 400"),
        n_trials=2,
        enqueue=[{"lr": 0.03}],
        artifacts={"enabled": False},
        report={"every": 1},
    )
    loaded = load_study(path)
    command = [sys.executable, "-m", "phaser_opt", str(path)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    study = open_study(loaded)
    try:
        wait_for(
            lambda: any(t.intermediate_values for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))),
            60,
            "the first trial's first report",
        )
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130 and "resumes" in err and "Traceback" not in err, err[-3000:]
    (interrupted,) = study.get_trials()
    assert interrupted.state == TrialState.FAIL
    assert interrupted.user_attrs["fail_reason"].startswith("interrupted")
    finished = quiet_run(path)
    trials = finished.get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 2  # the count asked for, the interrupted trial not counted
    assert complete[0].params == interrupted.params and complete[0].user_attrs["rerun_of"] == 0


def test_four_workers_and_a_dashboard_share_sqlite_without_lock_errors(tmp_path, dataset_file):
    import optuna_dashboard

    from tests.phaser_opt.test_dashboard import wsgi_get

    path = write_study(tmp_path, dataset_file, n_trials=8, report={"every": 1})
    loaded = load_study(path)
    open_study(loaded)
    app = optuna_dashboard.wsgi(loaded.storage_url)
    stop, failures, polls = threading.Event(), [], [0]

    def poll() -> None:
        while not stop.is_set():
            response = wsgi_get(app, "/api/studies/1")
            polls[0] += 1
            if response.status != 200:
                failures.append(response.body[:200])
            time.sleep(0.1)

    reader = threading.Thread(target=poll, daemon=True)
    reader.start()
    workers = [start_worker(path, k) for k in range(4)]
    try:
        outputs = [w.communicate(timeout=300) for w in workers]
    finally:
        stop.set()
        reader.join(timeout=10)
        for w in workers:
            if w.poll() is None:
                w.kill()
    log = "\n".join(out + err for out, err in outputs)
    assert "locked" not in log.lower(), log[-2000:]
    assert all(w.returncode == 0 for w in workers), log[-2000:]
    assert not failures and polls[0] > 5
    study = open_study(loaded, create=False)
    # each worker checks the count before its trial: those finishing together may each start one more
    trials = study.get_trials()
    assert 8 <= len(trials) <= 8 + 3 and all(t.state == TrialState.COMPLETE for t in trials)


def test_a_workers_second_trial_compiles_nothing_and_loads_no_data(tmp_path, dataset_file):
    from phaser_opt.objective import StudyObjective
    from phaser_opt.truth import load_truth

    compiles: list[str] = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, duration, **kw: compiles.append(event) if "backend_compile" in event else None
    )
    # a grouping no other test uses: the first trial's programs are new to this process
    template = TEMPLATE.replace("grouping: 16", "grouping: 12")
    path = write_study(
        tmp_path, dataset_file, template_text=template, enqueue=[{"lr": 0.01}, {"lr": 0.05}, {"lr": 0.1}], n_trials=3
    )
    loaded = load_study(path)
    study = open_study(loaded)
    objective = StudyObjective(loaded, load_truth(loaded.spec.truth, loaded.resolve))
    counts, loads = [], []
    for _ in range(3):
        before = len(compiles)
        study.optimize(objective, n_trials=1)
        counts.append(len(compiles) - before)
        loads.append(objective.data_cache.loads)
    assert states(study) == [TrialState.COMPLETE] * 3
    assert counts[0] > 0, "the listener hears compilations"
    assert counts[1] == counts[2] == 0, counts  # new learning rates: no new program
    assert loads == [1, 1, 1]


def test_a_float64_trial_does_not_leave_the_next_one_in_double_precision(tmp_path, dataset_file):
    template = TEMPLATE.replace(
        "backend: jax", "backend: jax\ndtype: !choice {options: [float64, float32], name: dtype}"
    )
    path = write_study(
        tmp_path,
        dataset_file,
        template_text=template,
        enqueue=[{"dtype": "float64", "lr": 0.05}, {"dtype": "float32", "lr": 0.05}],
        n_trials=2,
        artifacts={"state": True},
    )
    study = quiet_run(path)
    assert states(study) == [TrialState.COMPLETE] * 2
    assert not jax.config.read("jax_enable_x64")
    first, second = study.get_trials()
    assert first.value != second.value  # double and single precision give different last digits
    import h5py
    from optuna.artifacts import download_artifact, get_all_artifact_meta

    from phaser_opt.artifacts import artifact_store

    store = artifact_store(load_study(path).artifact_dir)
    dtypes = []
    for trial in (first, second):
        meta = next(m for m in get_all_artifact_meta(trial, storage=study._storage) if m.filename == "final.h5")
        target = tmp_path / f"state{trial.number}.h5"
        download_artifact(artifact_store=store, artifact_id=meta.artifact_id, file_path=str(target))
        with h5py.File(target) as f:
            dtypes.append(str(np.asarray(f["object"]).dtype) if "object" in f else None)
    assert dtypes == ["complex128", "complex64"], dtypes


def test_workers_share_the_cores_and_the_gpus():
    assert core_shares(2, [0, 1]) == [[0], [1]]
    assert core_shares(3, [0, 1, 2, 3, 4, 5, 6]) == [[0, 1, 2], [3, 4], [5, 6]]
    assert core_shares(4, [0, 1]) == [[0], [1], [0], [1]]
    cpu = worker_environment(1, 2, [], [[0], [1]])
    assert cpu["PHASER_CPU_CORES"] == "1" and cpu["PHASER_CPU_DEVICES"] == "1"
    gpu = worker_environment(3, 4, ["0", "1"], [[0], [1], [0], [1]])
    assert gpu["CUDA_VISIBLE_DEVICES"] == "1" and "PHASER_CPU_CORES" not in gpu


def test_the_slurm_array_script_runs_a_worker(tmp_path, dataset_file):
    script = Path(__file__).resolve().parents[2] / "studies/slurm_workers.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    path = write_study(tmp_path, dataset_file, n_trials=2, artifacts={"enabled": False})
    from phaser_opt.cli import main

    assert main([str(path), "--storage", storage, "--n-trials", "0"]) == 0  # created once, no trial
    env = {**os.environ, "PHASER_OPT_STORAGE": storage, "SLURM_ARRAY_TASK_ID": "3", "SLURM_CPUS_PER_TASK": "1"}
    bin_dir = Path(sys.executable).parent
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    done = subprocess.run(["bash", str(script), str(path)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "[worker 3]" in done.stderr
    study = optuna.load_study(study_name="tiny", storage=storage)
    assert [t.state for t in study.get_trials()] == [TrialState.COMPLETE] * 2
    missing = subprocess.run(
        ["bash", str(script), str(path)], env={**env, "PHASER_OPT_STORAGE": ""}, capture_output=True, text=True
    )
    assert missing.returncode != 0 and "PHASER_OPT_STORAGE" in missing.stderr


def test_a_lost_database_is_retried_with_backoff_then_given_up(monkeypatch):
    from sqlalchemy.exc import OperationalError

    from phaser_opt import runner

    monkeypatch.setattr(runner, "STORAGE_RETRY_WAITS", (0, 0, 0))
    monkeypatch.setattr(runner.time, "sleep", lambda seconds: None)
    study = optuna.create_study()
    failures = iter([True, True, False])

    def flaky() -> str:
        if next(failures):
            raise OperationalError("SELECT 1", {}, Exception("server closed the connection (password=secret)"))
        return "done"

    stream = io.StringIO()
    url = "postgresql+psycopg://user:secret@db/phaser"
    assert runner.with_storage_retries(flaky, study, url, stream) == "done"
    assert stream.getvalue().count("retrying in 0 s") == 2 and "secret" not in stream.getvalue()

    def down() -> None:
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    with pytest.raises(runner.StorageLost, match="gave up after 3 retries") as info:
        runner.with_storage_retries(down, study, url, io.StringIO())
    assert "secret" not in str(info.value) and "***" in str(info.value)

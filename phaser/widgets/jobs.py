"""A job on a running ``phaser serve`` in a notebook: submit a plan, follow its updates, cancel it.

:class:`JobModel` (traitlets only, no browser) speaks the server's HTTP API: ``POST /api/jobs`` to
submit, ``GET /api/jobs/{id}`` and ``/latest`` to poll, ``POST /api/jobs/{id}/cancel``; the token,
if the server has one, goes as ``Authorization: Bearer``. Each new update (a change of the job's
state or a new progress frame from its worker) is handed to every ``on_update`` callback as a
dict. A server that does not answer, or refuses, sets ``message`` naming the URL; nothing raises.
:func:`job_widget` draws it with ipywidgets.
"""

from __future__ import annotations

import base64
import html
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from traitlets import Any as AnyTrait
from traitlets import HasTraits, Int, List, Unicode

FINAL_STATES = ("done", "failed", "cancelled")  # as phaser.server.store.FINAL_STATES
Update = dict[str, Any]


class JobModel(HasTraits):
    """One job on the server at ``url``. Traits: ``job_id`` (-1 before submitting), ``state``,
    ``iteration``/``niter``, ``error`` (the latest, or None), ``errors`` (the history the worker
    sent), ``latest`` (the last progress frame: previews as base64 PNGs), ``log`` (its lines) and
    ``message`` (what went wrong, naming the URL; "" when all is well).

    ``client``: an ``httpx.Client``-like object (``request(method, url, json=, headers=)``), e.g.
    Starlette's ``TestClient``; by default the standard library's ``urllib`` talks to ``url``.
    """

    url = Unicode("http://127.0.0.1:8000")
    job_id = Int(-1)
    name = Unicode("")
    state = Unicode("")
    iteration = Int(0)
    niter = Int(0)
    error = AnyTrait(None)
    errors = List()
    latest = AnyTrait(None)
    log = List(Unicode())
    message = Unicode("")

    def __init__(
        self,
        url: str = "http://127.0.0.1:8000",
        token: str | None = None,
        on_update: Callable[[Update], Any] | None = None,
        client: Any = None,
        timeout_s: float = 10.0,
        **traits: Any,
    ) -> None:
        super().__init__(url=url.rstrip("/"), **traits)
        self.token = token
        self.client = client
        self.timeout_s = timeout_s
        self.callbacks: list[Callable[[Update], Any]] = [on_update] if on_update is not None else []
        self._seen_frame: Any = None
        self._seen_job: tuple = ()
        self._log_next = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- HTTP ----------------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """``(status, JSON reply or None)``; ``(0, reason)`` when the server does not answer."""
        if self.client is not None:
            try:
                reply = self.client.request(method, path, json=body, headers=self._headers())
            except Exception as exc:  # noqa: BLE001 - a transport failure is a message, not a traceback
                return 0, str(exc)
            return reply.status_code, _json(reply.content)
        data = None if body is None else json.dumps(body).encode()
        headers = {**self._headers(), **({"Content-Type": "application/json"} if data is not None else {})}
        req = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as reply:  # noqa: S310 - the user's server
                return reply.status, _json(reply.read())
        except urllib.error.HTTPError as exc:
            return exc.code, _json(exc.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            return 0, str(getattr(exc, "reason", exc))

    def _refused(self, what: str, status: int, reply: Any) -> bool:
        """Set ``message`` for a failed call and return True; False (message cleared) when it succeeded."""
        if 200 <= status < 300:
            self.message = ""
            return False
        if status == 0:
            self.message = f"The phaser server at {self.url} does not answer ({what}): {reply}"
        elif isinstance(reply, dict) and reply.get("problems"):
            problems = "; ".join(f"{p}: {m}" if p else str(m) for p, m in reply["problems"])
            self.message = f"The phaser server at {self.url} refused the plan: {problems}"
        else:
            reason = reply.get("reason") if isinstance(reply, dict) else reply
            self.message = f"The phaser server at {self.url} refused {what} (HTTP {status}): {reason}"
        return True

    # -- actions -------------------------------------------------------------------------------
    def submit(self, plan_yaml: str | None = None, path: str | None = None) -> bool:
        """Queue a plan (its YAML text, or a ``path`` under the server's root); True when queued."""
        body = {"plan_yaml": plan_yaml} if plan_yaml is not None else {"path": path}
        status, reply = self.request("POST", "/api/jobs", body)
        if self._refused("the submission", status, reply):
            return False
        self.job_id, self.name = int(reply["id"]), str(reply.get("name", ""))
        self._seen_frame, self._seen_job, self._log_next, self.log = None, (), 0, []
        self._apply_job(reply)
        return True

    def attach(self, job_id: int) -> bool:
        """Follow an existing job ``job_id`` (submitted elsewhere); True when the server knows it."""
        self.job_id, self._seen_frame, self._seen_job, self._log_next, self.log = job_id, None, (), 0, []
        return self.poll() is not None

    def cancel(self) -> bool:
        """Ask the server to cancel the job (a queued one at once, a running one at its next update)."""
        if self.job_id < 0:
            self.message = "no job to cancel: submit a plan first"
            return False
        status, reply = self.request("POST", f"/api/jobs/{self.job_id}/cancel")
        if self._refused(f"to cancel job {self.job_id}", status, reply):
            return False
        self.poll()
        return True

    def poll(self) -> Update | None:
        """Read the job, its latest progress frame and new log lines; hand each new update to the
        callbacks. Returns the job's record, or None (``message`` says why)."""
        if self.job_id < 0:
            return None
        status, job = self.request("GET", f"/api/jobs/{self.job_id}")
        if self._refused(f"job {self.job_id}", status, job):
            return None
        status, frame = self.request("GET", f"/api/jobs/{self.job_id}/latest")
        if status == 200 and isinstance(frame, dict) and frame != self._seen_frame:
            self._seen_frame = frame
            self._apply_frame(frame)
            self._emit(frame)
        status, lines = self.request("GET", f"/api/jobs/{self.job_id}/log?since={self._log_next}")
        if status == 200 and isinstance(lines, dict) and lines.get("lines"):
            self.log = [*self.log, *lines["lines"]]
            self._log_next = int(lines.get("next", self._log_next))
            self._emit({"type": "log", "job": self.job_id, "lines": lines["lines"]})
        self._apply_job(job)
        return job

    @property
    def finished(self) -> bool:
        """Whether the job has reached a final state (done, failed, cancelled)."""
        return self.state in FINAL_STATES

    # -- following in the background ------------------------------------------------------------
    def follow(self, every_s: float = 1.0) -> None:
        """Poll every ``every_s`` seconds in a background thread until the job finishes, the server
        stops answering, or :meth:`stop`."""
        self.stop()
        self._stop.clear()

        def loop() -> None:
            while not self._stop.is_set():
                if self.poll() is None or self.finished:
                    break
                self._stop.wait(every_s)

        self._thread = threading.Thread(target=loop, name=f"phaser-job-{self.job_id}", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop following (the job itself goes on)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
            self._thread = None

    # -- state -----------------------------------------------------------------------------------
    def _apply_job(self, job: dict) -> None:
        key = (job.get("state"), job.get("iteration"), job.get("reason"))
        self.state = str(job.get("state") or "")
        self.name = str(job.get("name") or self.name)
        if job.get("niter") is not None:
            self.niter = int(job["niter"])
        if job.get("iteration") is not None:
            self.iteration = max(self.iteration, int(job["iteration"]))
        if job.get("error") is not None:
            self.error = job["error"]
        if key != self._seen_job:
            self._seen_job = key
            self._emit({"type": "job", **job})

    def _apply_frame(self, frame: dict) -> None:
        if frame.get("iteration") is not None:
            self.iteration = int(frame["iteration"])
        if frame.get("niter"):
            self.niter = int(frame["niter"])
        self.error = frame.get("error")
        if isinstance(frame.get("errors"), list):
            self.errors = list(frame["errors"])
        self.latest = frame  # last: observers of ``latest`` see the frame's errors and progress

    def _emit(self, update: Update) -> None:
        for callback in list(self.callbacks):
            try:
                callback(update)
            except Exception as exc:  # noqa: BLE001 - a user's callback must not stop the polling
                self.message = f"on_update callback {getattr(callback, '__name__', callback)!r} failed: {exc}"

    def preview_png(self, key: str = "object_phase_png") -> bytes:
        """A preview image of the latest frame (``object_phase_png``, ``probe_png``, ``probe_recip_png``,
        ``object_slices_png``) as PNG bytes; b"" when there is none yet."""
        value = (self.latest or {}).get(key)
        return base64.b64decode(value) if isinstance(value, str) else b""


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw.decode(errors="replace")[:500]


class JobWidget:
    """A plan editor with Submit / Cancel / Follow, the job's state and progress, its previews,
    error history and log. ``model.callbacks`` holds the user's ``on_update`` hooks."""

    def __init__(self, model: JobModel, plan_yaml: str = "", every_s: float = 1.0) -> None:
        import ipywidgets as w

        from phaser.widgets.views import image_widget, titled

        self.model = model
        self.every_s = every_s
        self.plan = w.Textarea(value=plan_yaml, layout=w.Layout(width="520px", height="180px"))
        self.submit_button = w.Button(description="Submit", button_style="primary")
        self.cancel_button = w.Button(description="Cancel", button_style="danger")
        self.refresh_button = w.Button(description="Refresh")
        self.status = w.HTML()
        self.progress = w.IntProgress(value=0, min=0, max=1, description="iterations")
        self.message = w.HTML()
        self.phase = image_widget(b"", 200)
        self.probe = image_widget(b"", 200)
        self.history = w.HTML("no error history yet")
        self.log = w.Textarea(layout=w.Layout(width="520px", height="120px"), disabled=True)
        self.submit_button.on_click(lambda _: self._submit())
        self.cancel_button.on_click(lambda _: model.cancel())
        self.refresh_button.on_click(lambda _: model.poll())
        model.observe(lambda _: self._draw_status(), ["state", "iteration", "niter", "error", "job_id", "message"])
        model.observe(lambda _: self._draw_frame(), "latest")
        model.observe(lambda _: setattr(self.log, "value", "\n".join(model.log[-200:])), "log")
        self._draw_status()
        self.widget = w.VBox(
            [
                w.HTML(f"<b>phaser server</b> {html.escape(model.url)}"),
                w.HBox([self.plan, w.VBox([self.submit_button, self.cancel_button, self.refresh_button])]),
                self.status,
                self.progress,
                self.message,
                w.HBox(
                    [
                        titled("summed object phase", self.phase),
                        titled("probe modes", self.probe),
                        titled("error history", self.history),
                    ]
                ),
                titled("log", self.log),
            ]
        )

    def _submit(self) -> None:
        if self.model.submit(self.plan.value):
            self.model.follow(self.every_s)

    def _draw_status(self) -> None:
        from phaser.widgets.views import message_widget

        m = self.model
        error = f", error {m.error:.4g}" if isinstance(m.error, (int, float)) else ""
        job = f"job {m.job_id} ({html.escape(m.name)}): <b>{html.escape(m.state)}</b>" if m.job_id >= 0 else "no job"
        self.status.value = f"{job}, iteration {m.iteration}/{m.niter}{error}"
        self.progress.max = max(m.niter, 1)
        self.progress.value = min(m.iteration, self.progress.max)
        self.message.value = message_widget(m.message).value if m.message else ""

    def _draw_frame(self) -> None:
        from phaser.widgets.views import plot_png

        self.phase.value = self.model.preview_png("object_phase_png")
        self.probe.value = self.model.preview_png("probe_png")
        errors = [e for e in self.model.errors if e is not None]
        if errors:
            png = plot_png(list(range(1, len(errors) + 1)), errors, "iteration", "error")
            self.history.value = f'<img width="240" src="data:image/png;base64,{base64.b64encode(png).decode()}">'

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def job_widget(
    url: str = "http://127.0.0.1:8000",
    plan_yaml: str = "",
    token: str | None = None,
    job_id: int | None = None,
    on_update: Callable[[Update], Any] | None = None,
    every_s: float = 1.0,
    **model_options: Any,
) -> JobWidget:
    """A job widget on the ``phaser serve`` at ``url``: edit ``plan_yaml`` and press Submit, or
    follow the existing job ``job_id``. ``on_update(update_dict)`` is called with each new update
    (``type`` "job": the job's record; "update": a worker's progress frame; "log": new lines).
    A server that does not answer shows a message naming ``url``."""
    model = JobModel(url, token=token, on_update=on_update, **model_options)
    if job_id is not None:
        model.attach(job_id)
        if not model.finished and not model.message:
            model.follow(every_s)
    else:
        status, _ = model.request("GET", "/api/health")
        if status != 200:
            model._refused("the health check", status, _)
    return JobWidget(model, plan_yaml, every_s)

// phaser serve: the job list (refreshed every few seconds) and the live view of one job (its
// WebSocket's updates: previews, error plot, iteration counter; its log tail; cancel and delete).
"use strict";

const REFRESH_MS = 2000;
const SOCKET_RETRY_MS = 2000;
const LOG_TAIL_LINES = 500;
const PREVIEW_HEIGHT_PX = { object: 240, slices: 120, probe: 160, probeRecip: 160 };
const TERMINAL = new Set(["done", "failed", "cancelled"]);
const SOCKET_CLOSE_FORBIDDEN = 4403; // the server's close codes for a job socket
const SOCKET_CLOSE_NO_JOB = 4404;

// ---------------------------------------------------------------- job list

const jobs = { byId: new Map(), rows: new Map(), refreshing: false };

function sortJobs(list) {
  return list.slice().sort((a, b) => {
    const ta = toDate(a.created);
    const tb = toDate(b.created);
    if (ta && tb && ta.getTime() !== tb.getTime()) return tb - ta;
    return String(b.id).localeCompare(String(a.id), undefined, { numeric: true });
  });
}

function makeRow(id) {
  const row = el("tr");
  const nameButton = el("button", { className: "link", type: "button" });
  nameButton.addEventListener("click", () => selectJob(id));
  row.appendChild(el("td", { className: "name" }, [nameButton]));
  row.appendChild(el("td", {}, [el("span", { className: "state" })]));
  for (let i = 0; i < 3; i++) row.appendChild(el("td"));
  row.dataset.jobId = id;
  return row;
}

function fillRow(row, job) {
  const cells = row.children;
  const button = cells[0].firstChild;
  button.textContent = job.name || `job ${job.id}`;
  button.setAttribute("aria-label", `watch ${job.name || "job"} (${job.state})`);
  stateBadge(cells[1].firstChild, job.state);
  cells[2].textContent = progressText(job.iteration, job.niter) + (job.kind === "study" ? " trials" : "");
  cells[3].textContent = formatTime(job.created);
  cells[4].textContent = job.worker ? String(job.worker) : "–";
  row.classList.toggle("selected", String(job.id) === live.id);
  if (String(job.id) === live.id) row.setAttribute("aria-current", "true");
  else row.removeAttribute("aria-current");
}

function renderJobs(list) {
  const body = $("jobs-body");
  const seen = new Set();
  const sorted = sortJobs(list);
  sorted.forEach((job, index) => {
    const id = String(job.id);
    seen.add(id);
    let row = jobs.rows.get(id);
    if (!row) {
      row = makeRow(id);
      jobs.rows.set(id, row);
    }
    fillRow(row, job);
    // move a row only when it is out of place: moving the focused row would lose the focus
    if (body.children[index] !== row) body.insertBefore(row, body.children[index] || null);
  });
  for (const [id, row] of jobs.rows) {
    if (!seen.has(id)) {
      row.remove();
      jobs.rows.delete(id);
    }
  }
  jobs.byId = new Map(sorted.map((job) => [String(job.id), job]));
  $("jobs-empty").hidden = sorted.length > 0;
}

function upsertJob(job) {
  const id = String(job.id);
  const merged = Object.assign({}, jobs.byId.get(id) || {}, job);
  jobs.byId.set(id, merged);
  renderJobs([...jobs.byId.values()]);
  return merged;
}

async function refreshJobs() {
  if (jobs.refreshing) return;
  jobs.refreshing = true;
  const status = $("server-status");
  try {
    const response = await api("GET", "/api/jobs");
    if (!response.ok) {
      setMessage(status, reasonOf(response), "bad");
      return;
    }
    renderJobs((response.data && response.data.jobs) || []);
    setMessage(status, `${server.version ? "phaser " + server.version + " · " : ""}updated ${new Date().toLocaleTimeString()}`, "");
    if (live.id !== null) {
      const job = jobs.byId.get(live.id);
      if (job) applyJob(job);
      else if (!live.deleting) showNoJob("This job is gone from the server.");
    }
  } catch (err) {
    setMessage(status, "server unreachable; retrying…", "bad");
  } finally {
    jobs.refreshing = false;
  }
}

const server = { version: null };

async function checkHealth() {
  try {
    const response = await api("GET", "/api/health");
    if (response.ok && response.data) server.version = response.data.version || null;
    else setMessage($("server-status"), reasonOf(response), "bad");
  } catch (err) {
    setMessage($("server-status"), "server unreachable; retrying…", "bad");
  }
}

// ---------------------------------------------------------------- live view of one job

const live = {
  id: null,
  job: null,
  socket: null,
  socketTimer: null,
  errors: [], // [iteration, error] points
  hasUpdate: false, // a worker's update has been shown
  logNext: 0,
  logBusy: false,
  logAgain: false,
  deleting: false,
  outputsListed: null, // the job whose outputs are listed
  objectUrls: [], // thumbnails' blob: URLs, revoked when the view changes
};

const PREVIEWS = [
  { key: "object_phase_png", img: "img-object", placeholder: "ph-object", label: "Summed object phase", height: PREVIEW_HEIGHT_PX.object },
  { key: "object_slices_png", img: "img-slices", placeholder: "ph-slices", label: "Object phase of each slice", height: PREVIEW_HEIGHT_PX.slices },
  { key: "probe_png", img: "img-probe", placeholder: "ph-probe", label: "Probe modes in real space", height: PREVIEW_HEIGHT_PX.probe },
  { key: "probe_recip_png", img: "img-probe-recip", placeholder: "ph-probe-recip", label: "Probe modes in reciprocal space", height: PREVIEW_HEIGHT_PX.probeRecip },
];

function resetLiveView() {
  $("fig-slices").hidden = true;
  applyStudy(null, null);
  $("study-progress").textContent = "trials – / –";
  $("study-best").textContent = "";
  live.errors = [];
  live.hasUpdate = false;
  live.logNext = 0;
  live.job = null;
  $("log-tail").textContent = "";
  $("live-iteration").textContent = "iteration – / –";
  $("live-engine").textContent = "";
  $("live-socket").textContent = "";
  $("live-error").hidden = true;
  $("live-out-dir").textContent = "–";
  $("list-outputs").hidden = true;
  $("copy-out-dir").hidden = true;
  clearOutputs();
  live.outputsListed = null;
  setMessage($("live-message"), "", "");
  for (const preview of PREVIEWS) {
    const img = $(preview.img);
    img.hidden = true;
    img.removeAttribute("src");
    img.alt = `${preview.label} (no image yet)`;
    $(preview.placeholder).hidden = false;
  }
  redrawErrors();
}

function showNoJob(text) {
  closeSocket();
  live.id = null;
  $("live-content").hidden = true;
  $("live-empty").hidden = false;
  $("live-empty").textContent = text || "Choose a job in the list to watch it.";
  if (window.location.hash) history.replaceState(null, "", window.location.pathname + window.location.search);
  renderJobs([...jobs.byId.values()]);
}

async function selectJob(id) {
  if (live.id === id) return;
  closeSocket();
  live.id = id;
  live.deleting = false;
  resetLiveView();
  $("live-empty").hidden = true;
  $("live-content").hidden = false;
  history.replaceState(null, "", window.location.pathname + window.location.search + "#job=" + encodeURIComponent(id));
  const known = jobs.byId.get(id);
  if (known) applyJob(known);
  renderJobs([...jobs.byId.values()]);

  openSocket(id);
  const [detail, latest] = await Promise.all([
    api("GET", `/api/jobs/${encodeURIComponent(id)}`).catch(() => null),
    api("GET", `/api/jobs/${encodeURIComponent(id)}/latest`).catch(() => null),
  ]);
  if (live.id !== id) return;
  if (detail && detail.ok && detail.data) applyJob(upsertJob(detail.data));
  else if (detail && detail.status === 404) return showNoJob("This job is gone from the server.");
  if (latest && latest.ok && latest.data) applyUpdate(latest.data);
  fetchLog();
}

function applyJob(job) {
  if (String(job.id) !== live.id) return;
  live.job = Object.assign({}, live.job || {}, job);
  const current = live.job;
  $("live-name").textContent = current.name || `job ${current.id}`;
  stateBadge($("live-state"), current.state);
  // once a worker's updates arrive they own the counter: the job list's copy of it can lag behind
  if (current.iteration !== undefined && current.iteration !== null && (!live.hasUpdate || current.state !== "running")) {
    const unit = current.kind === "study" ? "trial" : "iteration";
    $("live-iteration").textContent = `${unit} ${progressText(current.iteration, current.niter)}`;
  }
  applyStudy(current, null);
  const failure = [current.error, current.reason].filter((v) => typeof v === "string" && v).join(" — ");
  $("live-error").hidden = !failure;
  $("live-error").textContent = failure ? `${current.state === "failed" ? "failed" : "reason"}: ${failure}` : "";
  const terminal = TERMINAL.has(current.state);
  const outDir = current.out_dir ? String(current.out_dir) : "";
  $("live-out-dir").textContent = outDir || (terminal ? "none" : "reported when the job ends");
  $("list-outputs").hidden = !outDir;
  // a finished job's outputs are listed once, as links (and thumbnails of its PNG figures)
  if (terminal && outDir && live.outputsListed !== live.id) {
    live.outputsListed = live.id;
    listOutputs();
  }
  $("copy-out-dir").hidden = !outDir || !navigator.clipboard;
  $("cancel-button").disabled = terminal;
  $("delete-button").disabled = current.state === "running";
  if (terminal) {
    $("live-socket").textContent = "";
    if (live.socketTimer) clearTimeout(live.socketTimer);
  }
}

function applyUpdate(update) {
  live.hasUpdate = true;
  if (update.kind === "study") {
    live.job = Object.assign({ kind: "study" }, live.job || {});
    applyStudy(live.job, update);
  }
  if (update.iteration !== undefined && update.iteration !== null) {
    const niter = update.niter ?? (live.job && live.job.niter);
    const unit = update.kind === "study" ? "trial" : "iteration";
    $("live-iteration").textContent = `${unit} ${progressText(update.iteration, niter)}`;
    if (live.id !== null) {
      const job = jobs.byId.get(live.id);
      if (job && !TERMINAL.has(job.state)) upsertJob({ id: job.id, iteration: update.iteration, niter });
    }
  }
  $("live-engine").textContent = engineText(update);
  // several slices: their phases side by side; several probe modes: side by side, mode 0 first
  const nslices = Number(update.nslices);
  if (Number.isFinite(nslices)) {
    $("fig-slices").hidden = nslices < 2;
    $("cap-slices").textContent = `Object phase of each of the ${nslices} slices (one scale)`;
  }
  const nmodes = Number(update.nmodes);
  if (Number.isFinite(nmodes)) {
    const modes = nmodes > 1 ? `${nmodes} probe modes (left to right)` : "Probe";
    $("cap-probe").textContent = `${modes}, real space`;
    $("cap-probe-recip").textContent = `${modes}, reciprocal space`;
  }
  mergeErrors(update);
  for (const preview of PREVIEWS) {
    const data = update[preview.key];
    if (typeof data !== "string" || !/^[A-Za-z0-9+/=\s]+$/.test(data)) continue;
    const img = $(preview.img);
    img.onload = () => scalePreview(img, preview.height);
    img.src = "data:image/png;base64," + data.replace(/\s/g, "");
    img.alt = `${preview.label} at iteration ${update.iteration ?? "?"}`;
    img.hidden = false;
    $(preview.placeholder).hidden = true;
  }
}

/** "engine 0 (gradient): 12 / 20", from what the update holds. */
function engineText(update) {
  const known = (v) => v !== undefined && v !== null && v !== "";
  let engine = update.engine;
  if (engine && typeof engine === "object") engine = engine.type;
  const parts = [];
  if (known(engine)) parts.push(`engine ${engine}`);
  if (known(update.engine_type) && update.engine_type !== engine) parts.push(`(${update.engine_type})`);
  let text = parts.join(" ");
  if (known(update.engine_iteration)) {
    text += `${text ? ": " : ""}${progressText(update.engine_iteration, update.engine_niter)}`;
  }
  return text;
}

function isStudy() {
  return Boolean(live.job && live.job.kind === "study");
}

function redrawErrors() {
  const labels = isStudy() ? { x: "trial", y: "objective" } : { x: "iteration", y: "error" };
  drawErrorPlot($("error-plot"), live.errors, labels);
}

/** A study job: trials done / n_trials, the best value, the last trial, the dashboard command. */
function applyStudy(job, update) {
  const study = job && job.kind === "study";
  $("live-study").hidden = !study;
  $("live-images").hidden = study;
  $("plot-caption").textContent = study ? "Objective value of each finished trial" : "Error against iteration";
  if (!study) return;
  const info = job.info || {};
  $("study-dashboard").textContent = info.dashboard || "phaser-opt dashboard STUDY.yaml";
  if ($("open-dashboard").dataset.job !== String(job.id)) {
    $("open-dashboard").dataset.job = String(job.id);
    $("dashboard-link").hidden = true; // another job's dashboard
  }
  if (!update) return;
  $("study-progress").textContent = `trials ${progressText(update.iteration, update.niter ?? info.n_trials)} done`;
  const parts = [];
  if (Number.isFinite(update.best)) parts.push(`best ${formatNumber(update.best)} (trial ${update.best_trial})`);
  if (update.trial !== null && update.trial !== undefined) {
    const value = Number.isFinite(update.value) ? formatNumber(update.value) : update.trial_state || "no value";
    parts.push(`last: trial ${update.trial}, ${value}`);
  }
  $("study-best").textContent = parts.join(" · ") || "no finished trial yet";
}

/** Start (once, on the server) the study's optuna-dashboard and open it in a new tab. */
async function openDashboard() {
  const id = live.id;
  if (id === null) return;
  const tab = window.open("", "_blank"); // opened now, while the click still allows a pop-up
  const response = await api("POST", `/api/jobs/${encodeURIComponent(id)}/dashboard`);
  if (!response.ok || !response.data || !response.data.url) {
    if (tab) tab.close();
    setMessage($("live-message"), "no dashboard: " + reasonOf(response), "bad");
    return;
  }
  const url = response.data.url;
  const link = $("dashboard-link");
  link.href = url;
  link.textContent = url;
  link.hidden = false;
  if (tab) {
    tab.opener = null;
    tab.location.href = url;
  } else {
    setMessage($("live-message"), "the browser blocked the new tab: follow the link", "bad");
  }
}

/** Integer scale-up (crisp pixels) to about ``height`` pixels, narrower when the panel is. */
function scalePreview(img, height) {
  const scale = Math.max(1, Math.floor(height / Math.max(1, img.naturalHeight)));
  img.style.width = `${img.naturalWidth * scale}px`;
}

function toNumber(value) {
  return typeof value === "number" ? value : typeof value === "string" && value ? Number(value) : NaN;
}

function mergeErrors(update) {
  const history = Array.isArray(update.errors) ? update.errors : null;
  if (history && history.length) {
    const last = Number(update.iteration ?? history.length);
    live.errors = history
      .map((entry, k) => {
        // null stands for a non-finite error (JSON has no NaN): left out of the plot
        if (Array.isArray(entry)) return [toNumber(entry[0]), toNumber(entry[1])];
        if (entry && typeof entry === "object") return [toNumber(entry.iteration), toNumber(entry.error)];
        return [last - history.length + 1 + k, toNumber(entry)]; // the last value is this iteration's
      })
      .filter((point) => Number.isFinite(point[0]) && Number.isFinite(point[1]));
  } else if (typeof update.error === "number" && Number.isFinite(update.error) && update.iteration !== undefined) {
    const iteration = Number(update.iteration);
    live.errors = live.errors.filter((point) => point[0] !== iteration);
    live.errors.push([iteration, update.error]);
    live.errors.sort((a, b) => a[0] - b[0]);
  }
  redrawErrors();
}

// ---- the socket: updates, job changes and log hints for the selected job

function openSocket(id) {
  closeSocket();
  let socket;
  try {
    socket = new WebSocket(socketUrl(id));
  } catch (err) {
    $("live-socket").textContent = "· live updates unavailable";
    return;
  }
  live.socket = socket;
  $("live-socket").textContent = "· connecting…";
  socket.onopen = () => {
    if (live.socket === socket) $("live-socket").textContent = "· live";
  };
  socket.onmessage = (event) => {
    if (live.socket !== socket) return;
    let message;
    try {
      message = JSON.parse(event.data);
    } catch (err) {
      return;
    }
    if (!message || typeof message !== "object") return;
    if (message.type === "update") applyUpdate(message);
    else if (message.type === "job") {
      const job = Object.assign({}, message);
      delete job.type;
      if (job.id === undefined) job.id = id;
      applyJob(upsertJob(job));
      if (TERMINAL.has(job.state)) fetchLog();
    } else if (message.type === "log") fetchLog();
  };
  socket.onclose = (event) => {
    if (live.socket !== socket) return;
    live.socket = null;
    const job = live.job || jobs.byId.get(id);
    if (event.code === SOCKET_CLOSE_FORBIDDEN || event.code === SOCKET_CLOSE_NO_JOB) {
      // retrying cannot help: say why (the server's reason), the job list still refreshes
      $("live-socket").textContent =
        event.code === SOCKET_CLOSE_NO_JOB
          ? "· no such job"
          : `· live updates refused (${event.reason || "token"}): open the page with ?token=…`;
    } else if (live.id === id && !(job && TERMINAL.has(job.state))) {
      $("live-socket").textContent = "· reconnecting…";
      live.socketTimer = setTimeout(() => {
        if (live.id === id) openSocket(id);
      }, SOCKET_RETRY_MS);
    } else {
      $("live-socket").textContent = "";
    }
  };
}

function closeSocket() {
  if (live.socketTimer) clearTimeout(live.socketTimer);
  live.socketTimer = null;
  const socket = live.socket;
  live.socket = null;
  if (socket) socket.close();
}

// ---- the log tail: read from the server's log with ?since, so no line is shown twice

async function fetchLog() {
  const id = live.id;
  if (id === null) return;
  if (live.logBusy) {
    live.logAgain = true;
    return;
  }
  live.logBusy = true;
  try {
    do {
      live.logAgain = false;
      const response = await api("GET", `/api/jobs/${encodeURIComponent(id)}/log?since=${live.logNext}`);
      if (live.id !== id || !response.ok || !response.data) break;
      appendLog(response.data.lines || []);
      if (Number.isFinite(Number(response.data.next))) live.logNext = Number(response.data.next);
    } while (live.logAgain);
  } catch (err) {
    // the next refresh tries again
  } finally {
    live.logBusy = false;
  }
}

function appendLog(lines) {
  if (!lines.length) return;
  const pre = $("log-tail");
  const atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 24;
  const all = (pre.textContent ? pre.textContent.split("\n") : []).concat(lines.map(String));
  pre.textContent = all.slice(-LOG_TAIL_LINES).join("\n");
  if (atBottom) pre.scrollTop = pre.scrollHeight;
}

// ---- actions

async function cancelJob() {
  if (live.id === null) return;
  const message = $("live-message");
  try {
    const response = await api("POST", `/api/jobs/${encodeURIComponent(live.id)}/cancel`);
    if (response.ok) {
      setMessage(message, "cancel requested", "good");
      if (response.data && response.data.id !== undefined) applyJob(upsertJob(response.data));
    } else setMessage(message, "cannot cancel: " + reasonOf(response), "bad");
  } catch (err) {
    setMessage(message, "cannot reach the server", "bad");
  }
  refreshJobs();
}

async function deleteJob() {
  if (live.id === null) return;
  const id = live.id;
  const name = (live.job && live.job.name) || id;
  if (!window.confirm(`Delete the job ${name} and its log? Its output files stay on disk.`)) return;
  const message = $("live-message");
  live.deleting = true;
  try {
    const response = await api("DELETE", `/api/jobs/${encodeURIComponent(id)}`);
    if (response.ok) {
      jobs.byId.delete(id);
      showNoJob(`Deleted ${name}.`);
    } else if (response.status === 409) {
      setMessage(message, "cannot delete a running job: cancel it first", "bad");
    } else {
      setMessage(message, "cannot delete: " + reasonOf(response), "bad");
    }
  } catch (err) {
    setMessage(message, "cannot reach the server", "bad");
  } finally {
    live.deleting = false;
  }
  refreshJobs();
}

async function copyOutDir() {
  const dir = live.job && live.job.out_dir ? String(live.job.out_dir) : "";
  try {
    await navigator.clipboard.writeText(dir);
    setMessage($("live-message"), "output folder copied", "good");
  } catch (err) {
    setMessage($("live-message"), "cannot copy here: select the folder's name instead", "bad");
  }
}

const MAX_THUMBNAILS = 12;

function clearOutputs() {
  for (const url of live.objectUrls || []) URL.revokeObjectURL(url);
  live.objectUrls = [];
  $("output-entries").replaceChildren();
  $("output-thumbs").replaceChildren();
}

function outputPath(id, name) {
  const encoded = String(name).split("/").map(encodeURIComponent).join("/");
  return `/api/jobs/${encodeURIComponent(id)}/outputs/${encoded}`;
}

/** One output file as a Blob, fetched with the token (a plain link cannot send the header). */
async function fetchOutput(id, name) {
  const headers = {};
  if (TOKEN) headers["Authorization"] = "Bearer " + TOKEN;
  const response = await fetch(outputPath(id, name), { headers, cache: "no-store" });
  if (!response.ok) {
    let data = null;
    try {
      data = await response.json();
    } catch (err) {
      data = null;
    }
    throw new Error(reasonOf({ status: response.status, ok: false, data }));
  }
  return response.blob();
}

async function saveOutput(id, name) {
  try {
    const url = URL.createObjectURL(await fetchOutput(id, name));
    const link = el("a");
    link.href = url;
    link.download = String(name).split("/").pop();
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  } catch (err) {
    setMessage($("live-message"), `cannot download ${name}: ${err.message}`, "bad");
  }
}

async function showThumbnail(id, name) {
  try {
    const url = URL.createObjectURL(await fetchOutput(id, name));
    if (live.id !== id) return URL.revokeObjectURL(url);
    live.objectUrls.push(url);
    const img = el("img");
    img.src = url;
    img.alt = String(name);
    img.title = String(name);
    img.loading = "lazy";
    const figure = el("figure", { className: "thumb" }, [img, el("figcaption", { text: name })]);
    $("output-thumbs").appendChild(figure);
  } catch (err) {
    // a thumbnail is a nicety: its link is still listed
  }
}

async function listOutputs() {
  const id = live.id;
  if (id === null) return;
  const list = $("output-entries");
  list.replaceChildren(el("li", { text: "loading…" }));
  const response = await api("GET", `/api/jobs/${encodeURIComponent(id)}/outputs`).catch((err) => ({
    status: 0, ok: false, data: { reason: err.message },
  }));
  if (live.id !== id) return;
  clearOutputs();
  if (!response.ok || !response.data) {
    list.appendChild(el("li", { text: "cannot list the outputs: " + reasonOf(response) }));
    return;
  }
  const files = Array.isArray(response.data.files) ? response.data.files : [];
  if (!response.data.downloadable && response.data.reason) {
    list.appendChild(el("li", { className: "note", text: `(${response.data.reason})` }));
  }
  let thumbs = 0;
  for (const file of files) {
    const name = String(file.name);
    const item = el("li");
    if (response.data.downloadable) {
      const link = el("a", { text: name });
      link.href = outputPath(id, name);
      link.addEventListener("click", (event) => {
        if (!TOKEN) return; // the plain link works without a token
        event.preventDefault();
        saveOutput(id, name);
      });
      item.appendChild(link);
      if (/\.png$/i.test(name) && thumbs < MAX_THUMBNAILS) {
        thumbs += 1;
        showThumbnail(id, name);
      }
    } else item.textContent = name;
    list.appendChild(item);
  }
  if (!files.length) list.appendChild(el("li", { text: "(no files yet)" }));
}

// ---------------------------------------------------------------- start

function start() {
  $("plan-text").addEventListener("input", () => scheduleValidation());
  $("plan-upload").addEventListener("change", uploadPlan);
  $("plan-text").addEventListener("dragover", (event) => event.preventDefault());
  $("plan-text").addEventListener("drop", dropPlan);
  $("browse-button").addEventListener("click", togglePicker);
  $("clear-path").addEventListener("click", () => {
    usePath(null);
    scheduleValidation(0);
    $("plan-text").focus();
  });
  $("submit-button").addEventListener("click", submitPlan);
  $("cancel-button").addEventListener("click", cancelJob);
  $("delete-button").addEventListener("click", deleteJob);
  $("list-outputs").addEventListener("click", listOutputs);
  $("copy-out-dir").addEventListener("click", copyOutDir);
  $("open-dashboard").addEventListener("click", openDashboard);
  $("copy-dashboard").addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText($("study-dashboard").textContent);
      setMessage($("live-message"), "dashboard command copied", "good");
    } catch (err) {
      setMessage($("live-message"), "cannot copy here: select the command instead", "bad");
    }
  });
  window.addEventListener("resize", redrawErrors);

  redrawErrors();
  checkHealth().then(refreshJobs).then(() => {
    const match = /^#job=(.+)$/.exec(window.location.hash);
    if (match) selectJob(decodeURIComponent(match[1]));
  });
  setInterval(() => {
    if (document.hidden) return; // a background tab does not poll
    refreshJobs();
    const job = live.id !== null ? jobs.byId.get(live.id) : null;
    if (job && job.state === "running") fetchLog();
  }, REFRESH_MS);
  if ($("plan-text").value.trim()) scheduleValidation(0);
}

document.addEventListener("DOMContentLoaded", start);

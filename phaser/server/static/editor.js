// phaser serve: the plan editor (paste, upload, drop, or a file picked under the server's root),
// validated as the user types, and the submit button.
"use strict";

const VALIDATE_DELAY_MS = 400;

// ---------------------------------------------------------------- plan editor and validation

const editor = {
  path: null, // a server-side plan chosen in the file picker, else the textarea's text
  valid: false,
  timer: null,
  sequence: 0, // answers to older validations are dropped
};

function currentPlanBody() {
  if (editor.path !== null) return { path: editor.path };
  const text = $("plan-text").value;
  return text.trim() ? { plan_yaml: text } : null;
}

function updateSubmitButton() {
  $("submit-button").disabled = !editor.valid;
}

function setValidationStatus(text, kind) {
  const status = $("validation-status");
  setMessage(status, text, kind);
  $("plan-text").setAttribute("aria-invalid", kind === "bad" ? "true" : "false");
}

/** Problems come as [["field.path", "message"], ...]; other shapes are shown as well as they can be. */
function showProblems(problems) {
  const list = $("validation-problems");
  list.replaceChildren();
  for (const problem of problems || []) {
    let field = "";
    let message = "";
    if (Array.isArray(problem)) {
      [field, message] = [problem[0], problem.slice(1).join(" ")];
    } else if (problem && typeof problem === "object") {
      field = problem.field ?? problem.path ?? problem.loc ?? "";
      message = problem.message ?? problem.msg ?? "";
    } else {
      message = problem;
    }
    const item = el("li");
    if (field !== "" && field !== null) {
      item.appendChild(el("span", { className: "field", text: Array.isArray(field) ? field.join(".") : field }));
      item.appendChild(document.createTextNode(": "));
    }
    item.appendChild(document.createTextNode(String(message)));
    list.appendChild(item);
  }
}

function scheduleValidation(delay = VALIDATE_DELAY_MS) {
  editor.valid = false;
  editor.sequence += 1; // an answer already on its way is for an older text
  updateSubmitButton();
  clearTimeout(editor.timer);
  if (currentPlanBody() === null) {
    setValidationStatus("Paste or type a plan.", "");
    showProblems([]);
    return;
  }
  setValidationStatus("checking…", "");
  editor.timer = setTimeout(validateNow, delay);
}

async function validateNow() {
  const body = currentPlanBody();
  if (body === null) return;
  const sequence = ++editor.sequence;
  let response;
  try {
    response = await api("POST", "/api/validate", body);
  } catch (err) {
    if (sequence === editor.sequence) setValidationStatus("cannot reach the server to check the plan", "bad");
    return;
  }
  if (sequence !== editor.sequence) return;
  const data = response.data || {};
  if (response.ok && data.valid) {
    const names = (data.plans || []).map((plan) => plan && plan.name).filter(Boolean);
    const count = (data.plans || []).length;
    const study = data.kind === "study";
    let text = study ? "valid study" : "valid";
    if (count > 1) text += `: ${count} plans`;
    if (names.length) text += ` (${names.join(", ")})`;
    if (Number.isFinite(data.niter)) text += study ? `, ${data.niter} trials` : `, ${data.niter} iterations`;
    setValidationStatus(text, "good");
    showProblems([]);
    editor.valid = true;
  } else if (response.status === 422) {
    const problems = data.problems || [];
    setValidationStatus(`${problems.length} problem${problems.length === 1 ? "" : "s"}`, "bad");
    showProblems(problems);
  } else {
    setValidationStatus("refused: " + reasonOf(response), "bad");
    showProblems([]);
  }
  updateSubmitButton();
}

async function submitPlan() {
  const body = currentPlanBody();
  if (body === null || !editor.valid) return;
  const button = $("submit-button");
  const message = $("submit-message");
  button.disabled = true;
  setMessage(message, "submitting…", "");
  let response;
  try {
    response = await api("POST", "/api/jobs", body);
  } catch (err) {
    setMessage(message, "cannot reach the server", "bad");
    updateSubmitButton();
    return;
  }
  const data = response.data || {};
  if (response.status === 201 || response.ok) {
    setMessage(message, `submitted ${data.name || "job"} (${data.id}), ${data.state || "queued"}`, "good");
    await refreshJobs();
    if (data.id !== undefined) selectJob(String(data.id));
  } else if (response.status === 422) {
    setMessage(message, "not submitted: the plan has problems", "bad");
    setValidationStatus(`${(data.problems || []).length} problems`, "bad");
    showProblems(data.problems || []);
    editor.valid = false;
  } else {
    setMessage(message, "not submitted: " + reasonOf(response), "bad");
  }
  updateSubmitButton();
}

async function loadPlanFile(file) {
  const text = await file.text();
  usePath(null);
  $("plan-text").value = text;
  setMessage($("submit-message"), `loaded ${file.name} (${text.length} characters)`, "");
  scheduleValidation(0);
}

async function uploadPlan(event) {
  const file = event.target.files && event.target.files[0];
  if (!file) return;
  await loadPlanFile(file);
  event.target.value = ""; // the same file can be loaded again
}

function dropPlan(event) {
  const file = event.dataTransfer && event.dataTransfer.files && event.dataTransfer.files[0];
  if (!file) return; // dropped text: the textarea's own handling
  event.preventDefault();
  loadPlanFile(file);
}

// ---------------------------------------------------------------- file picker under the server's root

const picker = { dir: "" };

function joinPath(dir, name) {
  return dir ? `${dir.replace(/\/+$/, "")}/${name}` : name;
}

function parentOf(dir) {
  const parts = dir.split("/").filter(Boolean);
  parts.pop();
  return parts.join("/");
}

async function listFiles(dir) {
  const response = await api("GET", "/api/files?dir=" + encodeURIComponent(dir));
  if (!response.ok) throw new Error(reasonOf(response));
  return response.data || { dir, entries: [] };
}

async function openDir(dir) {
  const list = $("picker-entries");
  const message = $("picker-message");
  setMessage(message, "loading…", "");
  let listing;
  try {
    listing = await listFiles(dir);
  } catch (err) {
    setMessage(message, "cannot list this folder: " + err.message, "bad");
    return;
  }
  picker.dir = typeof listing.dir === "string" ? listing.dir.replace(/^\.\/?$/, "") : dir;
  $("picker-dir").textContent = "/" + picker.dir;
  list.replaceChildren();
  if (picker.dir) {
    const up = el("button", { className: "link", type: "button", text: "../ (up)" });
    up.addEventListener("click", () => openDir(parentOf(picker.dir)));
    list.appendChild(el("li", {}, [up]));
  }
  const entries = (listing.entries || []).slice().sort(
    (a, b) => Number(b.is_dir) - Number(a.is_dir) || String(a.name).localeCompare(String(b.name)));
  for (const entry of entries) {
    const name = String(entry.name);
    const path = joinPath(picker.dir, name);
    let item;
    if (entry.is_dir) {
      const button = el("button", { className: "link", type: "button", text: name + "/" });
      button.addEventListener("click", () => openDir(path));
      item = el("li", {}, [button]);
    } else if (/\.ya?ml$/i.test(name)) {
      const button = el("button", { className: "link", type: "button", text: name, title: "use this plan" });
      button.addEventListener("click", () => {
        usePath(path);
        scheduleValidation(0);
      });
      item = el("li", {}, [button]);
    } else {
      item = el("li", { text: name });
    }
    list.appendChild(item);
  }
  setMessage(message, entries.length ? "" : "(empty folder)", "");
}

function togglePicker() {
  const panel = $("file-picker");
  const opening = panel.hidden;
  panel.hidden = !opening;
  $("browse-button").setAttribute("aria-expanded", String(opening));
  if (opening) openDir(picker.dir);
}

function usePath(path) {
  editor.path = path;
  $("selected-path").hidden = path === null;
  $("selected-path-name").textContent = path === null ? "" : path;
  $("plan-text").disabled = path !== null;
}

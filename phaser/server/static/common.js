// phaser serve: what every part of the page shares: the token, requests to the API, small DOM
// helpers. Plain JavaScript, no build step; the page's scripts share one global scope, loaded in
// order (common, plot, editor, app). Everything from the server is inserted with textContent
// (or as an image's data: URL), never as HTML.
"use strict";

const TOKEN_KEY = "phaser-serve-token";

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------- token and requests

function readToken() {
  const params = new URLSearchParams(window.location.search);
  const fromUrl = params.get("token");
  let token = fromUrl || "";
  try {
    if (fromUrl) sessionStorage.setItem(TOKEN_KEY, fromUrl);
    token = sessionStorage.getItem(TOKEN_KEY) || token;
  } catch (err) {
    // storage disabled: keep the token in memory only
  }
  if (fromUrl) {
    // keep the token out of the address bar, the history and screenshots
    params.delete("token");
    const query = params.toString();
    history.replaceState(null, "", window.location.pathname + (query ? "?" + query : "") + window.location.hash);
  }
  return token;
}

const TOKEN = readToken();

/** fetch() with the token; returns {status, ok, data} where data is the parsed JSON or null. */
async function api(method, path, body) {
  const headers = {};
  if (TOKEN) headers["Authorization"] = "Bearer " + TOKEN;
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  let data = null;
  try {
    data = await response.json();
  } catch (err) {
    data = null;
  }
  return { status: response.status, ok: response.ok, data };
}

function socketUrl(jobId) {
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  let url = `${scheme}//${window.location.host}/ws/jobs/${encodeURIComponent(jobId)}`;
  if (TOKEN) url += "?token=" + encodeURIComponent(TOKEN);
  return url;
}

/** Whether a response is the server's refusal of a missing or wrong token (403 with that reason). */
function isTokenRefusal(response) {
  const reason = response.data && typeof response.data.reason === "string" ? response.data.reason : "";
  return response.status === 403 && /^(missing|wrong) token/.test(reason);
}

/** The server's reason for a refusal, as one line of text. */
function reasonOf(response) {
  const data = response.data;
  // a token refusal is a 403 whose reason starts "missing token" or "wrong token"; the page cannot
  // send a header the user types: say how to give the page the token
  if (isTokenRefusal(response)) {
    return TOKEN
      ? "the token is not accepted (wrong token): open this page as /?token=<the server's token>"
      : "this server needs a token (missing token): open this page as /?token=<the server's token>";
  }
  if (data && typeof data === "object") {
    for (const key of ["reason", "detail", "error", "message"]) {
      if (typeof data[key] === "string" && data[key]) return data[key];
    }
  }
  if (response.status === 413) return "the plan is too large for this server";
  return `the server answered ${response.status}`;
}

// ---------------------------------------------------------------- small helpers

function el(tag, options = {}, children = []) {
  const node = document.createElement(tag);
  if (options.className) node.className = options.className;
  if (options.text !== undefined) node.textContent = String(options.text);
  if (options.type) node.type = options.type;
  if (options.title) node.title = options.title;
  for (const child of children) node.appendChild(child);
  return node;
}

function setMessage(node, text, kind) {
  node.textContent = text || "";
  node.classList.toggle("bad", kind === "bad");
  node.classList.toggle("good", kind === "good");
}

function toDate(value) {
  if (value === null || value === undefined || value === "") return null;
  let number = typeof value === "number" ? value : Number(value);
  if (Number.isFinite(number)) return new Date(number < 1e12 ? number * 1000 : number);
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? null : date;
}

function formatTime(value) {
  const date = toDate(value);
  if (!date) return "–";
  const sameDay = date.toDateString() === new Date().toDateString();
  return sameDay ? date.toLocaleTimeString() : date.toLocaleString();
}

function formatNumber(value) {
  if (!Number.isFinite(value)) return String(value);
  const magnitude = Math.abs(value);
  if (magnitude !== 0 && (magnitude >= 1e4 || magnitude < 1e-3)) return value.toExponential(1);
  return String(Number(value.toPrecision(3)));
}

function progressText(iteration, niter) {
  const known = (v) => v !== null && v !== undefined && v !== "";
  if (!known(iteration) && !known(niter)) return "–";
  return `${known(iteration) ? iteration : "–"} / ${known(niter) ? niter : "–"}`;
}

function stateBadge(node, state) {
  const text = state ? String(state) : "unknown";
  node.textContent = text;
  node.className = "state state-" + text.replace(/[^a-z]/g, "");
}

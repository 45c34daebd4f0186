// phaser serve: the error-vs-iteration plot on a <canvas> (linear axes, or a log error axis when
// the errors span more than a factor 20). Depends on nothing but formatNumber from common.js.
"use strict";

function niceStep(range, count) {
  const raw = range / Math.max(1, count);
  const power = Math.pow(10, Math.floor(Math.log10(raw)));
  const fraction = raw / power;
  return (fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10) * power;
}

function linearTicks(lo, hi, count) {
  if (hi <= lo) return [lo];
  const step = niceStep(hi - lo, count);
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

/** Draw ``points`` ([iteration, error] pairs) on ``canvas``, sized for the screen's pixel ratio;
 * ``labels`` names the axes (a study plots its objective value against the trial number). */
function drawErrorPlot(canvas, points, labels = { x: "iteration", y: "error" }) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 640;
  const height = canvas.clientHeight || 240;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  ctx.font = "12px system-ui, sans-serif";
  ctx.fillStyle = "#4f5863";
  ctx.strokeStyle = "#4f5863";

  const margin = { left: 66, right: 16, top: 14, bottom: 40 };
  const plotW = width - margin.left - margin.right;
  const plotH = height - margin.top - margin.bottom;

  // axis labels, always
  ctx.textAlign = "center";
  ctx.textBaseline = "alphabetic";
  ctx.fillText(labels.x, margin.left + plotW / 2, height - 6);
  ctx.save();
  ctx.translate(14, margin.top + plotH / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.fillText(points.length && logScale(points) ? `${labels.y} (log scale)` : labels.y, 0, 0);
  ctx.restore();
  ctx.strokeRect(margin.left, margin.top, plotW, plotH);

  if (!points.length) {
    ctx.fillText(`no ${labels.y} values yet`, margin.left + plotW / 2, margin.top + plotH / 2);
    canvas.setAttribute("aria-label", `${labels.y} against ${labels.x}: no values yet`);
    return;
  }

  const xs = points.map((p) => p[0]);
  const ys = points.map((p) => p[1]);
  let xLo = Math.min(...xs);
  let xHi = Math.max(...xs);
  if (xHi === xLo) [xLo, xHi] = [xLo - 1, xHi + 1];
  const useLog = logScale(points);
  const f = useLog ? Math.log10 : (v) => v;
  let yLo = f(Math.min(...ys));
  let yHi = f(Math.max(...ys));
  if (yHi === yLo) {
    const pad = useLog ? 0.1 : Math.abs(yLo) * 0.05 || 1;
    [yLo, yHi] = [yLo - pad, yHi + pad];
  } else {
    const pad = (yHi - yLo) * 0.05;
    [yLo, yHi] = [yLo - pad, yHi + pad];
  }
  const px = (x) => margin.left + ((x - xLo) / (xHi - xLo)) * plotW;
  const py = (y) => margin.top + (1 - (f(y) - yLo) / (yHi - yLo)) * plotH;

  // ticks and grid
  ctx.strokeStyle = "#e5e7eb";
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (const x of linearTicks(xLo, xHi, Math.max(2, Math.floor(plotW / 70)))) {
    if (!Number.isInteger(x)) continue;
    const X = px(x);
    ctx.beginPath();
    ctx.moveTo(X, margin.top);
    ctx.lineTo(X, margin.top + plotH);
    ctx.stroke();
    ctx.fillText(String(x), X, margin.top + plotH + 4);
  }
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (const t of linearTicks(yLo, yHi, Math.max(2, Math.floor(plotH / 40)))) {
    const value = useLog ? Math.pow(10, t) : t;
    const Y = margin.top + (1 - (t - yLo) / (yHi - yLo)) * plotH;
    ctx.beginPath();
    ctx.moveTo(margin.left, Y);
    ctx.lineTo(margin.left + plotW, Y);
    ctx.stroke();
    ctx.fillText(formatNumber(value), margin.left - 6, Y);
  }

  // the curve, and the latest point marked
  ctx.strokeStyle = "#1d4ed8";
  ctx.lineWidth = 2;
  ctx.beginPath();
  points.forEach(([x, y], k) => (k ? ctx.lineTo(px(x), py(y)) : ctx.moveTo(px(x), py(y))));
  ctx.stroke();
  const [lastX, lastY] = points[points.length - 1];
  ctx.fillStyle = "#1d4ed8";
  ctx.beginPath();
  ctx.arc(px(lastX), py(lastY), 3.5, 0, 2 * Math.PI);
  ctx.fill();
  ctx.lineWidth = 1;
  canvas.setAttribute("aria-label",
    `${labels.y} against ${labels.x}: ${points.length} points, latest ${formatNumber(lastY)} at ${labels.x} ${lastX}`);
}

function logScale(points) {
  const ys = points.map((p) => p[1]);
  const lo = Math.min(...ys);
  return lo > 0 && Math.max(...ys) / lo > 20;
}


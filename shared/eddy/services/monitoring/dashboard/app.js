"use strict";
/*
 * Live dashboard of eddy's monitoring service; the data contract is API.md beside this file.
 * Plain ES2020 without dependencies, so the page needs no build step and works offline:
 * the charts are drawn as inline SVG by lineChart() below.
 */

const POLL_MS = 2000;
const SVG_NS = "http://www.w3.org/2000/svg";
// Series colours leave out plain red, green and blue: those mean alert, resolved and promotion.
const PALETTE = ["#6a3d9a", "#ff7f00", "#1b9e77", "#e7298a", "#8c6d31", "#17becf", "#7f7f7f", "#bcbd22"];
const MARKER_COLORS = { alert: "#d62728", resolved: "#2ca02c", promotion: "#1f77b4" };
// A segment this much below its model's overall value is flagged: a possible bias against that group.
const BIAS_GAP = 0.1;
// Only for these metrics is "lower" unambiguously "worse" on a 0..1 scale where BIAS_GAP makes sense.
const HIGHER_IS_BETTER = new Set(["accuracy", "f1", "roc_auc", "precision", "recall", "balanced_accuracy"]);
const CHART = { width: 600, height: 230, left: 54, right: 16, top: 14, bottom: 28 };

const state = { stream: null, timer: null };

// Registered first, so that a bug anywhere below is visible on the page (and to the browser test).
function reportJsError(message) {
  const box = document.getElementById("js-errors");
  if (!box) return;
  box.hidden = false;
  box.textContent += `${message}\n`;
}
window.addEventListener("error", (e) => reportJsError(`${e.message} (${e.filename}:${e.lineno})`));
window.addEventListener("unhandledrejection", (e) => reportJsError(`unhandled rejection: ${e.reason}`));

/* ---------- DOM helpers ---------- */

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    node.setAttribute(key, value === true ? "" : String(value));
  }
  node.append(...children.flat().filter((c) => c !== null && c !== undefined));
  return node;
}

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  node.append(...children);
  return node;
}

const pad2 = (n) => String(n).padStart(2, "0");

// Local wall-clock time: operators compare it with their own clock and logs.
function fmtTime(ms) {
  const d = new Date(ms);
  return `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
}

function fmtNum(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return "—";
  if (Number.isInteger(v)) return String(v);
  return Math.abs(v) >= 100 ? v.toFixed(0) : String(Number(v.toPrecision(3)));
}

// Quality metrics and their bands: three decimals, so a band's two ends can be told apart.
const fmtMetric = (v) => (present(v) ? v.toFixed(3) : "—");
const fmtRange = (e) => `${fmtMetric(e.low)}–${fmtMetric(e.high)}`;
const fmtBand = (e) => (e && present(e.value) ? `${fmtMetric(e.value)} (${fmtRange(e)})` : "—");
const fmtSigned = (v) => (present(v) ? `${v > 0 ? "+" : v < 0 ? "−" : "±"}${Math.abs(v).toFixed(3)}` : "—");
const fmtShare = (v) => (present(v) ? `${Number((v * 100).toFixed(1))}%` : "—");

// Spans of days: the time alone for the day of `now`, the date too for earlier days.
function fmtWhen(ms, now) {
  const d = new Date(ms);
  if (d.toDateString() === new Date(now).toDateString()) return fmtTime(ms);
  const day = `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())}`;
  return `${day} ${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
}

function fmtDuration(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 48 * 3600) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

/* ---------- line chart ---------- */

// Steps of 1, 2 or 5 × 10^k keep tick labels short and round.
function niceStep(span, count) {
  const raw = span / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / magnitude;
  return (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * magnitude;
}

function yDomain(values, zero) {
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  // Rates and PSI read best from zero; quality metrics sit near 0.9 and would flatten into one line.
  if (zero) lo = Math.min(0, lo);
  if (hi === lo) hi = lo + (Math.abs(lo) || 1) * 0.1;
  const step = niceStep(hi - lo, 4);
  return { lo: Math.floor(lo / step) * step, hi: Math.ceil(hi / step) * step, step };
}

function linear(d0, d1, r0, r1) {
  const k = d1 === d0 ? 0 : (r1 - r0) / (d1 - d0);
  return (v) => r0 + (v - d0) * k;
}

const present = (v) => v !== null && v !== undefined && Number.isFinite(v);

function countPoints(lines) {
  return lines.reduce((n, line) => n + line.values.filter(present).length, 0);
}

// A null starts a new sub-path: a gap in the data must look like a gap, not like a straight trend.
function linePath(t, values, x, y) {
  let d = "";
  values.forEach((v, i) => {
    if (!present(v)) return;
    const starts = !present(values[i - 1]);
    d += `${starts ? "M" : "L"}${x(t[i]).toFixed(1)},${y(v).toFixed(1)}`;
    // A lone point has no segment to stroke; a zero-length one with round caps shows it as a dot.
    if (starts && !present(values[i + 1])) d += "h0";
  });
  return d;
}

function drawAxes(node, t, x, y, dom) {
  const { width, height, left, right, top, bottom } = CHART;
  // Ticks by index, not by adding step repeatedly: accumulated float error would skip the last one.
  const ticks = Math.round((dom.hi - dom.lo) / dom.step);
  for (let i = 0; i <= ticks; i++) {
    const v = dom.lo + i * dom.step;
    const py = y(v);
    node.append(svg("line", { x1: left, x2: width - right, y1: py, y2: py, class: "grid" }));
    node.append(svg("text", { x: left - 6, y: py + 4, class: "tick", "text-anchor": "end" }, fmtNum(v)));
  }
  const t0 = t[0];
  const t1 = t[t.length - 1];
  const count = t1 > t0 ? 4 : 0;
  for (let i = 0; i <= count; i++) {
    const tt = t0 + ((t1 - t0) * i) / (count || 1);
    const anchor = i === 0 ? "start" : i === count ? "end" : "middle";
    node.append(svg("text", { x: x(tt), y: height - bottom + 18, class: "tick", "text-anchor": anchor }, fmtTime(tt)));
  }
  node.append(svg("line", { x1: left, x2: width - right, y1: height - bottom, y2: height - bottom, class: "axis" }));
  node.append(svg("line", { x1: left, x2: left, y1: top, y2: height - bottom, class: "axis" }));
}

function drawThreshold(node, threshold, y) {
  const py = y(threshold.value);
  node.append(
    svg("line", { x1: CHART.left, x2: CHART.width - CHART.right, y1: py, y2: py, class: "threshold" },
      svg("title", {}, `${threshold.label}: ${fmtNum(threshold.value)}`)),
  );
  const at = { x: CHART.width - CHART.right - 4, y: py - 4, "text-anchor": "end" };
  node.append(svg("text", { ...at, class: "threshold-label" }, `${threshold.label} ${fmtNum(threshold.value)}`));
}

function drawMarkers(node, markers, t, x) {
  const y1 = CHART.top;
  const y2 = CHART.height - CHART.bottom;
  for (const m of markers) {
    if (m.t < t[0] || m.t > t[t.length - 1]) continue;
    const px = x(m.t).toFixed(1);
    const color = MARKER_COLORS[m.kind] || "#555";
    node.append(
      svg("g", { class: `marker marker-${m.kind}` },
        svg("title", {}, `${fmtTime(m.t)} ${m.kind}: ${m.label}`),
        svg("line", { x1: px, x2: px, y1, y2, stroke: color, "stroke-dasharray": "5 4", "stroke-width": 1.5 }),
        // Invisible and wider, so the tooltip is easy to hit with the mouse.
        svg("line", { x1: px, x2: px, y1, y2, stroke: "transparent", "stroke-width": 9 })),
    );
  }
}

/*
 * spec: {t, lines: [{name, values, color?, dashed?}], markers?, threshold?: {value, label}, zero?}
 * data-points counts the non-null values drawn, so tests and people can tell "empty" from "flat".
 */
function lineChart(node, spec) {
  const { width, height, left, right, top, bottom } = CHART;
  const t = spec.t || [];
  const lines = (spec.lines || []).map((line, i) => ({ color: PALETTE[i % PALETTE.length], ...line }));
  const points = countPoints(lines);
  node.replaceChildren();
  node.setAttribute("viewBox", `0 0 ${width} ${height}`);
  node.dataset.points = String(points);
  if (points === 0 || t.length === 0) {
    node.dataset.points = "0";
    const at = { x: width / 2, y: height / 2, "text-anchor": "middle" };
    node.append(svg("text", { ...at, class: "empty" }, "waiting for data"));
    return [];
  }
  const values = lines.flatMap((line) => line.values.filter(present));
  if (spec.threshold) values.push(spec.threshold.value);
  const dom = yDomain(values, spec.zero);
  const x = linear(t[0], t[t.length - 1], left, width - right);
  const y = linear(dom.lo, dom.hi, height - bottom, top);
  drawAxes(node, t, x, y, dom);
  if (spec.threshold) drawThreshold(node, spec.threshold, y);
  for (const line of lines) {
    const cls = line.dashed ? "series dashed" : "series";
    node.append(svg("path", { d: linePath(t, line.values, x, y), stroke: line.color, class: cls },
      svg("title", {}, line.name)));
  }
  drawMarkers(node, spec.markers || [], t, x);
  return lines;
}

function renderLegend(list, lines, markers) {
  const swatch = (line) => (line.dashed
    ? h("span", { class: "swatch dashed", style: `border-color:${line.color}` })
    : h("span", { class: "swatch", style: `background:${line.color}` }));
  const items = lines.map((line) => h("li", {}, swatch(line), line.name));
  for (const kind of new Set(markers.map((m) => m.kind))) {
    items.push(h("li", {}, h("span", { class: `swatch dashed marker-${kind}` }), kind));
  }
  list.replaceChildren(...items);
}

// Charts whose names depend on the data (one per quality metric) are created on first sight.
function chartFigure(name, title, container) {
  const existing = document.querySelector(`svg[data-chart="${name}"]`);
  if (existing) return existing.closest("figure");
  const figure = h("figure", { class: "chart" }, h("figcaption", {}, title),
    svg("svg", { "data-chart": name, "data-points": "0", role: "img", "aria-label": title }),
    h("ul", { class: "legend" }));
  container.append(figure);
  return figure;
}

function drawChart(figure, spec) {
  const markers = spec.markers || [];
  const lines = lineChart(figure.querySelector("svg"), spec);
  const shown = lines.length ? markers.filter((m) => m.t >= spec.t[0] && m.t <= spec.t[spec.t.length - 1]) : [];
  renderLegend(figure.querySelector(".legend"), lines, shown);
}

/* ---------- sections ---------- */

const asLines = (byName) => Object.entries(byName || {}).map(([name, values]) => ({ name, values: values || [] }));

function driftThreshold(drift) {
  // Thresholds are per feature but in practice shared; the strictest is the one worth drawing.
  const values = (drift || []).map((d) => d.threshold).filter(present);
  return values.length ? { value: Math.min(...values), label: "threshold" } : undefined;
}

function renderCharts(doc) {
  const series = doc.series || {};
  const t = series.t || [];
  const markers = doc.markers || [];
  const fig = (name) => document.querySelector(`svg[data-chart="${name}"]`).closest("figure");
  drawChart(fig("throughput"), { t, markers, zero: true, lines: asLines(series.throughput) });
  drawChart(fig("latency"), { t, markers, zero: true, lines: asLines(series.latency_ms) });
  drawChart(fig("data-drift"), {
    t, markers, zero: true, lines: asLines(series.data_drift), threshold: driftThreshold(doc.drift),
  });
  drawChart(fig("prediction-drift"), { t, markers, zero: true, lines: asLines(series.prediction_drift) });
  const dlq = (series.throughput || {}).dlq || [];
  drawChart(fig("dlq"), { t, markers, zero: true, lines: [{ name: "dlq", values: dlq, color: PALETTE[3] }] });
  renderQualityCharts(t, series.quality || {}, markers);
}

// The API nests quality as model@version -> metric; people compare models per metric, so pivot.
function renderQualityCharts(t, quality, markers) {
  const container = document.getElementById("quality-charts");
  const models = Object.keys(quality);
  const metrics = [...new Set(models.flatMap((m) => Object.keys(quality[m] || {})))];
  const wanted = new Set(metrics.map((metric) => `quality-${metric}`));
  for (const old of container.querySelectorAll("figure")) {
    if (!wanted.has(old.querySelector("svg").dataset.chart)) old.remove();
  }
  container.querySelector(".empty-note")?.remove();
  if (!metrics.length) container.append(h("p", { class: "empty-note" }, "waiting for labeled data"));
  for (const metric of metrics) {
    // Colour by model position, so a model keeps its colour across every metric chart.
    const lines = models.map((model, i) => ({
      name: model, values: (quality[model] || {})[metric] || [], color: PALETTE[i % PALETTE.length],
    }));
    drawChart(chartFigure(`quality-${metric}`, label(metric), container), { t, markers, lines });
  }
}

function table(head, rows, emptyText) {
  const body = rows.length ? rows : [h("tr", {}, h("td", { colspan: head.length, class: "none" }, emptyText))];
  return h("table", {}, h("thead", {}, h("tr", {}, head.map((c) => h("th", {}, c)))), h("tbody", {}, body));
}

const numCell = (v, attrs = {}) => h("td", { ...attrs, class: `num ${attrs.class || ""}`.trim() }, fmtNum(v));
const badge = (cls, text) => h("span", { class: `badge ${cls}` }, text);
const label = (name) => String(name || "").replace(/_/g, " ");

function worseMetrics(seg, overall, metrics) {
  return metrics.filter((m) => HIGHER_IS_BETTER.has(m) && present(seg[m]) && present(overall[m])
    && seg[m] < overall[m] - BIAS_GAP);
}

function segmentRow(name, seg, overall, metrics) {
  const worse = worseMetrics(seg, overall, metrics);
  const cells = metrics.map((m) => (worse.includes(m)
    ? numCell(seg[m], { class: "worse", title: `${m} ${fmtNum(seg[m])} vs ${fmtNum(overall[m])} overall` })
    : numCell(seg[m])));
  return h("tr", { class: worse.length ? "segment biased" : "segment", "data-segment": name },
    h("td", { colspan: 3, class: "segment-name" }, `↳ segment ${name}`, worse.length ? badge("bad", "worse") : null),
    numCell(seg.labeled), cells);
}

function modelRow(model, metrics) {
  return h("tr", { class: `model role-${model.role}`, "data-model": `${model.model}@${model.version}` },
    h("td", {}, model.model), numCell(model.version), h("td", {}, badge("role", model.role)),
    numCell(model.labeled), metrics.map((m) => numCell(model.metrics[m])));
}

function renderModels(models) {
  const metrics = [...new Set(models.flatMap((m) => Object.keys(m.metrics || {})))];
  const rows = models.flatMap((raw) => {
    const model = { ...raw, metrics: raw.metrics || {} };
    const segments = Object.entries(model.segments || {});
    return [modelRow(model, metrics), ...segments.map(([name, seg]) => segmentRow(name, seg, model.metrics, metrics))];
  });
  const head = ["model", "version", "role", "labeled", ...metrics.map(label)];
  document.getElementById("models").replaceChildren(table(head, rows, "no model has labeled data yet"));
}

/* ---------- estimated quality (before labels) ---------- */

// estimation.py's MIN_CALIBRATION: the labels a version needs before its first estimate.
// What the monitoring service says the calibrator needs (min_labels); this only covers an older document.
const MIN_CALIBRATION_LABELS = 100;
const ESTIMATED_METRICS = ["accuracy", "f1", "roc_auc"];
const RECENT_WINDOWS = 8;

const versionKey = (model) => `${model.model}@${model.version}`;
// Where an estimated accuracy starts to alert (the champion's estimated_quality alert), or null before a reference.
const alertLine = (est) => (present(est.reference_accuracy) ? est.reference_accuracy - est.threshold : null);

function waitingText(est) {
  const labels = est.calibration_labels ?? 0;
  const needed = est.min_labels ?? MIN_CALIBRATION_LABELS;
  if (labels < needed) {
    return `no estimate yet (needs ${needed} labels, has ${labels})`;
  }
  const size = present(est.window) ? `${est.window} ` : "";
  return `no estimate yet (the first window of ${size}predictions is still filling)`;
}

function estimateTile(metric, e, line) {
  const below = metric === "accuracy" && present(line) && e && e.value < line;
  return h("div", { class: below ? "tile below" : "tile", "data-metric": metric },
    h("div", { class: "tile-name" }, label(metric)),
    h("div", { class: "tile-value" }, fmtMetric(e?.value)),
    h("div", { class: "tile-band" }, e ? `95% ${fmtRange(e)} · n ${fmtNum(e.n)}` : "—"),
    below ? badge("bad", "below the alert line") : null);
}

function estimateFacts(est, role) {
  const line = alertLine(est);
  // Only the champion's estimate raises the estimated_quality alert; the others show where it would.
  const alert = role === "champion" ? "alert below" : "alert line (champion only)";
  const reference = present(est.reference_accuracy)
    ? `reference accuracy ${fmtMetric(est.reference_accuracy)} · ${alert} ${fmtMetric(line)} (−${est.threshold})`
    : "reference accuracy: once the first calibration window is full";
  return h("p", { class: "facts" },
    `calibration ${est.calibration} on ${fmtNum(est.calibration_labels)} labels · ${reference}`);
}

function windowRow(w) {
  const estimated = (w.estimated || {}).accuracy;
  const real = (w.realized || {}).accuracy;
  const error = w.settled && estimated && present(real) ? estimated.value - real : null;
  const partial = present(real) && !w.settled ? { class: "partial", title: `from ${w.labeled} labels so far` } : {};
  return h("tr", { "data-window": w.index, class: w.settled ? "settled" : null },
    numCell(w.index), h("td", {}, present(w.closed_at_ms) ? fmtTime(w.closed_at_ms) : "—"), numCell(w.n),
    h("td", { class: "num" }, fmtBand(estimated)),
    h("td", { ...partial, class: `num ${partial.class || ""}`.trim() }, fmtMetric(real)),
    h("td", { class: "num" }, fmtShare(w.n ? w.labeled / w.n : null)),
    h("td", { class: "num error" }, w.settled ? fmtSigned(error) : "pending"));
}

function windowsTable(windows) {
  const recent = windows.slice(-RECENT_WINDOWS).reverse();
  const head = ["window", "closed", "predictions", "estimated accuracy", "realized", "labeled", "error"];
  return table(head, recent.map(windowRow), "no window closed yet");
}

function segmentEstimateRow(name, seg, overall) {
  const below = (m) => seg[m] && overall && overall[m] && seg[m].value < overall[m].value - BIAS_GAP;
  const worse = ESTIMATED_METRICS.filter(below);
  const cells = ESTIMATED_METRICS.map((m) => h("td", { class: below(m) ? "num worse" : "num" }, fmtBand(seg[m])));
  const n = Math.max(0, ...ESTIMATED_METRICS.map((m) => (seg[m] ? seg[m].n : 0)));
  return h("tr", { "data-segment": name, class: worse.length ? "biased" : null },
    h("td", {}, name, worse.length ? badge("bad", "worse") : null), numCell(n), cells);
}

function segmentsTable(segments, overall) {
  const rows = Object.entries(segments || {}).map(([name, seg]) => segmentEstimateRow(name, seg, overall));
  return table(["segment", "predictions", ...ESTIMATED_METRICS.map(label)], rows, "no segment has enough predictions");
}

function estimateCard(model) {
  const est = model.estimated;
  const current = est.current
    ? h("div", { class: "tiles" }, ESTIMATED_METRICS.map((m) => estimateTile(m, est.current[m], alertLine(est))))
    : h("p", { class: "empty-note waiting" }, waitingText(est));
  return h("div", { class: `estimate-card role-${model.role}`, "data-model": versionKey(model) },
    h("h3", {}, `${model.model} v${model.version} `, badge("role", model.role)),
    current, estimateFacts(est, model.role),
    h("div", { class: "estimate-tables" },
      h("div", { class: "table-wrap" },
        h("h4", {}, "recent windows: estimate vs realized"), windowsTable(est.windows || [])),
      h("div", { class: "table-wrap" },
        h("h4", {}, "segments: latest predictions"), segmentsTable(est.segments, est.current))));
}

// Estimated (dashed) and realized accuracy of each version, in the colours of the quality charts.
function estimatedChart(doc, estimating) {
  const series = doc.series || {};
  const quality = series.quality || {};
  const estimated = series.estimated_accuracy || {};
  const keys = Object.keys(quality);
  const lines = estimating.flatMap((model) => {
    const key = versionKey(model);
    const at = keys.indexOf(key);
    const color = PALETTE[(at < 0 ? keys.length + estimating.indexOf(model) : at) % PALETTE.length];
    return [
      { name: `${key} estimated`, values: estimated[key] || [], color, dashed: true },
      { name: `${key} realized`, values: (quality[key] || {}).accuracy || [], color },
    ];
  });
  const champion = estimating.find((m) => m.role === "champion");
  const line = champion ? alertLine(champion.estimated) : null;
  const threshold = present(line) ? { value: line, label: "alert line" } : undefined;
  const figure = document.querySelector('svg[data-chart="estimated-accuracy"]').closest("figure");
  drawChart(figure, { t: series.t || [], markers: doc.markers || [], lines, threshold });
}

function renderEstimated(doc) {
  const estimating = (doc.models || []).filter((m) => m.estimated);
  const section = document.getElementById("estimated-section");
  // Only contracts that turn estimation on have it: the others see no empty panel.
  section.hidden = estimating.length === 0;
  if (!estimating.length) return;
  estimatedChart(doc, estimating);
  document.getElementById("estimated").replaceChildren(...estimating.map(estimateCard));
}

function renderDrift(drift) {
  const rowAttrs = (d) => ({ "data-feature": d.feature, class: d.status === "drifting" ? "drifting" : null });
  const rows = drift.map((d) => h("tr", rowAttrs(d),
    h("td", {}, d.feature), numCell(d.psi), numCell(d.threshold), numCell(d.window), numCell(d.detector_drifts),
    h("td", {}, badge(`status-${d.status}`, label(d.status)))));
  const head = ["feature", "psi", "threshold", "window", "detector drifts", "status"];
  document.getElementById("drift").replaceChildren(table(head, rows, "no drift statistics yet"));
}

function renderAlerts(alerts) {
  const rows = alerts.map((a) => h("tr", { "data-alert-id": a.alert_id },
    h("td", { class: "mono" }, a.alert_id), h("td", {}, a.kind), h("td", {}, a.subject), h("td", {}, a.statistic),
    numCell(a.value), numCell(a.threshold), h("td", {}, badge(`severity-${a.severity}`, a.severity)),
    h("td", {}, present(a.raised_at_ms) ? fmtTime(a.raised_at_ms) : "—")));
  const head = ["alert", "kind", "subject", "statistic", "value", "threshold", "severity", "raised"];
  document.getElementById("alerts").replaceChildren(table(head, rows, "no open alerts"));
  document.getElementById("alert-count").textContent = String(alerts.length);
}

function renderDlq(dlq) {
  const byReason = Object.entries(dlq.by_reason || {}).sort((a, b) => b[1] - a[1]);
  const rows = byReason.map(([reason, n]) => h("tr", { "data-reason": reason },
    h("td", {}, reason), h("td", { class: "num" }, fmtNum(n))));
  document.getElementById("dlq-table").replaceChildren(table(["reason", "records"], rows, "nothing dead-lettered"));
  document.getElementById("dlq-total").textContent = fmtNum(dlq.total ?? 0);
}

/* ---------- label freshness ---------- */

// Seconds as people read a delay: milliseconds under one second, minutes and hours past one minute.
function fmtSeconds(v) {
  if (!present(v)) return "—";
  if (v < 1) return `${Math.round(v * 1000)} ms`;
  if (v < 60) return `${Number(v.toPrecision(3))} s`;
  return fmtDuration(v * 1000);
}

function quantileTile(name, title, q) {
  const n = q && present(q.n) ? q.n : 0;
  return h("div", { class: "tile", "data-freshness": name },
    h("div", { class: "tile-name" }, title),
    h("div", { class: "tile-value" }, `p50 ${fmtSeconds(q?.p50)}`),
    h("div", { class: "tile-band" }, n ? `p99 ${fmtSeconds(q.p99)} · last ${fmtNum(n)}` : "no sample yet"));
}

function lagTile(f) {
  const lagging = f.status === "lagging";
  const threshold = present(f.max_lag_s)
    ? `alert past ${fmtSeconds(f.max_lag_s)}`
    : "no alert: the contract sets no monitoring.freshness.max_lag";
  return h("div", { class: lagging ? "tile lagging" : "tile", "data-freshness": "lag" },
    h("div", { class: "tile-name" }, "lag now"),
    h("div", { class: "tile-value" }, f.lag_s > 0 ? fmtSeconds(f.lag_s) : "0 s"),
    h("div", { class: "tile-band" }, threshold),
    badge(`freshness-${f.status}`, label(f.status)));
}

// The learning_lag alert is the champion's, subject its model name (as on S.alerts).
function lagAlertText(f, alerts, now) {
  const open = alerts.find((a) => a.kind === "learning_lag" && a.subject === f.model);
  if (open && f.status !== "lagging") {
    // Monitoring judges alerts as records arrive: after a drain to a quiet stream the lag is back before a judgement.
    return { firing: true, text: "learning_lag alert still open: the lag is back under the threshold, and the alert "
      + "resolves with the next records monitoring reads" };
  }
  if (open) {
    const since = present(open.raised_at_ms) ? ` since ${fmtWhen(open.raised_at_ms, now)}` : "";
    const reading = `${fmtSeconds(open.value)} > ${fmtSeconds(open.threshold)}`;
    return { firing: true, text: `learning_lag alert firing${since} (${reading})` };
  }
  return { firing: false, text: present(f.max_lag_s) ? "no learning_lag alert open" : "learning_lag alert off" };
}

function freshnessFacts(f, now) {
  const when = (ms) => (present(ms) ? fmtWhen(ms, now) : "—");
  return h("p", { class: "facts" },
    `newest label learned ${when(f.newest_learned_label_ms)} · newest label served ${when(f.served_label_ms)}`);
}

function renderFreshness(doc) {
  const section = document.getElementById("freshness-section");
  // An older service's document, or one warming up, has no key: no empty panel.
  section.hidden = !("freshness" in doc);
  if (section.hidden) return;
  const f = doc.freshness;
  const card = document.getElementById("freshness");
  if (!f) {
    card.dataset.status = "none";
    card.replaceChildren(h("p", { class: "empty-note" }, "no label learned yet"));
    return;
  }
  const now = doc.generated_at_ms ?? Date.now();
  const alert = lagAlertText(f, doc.alerts || [], now);
  card.dataset.status = f.status;
  card.dataset.model = `${f.model}@${f.version}`;
  card.replaceChildren(
    h("h3", {}, `${f.model} v${f.version} `, badge("role", "champion")),
    h("div", { class: "tiles" },
      quantileTile("learned", "label → learned", f.label_to_learned_s),
      quantileTile("served", "label → served", f.label_to_served_s),
      lagTile(f)),
    h("p", { class: alert.firing ? "lag-alert firing" : "lag-alert" }, alert.text),
    freshnessFacts(f, now));
}

/* ---------- production history ---------- */

// The registry keeps years of periods; the page shows the latest ones, on one time axis.
const HISTORY_ROWS = 20;
// Shown in their own columns, so left out of the evidence.
const PERIOD_COLUMNS = new Set(["by", "reason"]);

const canaryText = (share) => `${Number((share * 100).toFixed(1))}% canary`;

// Scalars as they are, objects as compact JSON: the evidence of a trial nests its test's numbers.
const evidenceValue = (v) => (v !== null && typeof v === "object" ? JSON.stringify(v) : String(v));

// One level of nesting flattened ("evidence.pairs"): the trial's numbers are what people look for.
function evidenceItems(evidence) {
  const items = [];
  for (const [key, value] of Object.entries(evidence || {})) {
    if (PERIOD_COLUMNS.has(key) || value === null || value === "") continue;
    if (typeof value === "object" && !Array.isArray(value)) {
      for (const [inner, v] of Object.entries(value)) {
        if (v !== null && v !== "") items.push([`${key}.${inner}`, evidenceValue(v)]);
      }
    } else {
      items.push([key, evidenceValue(value)]);
    }
  }
  return items;
}

function evidenceCell(evidence, open) {
  const reason = (evidence || {}).reason;
  const items = evidenceItems(evidence);
  const details = items.length
    ? h("details", { open }, h("summary", {}, `evidence (${items.length})`),
      h("dl", {}, items.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])))
    : null;
  return h("td", { class: "evidence" }, reason ? h("div", { class: "reason" }, reason) : null, details);
}

function periodSpan(period, now) {
  const until = present(period.until_ms) ? fmtWhen(period.until_ms, now) : "now";
  return `${fmtWhen(period.from_ms, now)} → ${until}`;
}

function periodBar(period, axis) {
  const until = period.until_ms ?? axis.now;
  const x = linear(axis.from, axis.until, 0, 100);
  const style = `left:${x(period.from_ms).toFixed(2)}%;width:${(x(until) - x(period.from_ms)).toFixed(2)}%`;
  // The challenger's canary share as a stripe of the bar's height: the traffic it answered (a sliver stays visible).
  const stripe = period.challenger && period.canary > 0
    ? h("span", { class: "canary", style: `height:${Math.max(8, period.canary * 100).toFixed(0)}%`,
      title: `${period.challenger}: ${canaryText(period.canary)}` })
    : null;
  const title = `${period.champion} ${periodSpan(period, axis.now)}`;
  return h("td", { class: "track-cell" },
    h("div", { class: "track" }, h("div", { class: `bar cause-${period.cause}`, style, title }, stripe)));
}

function spanCell(period, now) {
  const duration = fmtDuration((period.until_ms ?? now) - period.from_ms);
  return h("td", { class: "span" }, periodSpan(period, now), h("div", { class: "duration" }, duration));
}

function challengerCell(period) {
  if (!period.challenger) return h("td", { class: "challenger none" }, "—");
  const share = period.canary > 0 ? badge("canary", canaryText(period.canary)) : badge("canary", "no traffic");
  return h("td", { class: "challenger" }, h("span", { class: "mono" }, period.challenger), " ", share);
}

const causeCell = (period) => h("td", { class: "cause" },
  badge(`cause-${period.cause}`, label(period.cause)), period.by ? ` by ${period.by}` : null);

function periodRow(period, axis, open) {
  const classes = ["period", period.challenger ? "trial" : null, present(period.until_ms) ? null : "current"];
  return h("tr", { class: classes.filter(Boolean).join(" "), "data-period": period.from_ms },
    spanCell(period, axis.now), periodBar(period, axis),
    h("td", { class: "mono champion" }, period.champion), challengerCell(period), causeCell(period),
    evidenceCell(period.evidence, open.has(String(period.from_ms))));
}

// The table is rebuilt at every poll: the evidence someone opened stays open.
function openPeriods(container) {
  return new Set([...container.querySelectorAll("details[open]")].map((d) => d.closest("tr").dataset.period));
}

function renderHistory(doc) {
  const periods = doc.history || [];
  const shown = periods.slice(-HISTORY_ROWS);
  const now = Math.max(doc.generated_at_ms ?? Date.now(), ...shown.map((p) => p.until_ms ?? p.from_ms));
  const axis = { from: shown.length ? shown[0].from_ms : now, until: now, now };
  const axisHead = shown.length ? `${fmtWhen(axis.from, now)} → now` : "";
  const head = ["period", axisHead, "champion", "challenger", "cause", "evidence"];
  const hidden = periods.length - shown.length;
  const note = hidden > 0 ? h("p", { class: "empty-note" }, `${hidden} earlier periods not shown`) : null;
  const container = document.getElementById("history");
  const open = openPeriods(container);
  const rows = shown.map((p) => periodRow(p, axis, open));
  container.replaceChildren(...[note, table(head, rows, "no registry event seen yet")].filter(Boolean));
  document.getElementById("history-count").textContent = String(periods.length);
}

function renderHeader(doc) {
  // The service answers {stream, task, warming_up: true} until its first tick; every other field may be absent.
  const when = doc.warming_up ? "warming up" : `updated ${fmtTime(doc.generated_at_ms ?? Date.now())}`;
  document.getElementById("status").textContent = `stream ${doc.stream} · task ${doc.task} · ${when}`;
}

function render(doc) {
  renderHeader(doc);
  renderCharts(doc);
  renderModels(doc.models || []);
  renderEstimated(doc);
  renderFreshness(doc);
  renderHistory(doc);
  renderDrift(doc.drift || []);
  renderAlerts(doc.alerts || []);
  renderDlq(doc.dlq || {});
}

/* ---------- data flow ---------- */

function showError(message) {
  const banner = document.getElementById("error-banner");
  // The last good data stays on screen; say so, so nobody mistakes it for live numbers.
  const loaded = document.body.dataset.ready === "true";
  banner.textContent = loaded
    ? `Could not refresh: ${message} — showing the last data received`
    : `Could not load: ${message}`;
  banner.hidden = false;
}

function clearError() {
  document.getElementById("error-banner").hidden = true;
}

async function getJSON(url) {
  const resp = await fetch(url, { cache: "no-store", headers: { Accept: "application/json" } });
  let body = null;
  try {
    body = await resp.json();
  } catch {
    // An error page that is not JSON: the status code alone has to do.
  }
  if (!resp.ok) throw new Error(`${url}: HTTP ${resp.status}${body && body.error ? ` (${body.error})` : ""}`);
  if (body === null) throw new Error(`${url}: the answer is not JSON`);
  return body;
}

// One request at a time, re-armed when it ends: a slow server must not pile up overlapping polls.
async function poll() {
  clearTimeout(state.timer);
  const stream = state.stream;
  try {
    const doc = await getJSON(`/api/dashboard?stream=${encodeURIComponent(stream)}`);
    if (stream !== state.stream) return; // the user switched streams while this was in flight
    render(doc);
    clearError();
    document.body.dataset.ready = "true";
  } catch (err) {
    if (stream === state.stream) showError(err.message);
  } finally {
    if (stream === state.stream) state.timer = setTimeout(poll, POLL_MS);
  }
}

function selectStream(stream) {
  state.stream = stream;
  const url = new URL(location.href);
  url.searchParams.set("stream", stream);
  history.replaceState(null, "", url); // a reload or a shared link opens the same stream
  poll();
}

function fillSelector(streams, current) {
  const select = document.getElementById("stream-select");
  select.replaceChildren(...streams.map((s) => h("option", { value: s, selected: s === current }, s)));
  select.onchange = () => selectStream(select.value);
}

async function boot() {
  let streams;
  try {
    streams = (await getJSON("/api/streams")).streams || [];
  } catch (err) {
    showError(err.message);
    setTimeout(boot, POLL_MS);
    return;
  }
  const wanted = new URLSearchParams(location.search).get("stream");
  // An unknown ?stream= is kept: the API's 404 then explains it better than a silent fallback.
  if (wanted && !streams.includes(wanted)) streams.unshift(wanted);
  if (!streams.length) {
    showError("no streams are monitored yet");
    setTimeout(boot, POLL_MS);
    return;
  }
  fillSelector(streams, wanted || streams[0]);
  state.stream = wanted || streams[0];
  document.getElementById("status").textContent = `stream ${state.stream} · waiting for data`;
  poll();
}

// Empty placeholders first, so a page whose API never answers still says what it is waiting for.
for (const node of document.querySelectorAll("svg[data-chart]")) lineChart(node, { t: [], lines: [] });
renderQualityCharts([], {}, []);
boot();

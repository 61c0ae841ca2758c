// The metrics page (#/metrics): latency per stage, FIM acceptance and retention, cache hit rate,
// drawn with uPlot (served from /vendor/uplot) from /api/metrics/summary's own figures.

import { api } from "./api.js";
import { bus } from "./bus.js";
import { formatMs, formatRate, h, icon } from "./dom.js";

const REFRESH_MS = 5_000;
const CHARTS = [
  { id: "latency", title: "Latency per stage", unit: "ms", note: "p50 solid, p95 dashed, per sample", pick: (k) => /_p(50|95)_ms$/.test(k) },
  { id: "fim", title: "FIM acceptance and retention", unit: "%", note: "accepted of shown; kept of accepted", pick: (k) => /accept|retent/i.test(k) },
  { id: "cache", title: "Cache hit rate", unit: "%", note: "hits / lookups, per sample", pick: (k) => /cache.*rate/i.test(k) },
  { id: "traffic", title: "Requests", unit: "", note: "per sample", pick: (k) => /_(requests|errors)$/.test(k) },
];
const STAGE_NAMES = { time_to_first_token: "first token", model_request: "model", queue_wait: "queue", http: "HTTP", decode: "decode" };
const PAGE_SAMPLES = 720;
const pageSamples = []; // FIM rates seen by this page, when the server's series has none

let els = null;
let timer = 0;
let charts = {};
let uplotLoading = null;
let lastSummary = null;

function loadUplot() {
  if (window.uPlot) return Promise.resolve(window.uPlot);
  uplotLoading ??= new Promise((resolve, reject) => {
    const css = h("link", { rel: "stylesheet", href: "/vendor/uplot/uPlot.min.css" });
    const script = h("script", { src: "/vendor/uplot/uPlot.iife.min.js" });
    script.addEventListener("load", () => resolve(window.uPlot));
    script.addEventListener("error", () => {
      uplotLoading = null;
      reject(new Error("the chart library did not load from /vendor/uplot: run bash scripts/setup (npm ci in src/mimiverse/web)"));
    });
    document.head.append(css, script);
  });
  return uplotLoading;
}

function cssVar(name) {
  return getComputedStyle(document.body).getPropertyValue(name).trim();
}

function palette() {
  return [1, 2, 3, 4, 5, 6].map((i) => cssVar(`--chart-${i}`));
}

/** Split the samples into one table per chart: [xs, ...ys] and the series names. */
export function seriesFor(summary) {
  const samples = (summary?.series ?? []).filter((s) => typeof s?.t === "number").sort((a, b) => a.t - b.t);
  const keys = new Set();
  for (const s of samples) for (const [k, v] of Object.entries(s)) if (k !== "t" && typeof v === "number") keys.add(k);
  const used = new Set();
  const out = {};
  for (const chart of CHARTS) {
    const names = [...keys].filter((k) => !used.has(k) && chart.pick(k)).sort();
    names.forEach((k) => used.add(k));
    const isRate = chart.unit === "%";
    const isLog = chart.unit === "ms"; // latencies span ms to tens of s: a log scale shows both
    out[chart.id] = {
      names,
      data: [
        samples.map((s) => s.t),
        ...names.map((k) =>
          samples.map((s) => {
            const v = s[k];
            if (typeof v !== "number" || (isLog && v <= 0)) return null;
            return isRate && v <= 1 ? v * 100 : v;
          }),
        ),
      ],
    };
  }
  return out;
}

function label(key) {
  const stage = key.replace(/_p(50|95)_ms$/, "");
  if (stage !== key) return `${STAGE_NAMES[stage] ?? stage.replace(/_/g, " ")} ${key.match(/p(50|95)/)[0]}`;
  return key.replace(/_/g, " ");
}

/** The server's samples, plus FIM rates this page saw when the server's series has none. */
function withPageSamples(summary) {
  const series = summary?.series ?? [];
  if (series.some((s) => Object.keys(s).some((k) => /accept|retent/i.test(k)))) return summary;
  const fim = summary?.fim ?? {};
  if (typeof fim.acceptance_rate === "number" || typeof fim.retention_rate === "number") {
    pageSamples.push({ t: Date.now() / 1000, fim_acceptance_rate: fim.acceptance_rate ?? null, fim_retention_rate: fim.retention_rate ?? null });
    if (pageSamples.length > PAGE_SAMPLES) pageSamples.shift();
  }
  return { ...summary, series: [...series, ...pageSamples] };
}

/** A log axis with a line and a label at whole decades only (1 ms, 10 ms, 100 ms, 1 s …). */
function logAxis(axis) {
  const decades = (u, splits) => splits.map((v) => (Math.abs(Math.log10(v) - Math.round(Math.log10(v))) < 1e-9 ? v : null));
  const label = (v) => (v === null ? "" : v < 1000 ? `${v} ms` : `${v / 1000} s`);
  return {
    ...axis,
    size: 60,
    filter: decades,
    grid: { ...axis.grid, filter: decades },
    ticks: { ...axis.ticks, filter: decades },
    values: (u, vals) => vals.map(label),
  };
}

function makeChart(uPlot, chart, table, host) {
  const colors = palette();
  const stages = [...new Set(table.names.map((n) => n.replace(/_p(50|95)_ms$/, "")))];
  const axis = { stroke: cssVar("--fg-muted"), grid: { stroke: cssVar("--chart-grid"), width: 1 }, ticks: { stroke: cssVar("--chart-grid"), width: 1 }, font: `11px ${cssVar("--font-ui")}` };
  const fmt = (u, v) => (v === null || v === undefined ? "–" : chart.unit === "%" ? `${v.toFixed(1)}%` : chart.unit === "ms" ? formatMs(v) : String(Math.round(v * 100) / 100));
  const opts = {
    width: Math.max(280, host.clientWidth),
    height: 220,
    cursor: { drag: { x: true, y: false } },
    scales: { x: { time: true }, y: chart.unit === "%" ? { range: [0, 100] } : chart.unit === "ms" ? { distr: 3, log: 10 } : { auto: true } },
    axes: [{ ...axis }, chart.unit === "ms" ? logAxis(axis) : { ...axis, size: 60, values: (u, vals) => vals.map((v) => (chart.unit === "%" ? `${v}%` : v)) }],
    series: [
      { label: "time", value: (u, v) => (v ? new Date(v * 1000).toLocaleTimeString() : "–") },
      ...table.names.map((name, i) => {
        const stage = name.replace(/_p(50|95)_ms$/, "");
        const colour = stage !== name ? colors[stages.indexOf(stage) % colors.length] : colors[i % colors.length];
        return { label: label(name), stroke: colour, width: 1.5, dash: /_p95_ms$/.test(name) ? [4, 3] : undefined, points: { size: 5 }, value: fmt, spanGaps: true };
      }),
    ],
    legend: { live: true },
  };
  return new uPlot(opts, table.data, host);
}

function card(title, value, detail) {
  return h("div", { class: "metric-card" }, h("div", { class: "metric-label" }, title), h("div", { class: "metric-value" }, value), h("div", { class: "metric-detail" }, detail ?? ""));
}

function renderCards(summary) {
  const fim = summary.fim ?? {};
  const cache = summary.cache ?? {};
  const http = summary.http ?? {};
  const stages = Object.values(summary.stages ?? {});
  const served = stages.reduce((n, s) => n + (s?.count ?? 0), 0);
  els.cards.replaceChildren(
    card("FIM acceptance", formatRate(fim.acceptance_rate), `${fim.accepted ?? 0} of ${fim.shown ?? 0} shown completions accepted`),
    card(
      "FIM retention",
      formatRate(fim.retention_rate),
      typeof fim.retention_rate === "number" ? "of accepted characters still there later" : "measured a while after a completion is accepted",
    ),
    card("Cache hit rate", formatRate(cache.hit_rate), `${cache.hits ?? 0} hits, ${cache.misses ?? 0} misses`),
    card("Stage samples", String(served), `${stages.length} stage${stages.length === 1 ? "" : "s"} measured`),
    card("HTTP requests", String(http.requests ?? http.total ?? "–"), http.errors !== undefined ? `${http.errors} errors` : "since the server started"),
  );
}

function renderStages(summary) {
  const rows = Object.entries(summary.stages ?? {}).sort((a, b) => (b[1]?.count ?? 0) - (a[1]?.count ?? 0));
  els.stages.replaceChildren(
    h("caption", {}, "Per-stage latency since the server started"),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Stage"), h("th", { scope: "col" }, "Count"), h("th", { scope: "col" }, "p50"), h("th", { scope: "col" }, "p95"))),
    h(
      "tbody",
      {},
      rows.length
        ? rows.map(([name, s]) => h("tr", {}, h("th", { scope: "row" }, STAGE_NAMES[name] ?? name), h("td", {}, String(s?.count ?? 0)), h("td", {}, formatMs(s?.p50_ms)), h("td", {}, formatMs(s?.p95_ms))))
        : h("tr", {}, h("td", { colspan: "4", class: "muted" }, "No requests measured yet: use completions, chat or search.")),
    ),
  );
}

async function renderCharts(summary, { rebuild = false } = {}) {
  let uPlot;
  try {
    uPlot = await loadUplot();
  } catch (err) {
    els.chartError.hidden = false;
    els.chartError.textContent = err.message;
    return;
  }
  const tables = seriesFor(summary);
  for (const chart of CHARTS) {
    const slot = els.slots[chart.id];
    const table = tables[chart.id];
    const enough = table.names.length > 0 && table.data[0].length >= 2;
    slot.card.hidden = chart.id === "traffic" && table.names.length === 0;
    slot.empty.hidden = enough;
    slot.empty.textContent = table.names.length
      ? "Collecting samples: the server records one every few seconds."
      : "No figures of this kind yet: they appear as the server serves requests.";
    const signature = table.names.join(",");
    const existing = charts[chart.id];
    if (!enough) {
      existing?.plot.destroy();
      delete charts[chart.id];
      continue;
    }
    if (existing && !rebuild && existing.signature === signature) {
      existing.plot.setData(table.data);
    } else {
      existing?.plot.destroy();
      slot.host.replaceChildren();
      charts[chart.id] = { plot: makeChart(uPlot, chart, table, slot.host), signature };
    }
  }
}

let refreshing = false;

async function refresh(options = {}) {
  clearTimeout(timer);
  if (!els || els.view.hidden || refreshing) return;
  refreshing = true;
  try {
    await refreshOnce(options);
  } finally {
    refreshing = false;
  }
  if (!document.hidden && !els.view.hidden) timer = setTimeout(refresh, REFRESH_MS);
}

async function refreshOnce({ rebuild = false } = {}) {
  try {
    const summary = withPageSamples(await api("/api/metrics/summary"));
    lastSummary = summary;
    els.error.hidden = true;
    renderCards(summary);
    renderStages(summary);
    await renderCharts(summary, { rebuild });
    els.updated.textContent = `Updated ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    els.error.hidden = false;
    els.error.textContent = `Cannot read the metrics: ${err.message}`;
  }
}

function resize() {
  for (const [id, { plot }] of Object.entries(charts)) {
    const host = els.slots[id].host;
    if (host.clientWidth) plot.setSize({ width: host.clientWidth, height: 220 });
  }
}

/** Build the metrics page in `container` (#metrics-view); it refreshes while shown. */
export function mount(container) {
  const slots = {};
  const chartCards = CHARTS.map((chart) => {
    const host = h("div", { class: "chart-host", role: "img", "aria-label": `${chart.title} over time` });
    const empty = h("p", { class: "chart-empty muted" });
    const cardEl = h("section", { class: "chart-card", "aria-label": chart.title, dataset: { chart: chart.id } }, h("header", { class: "chart-head" }, h("h2", {}, chart.title), h("span", { class: "muted" }, chart.note)), host, empty);
    slots[chart.id] = { host, empty, card: cardEl };
    return cardEl;
  });
  const updated = h("span", { class: "muted", role: "status" });
  const error = h("p", { class: "metrics-error", role: "alert", hidden: true });
  const chartError = h("p", { class: "metrics-error", role: "alert", hidden: true });
  const cards = h("div", { class: "metric-cards" });
  const stages = h("table", { class: "stage-table" });
  const back = h("a", { class: "button", href: "#/" }, icon("arrow-left", 14), "Back to the editor");
  const refreshButton = h("button", { type: "button", class: "button", onclick: () => refresh() }, icon("refresh", 14), "Refresh");
  container.replaceChildren(
    h(
      "div",
      { class: "metrics-inner" },
      h("header", { class: "metrics-head" }, h("div", {}, h("h1", {}, "Metrics"), h("p", { class: "muted" }, "This server's own figures: latency per stage, completion acceptance and retention, cache hit rate.")), h("div", { class: "metrics-actions" }, updated, refreshButton, back)),
      error,
      cards,
      chartError,
      h("div", { class: "chart-grid" }, chartCards),
      stages,
    ),
  );
  els = { view: container, slots, updated, error, chartError, cards, stages };

  bus.on("route:changed", ({ route }) => {
    if (route === "metrics") {
      refresh();
      requestAnimationFrame(resize);
    } else {
      clearTimeout(timer);
    }
  });
  bus.on("layout:changed", () => !container.hidden && resize());
  bus.on("theme:changed", () => {
    if (lastSummary && !container.hidden) renderCharts(lastSummary, { rebuild: true });
    else charts = Object.fromEntries(Object.entries(charts).map(([id, c]) => [id, { ...c, signature: "" }]));
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && !container.hidden) refresh();
  });
}

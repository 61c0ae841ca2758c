// The status bar: mode, index progress, cache hit rate, model per task, and (Expert) per-stage
// latencies, from the server's own figures, polled while the tab is visible. Other modules add
// items with bus.emit("status:set", {key, text, title?}).

import { api, withProject } from "./api.js";
import { bus } from "./bus.js";
import { basename, formatMs, formatRate, h, icon } from "./dom.js";
import { openPalette } from "./palette.js";
import { showView } from "./shell.js";
import { state } from "./state.js";

const FAST_MS = 3_000;
const SLOW_MS = 8_000;
const MODELS_EVERY_MS = 30_000;
const TASK_ORDER = ["chat", "fim", "embed", "rerank"];
const STAGE_SHORT = { time_to_first_token: "ttft", model_request: "model", queue_wait: "queue", http: "http", decode: "decode" };
const MODE_TITLES = { simple: "Simple", advanced: "Advanced", expert: "Expert" };

let els = null;
let timer = 0;
let modelsAt = 0;
let models = null;
let indexBusy = true;

function item(key, { action, title, side = "left", iconName } = {}) {
  const tag = action ? "button" : "span";
  const el = h(tag, { class: "status-item", dataset: { status: key }, title: title ?? "" });
  if (action) {
    el.type = "button";
    el.addEventListener("click", action);
  }
  if (iconName) el.append(icon(iconName, 14));
  el.append(h("span", { class: "status-text" }));
  (side === "left" ? els.left : els.right).append(el);
  return el;
}

function set(el, text, { title, kind = "" } = {}) {
  el.querySelector(".status-text").textContent = text;
  if (title !== undefined) el.title = title;
  el.classList.toggle("warn", kind === "warn");
  el.classList.toggle("error", kind === "error");
  el.classList.toggle("busy", kind === "busy");
  if (el.tagName === "BUTTON") el.setAttribute("aria-label", `${text}${title ? `: ${title}` : ""}`);
}

function shortModel(model) {
  const name = basename(String(model ?? "")).replace(/\.gguf$/i, "");
  return name.length > 28 ? `${name.slice(0, 27)}…` : name;
}

async function pollModels() {
  if (Date.now() - modelsAt < MODELS_EVERY_MS && models) return;
  models = await api("/api/models/available");
  modelsAt = Date.now();
}

function showModels(health) {
  const byName = new Map((models?.models ?? []).map((m) => [m.name, m]));
  const defaults = models?.defaults ?? {};
  const tasks = TASK_ORDER.filter((t) => defaults[t]).concat(Object.keys(defaults).filter((t) => !TASK_ORDER.includes(t) && defaults[t]));
  const parts = [];
  const lines = [];
  let down = false;
  for (const task of tasks) {
    const endpoint = byName.get(defaults[task]);
    const healthy = health?.tasks?.[task]?.ok ?? endpoint?.healthy ?? true;
    if (!healthy) down = true;
    parts.push(`${task} ${defaults[task]}`);
    lines.push(`${task}: ${defaults[task]} (${shortModel(endpoint?.model) || "?"}, ${endpoint?.kind ?? "?"}) — ${healthy ? endpoint?.detail ?? "healthy" : "unavailable"}`);
  }
  const compact = state.mode === "expert" ? parts.join(" · ") : tasks.map((t) => `${t} ${shortModel(byName.get(defaults[t])?.model) || defaults[t]}`).slice(0, 2).join(" · ");
  set(els.model, compact || "no models", {
    title: lines.length ? `Model per task\n${lines.join("\n")}` : "No model routes: configure endpoints (mimiverse doctor)",
    kind: down || !lines.length ? "warn" : "",
  });
}

async function pollIndex() {
  try {
    const s = await api("/api/codebase/status", { query: withProject() });
    const vectors = s.embed_model ? s.vectors_complete ?? 0 : 1;
    indexBusy = !s.ready || vectors < 1;
    let text;
    if (!s.ready) text = "Indexing…";
    else if (vectors < 1) text = `Indexing ${formatRate(vectors)}`;
    else text = `Index ${s.files} file${s.files === 1 ? "" : "s"}`;
    if (state.mode === "expert" && s.ready) text += ` · ${s.chunks} chunks · vectors ${formatRate(vectors)}`;
    const sync = s.last_sync ? `\nLast sync: ${s.last_sync.scanned} scanned, ${s.last_sync.changed} changed in ${s.last_sync.seconds} s` : "";
    const error = s.embed_error ? `\nEmbedding error: ${s.embed_error}` : "";
    set(els.index, text, {
      title: `Codebase index (${s.store ?? "store"})\n${s.files} files, ${s.chunks} chunks, ${s.embedded ?? 0} embedded${s.embed_model ? ` with ${s.embed_model}` : ""}${sync}${error}${s.skipped ? `\n${s.skipped} files skipped` : ""}`,
      kind: s.embed_error ? "warn" : indexBusy ? "busy" : "",
    });
    els.index.dataset.progress = String(Math.round((s.ready ? vectors : 0) * 100));
  } catch (err) {
    indexBusy = false;
    set(els.index, err.status === 503 ? "Index off" : "Index ?", { title: err.message, kind: "warn" });
  }
}

async function pollCache() {
  const c = await api("/api/cache/stats");
  const lookups = (c.hits ?? 0) + (c.misses ?? 0);
  let text = `Cache ${lookups ? formatRate(c.hitRate) : "–"}`;
  if (state.mode === "expert") {
    text = lookups ? `Cache ${formatRate(c.hitRate)} of ${lookups}` : "Cache no lookups yet";
    text += ` · ${c.store}${c.degraded ? " (degraded)" : ""}`;
  }
  const perTask = Object.entries(c.tasks ?? {})
    .map(([task, t]) => `${task}: ${formatRate(t.hitRate)} of ${t.hits + t.misses}, ${t.keys} keys`)
    .join("\n");
  set(els.cache, text, {
    title: `Response cache (${c.store}${c.degraded ? ", degraded: fell back to memory" : ""})\nHit rate ${formatRate(c.hitRate)}: ${c.hits} hits, ${c.misses} misses, ${c.keys} keys${perTask ? `\n${perTask}` : ""}`,
    kind: c.degraded ? "warn" : "",
  });
}

async function pollLatency() {
  const summary = await api("/api/metrics/summary");
  const stages = Object.entries(summary.stages ?? {})
    .filter(([, s]) => s && s.count > 0)
    .sort((a, b) => b[1].count - a[1].count);
  const text = stages.length ? stages.slice(0, 4).map(([name, s]) => `${STAGE_SHORT[name] ?? name} ${formatMs(s.p50_ms)}`).join(" · ") : "no requests yet";
  set(els.latency, text, {
    title: stages.length
      ? `Latency per stage (p50 / p95, count)\n${stages.map(([n, s]) => `${n}: ${formatMs(s.p50_ms)} / ${formatMs(s.p95_ms)}, ${s.count}`).join("\n")}`
      : "Latency per stage: no requests yet",
  });
}

let polling = false;
let pollAgain = false;

/** Poll now (one poll at a time: a call during one runs again right after it). */
async function poll() {
  clearTimeout(timer);
  if (document.hidden || !els) return;
  if (polling) {
    pollAgain = true;
    return;
  }
  polling = true;
  try {
    await pollOnce();
  } finally {
    polling = false;
  }
  if (pollAgain) {
    pollAgain = false;
    poll();
  } else if (!document.hidden) {
    timer = setTimeout(poll, indexBusy && state.mode !== "simple" ? FAST_MS : SLOW_MS);
  }
}

async function pollOnce() {
  const expert = state.mode === "expert";
  const simple = state.mode === "simple";
  const jobs = [
    (async () => {
      await pollModels();
      let health = null;
      try {
        health = await api("/api/health");
      } catch (err) {
        health = err.body ?? null; // 503 = degraded: the body still names the tasks
      }
      showModels(health);
    })(),
  ];
  if (!simple) jobs.push(pollIndex(), pollCache());
  if (expert) jobs.push(pollLatency());
  const results = await Promise.allSettled(jobs);
  const failed = results.find((r) => r.status === "rejected");
  els.bar.classList.toggle("offline", Boolean(failed && failed.reason?.status === 0));
  if (failed && failed.reason?.status === 0) set(els.model, "server unreachable", { title: failed.reason.message, kind: "error" });
}

function showMode() {
  set(els.mode, MODE_TITLES[state.mode] ?? state.mode, { title: "Mode: Simple, Advanced or Expert (click to change)" });
  for (const key of ["index", "cache"]) els[key].hidden = state.mode === "simple";
  els.latency.hidden = state.mode !== "expert";
}

/** Build the status bar in `container` (#statusbar) and start polling. */
export function mount(container) {
  const left = h("div", { class: "status-left" });
  const right = h("div", { class: "status-right" });
  container.replaceChildren(left, right);
  els = { bar: container, left, right };
  const metrics = () => {
    location.hash = "#/metrics";
  };
  els.mode = item("mode", { action: () => openPalette(">Mode: "), iconName: "layout" });
  els.index = item("index", { action: () => showView("search"), iconName: "database" });
  els.latency = item("latency", { action: metrics, iconName: "pulse" });
  els.custom = h("span", { class: "status-custom" });
  right.append(els.custom);
  els.cache = item("cache", { action: metrics, side: "right", iconName: "chart" });
  els.model = item("model", { action: metrics, side: "right", iconName: "chip" });
  set(els.index, "Index…");
  set(els.cache, "Cache –");
  set(els.model, "models…");
  set(els.latency, "latency…");
  showMode();

  bus.on("status:set", ({ key, text, title }) => {
    if (!key) return;
    let el = els.custom.querySelector(`[data-status="${CSS.escape(key)}"]`);
    if (!text) {
      el?.remove();
      return;
    }
    if (!el) {
      el = h("span", { class: "status-item", dataset: { status: key } }, h("span", { class: "status-text" }));
      els.custom.append(el);
    }
    set(el, text, { title: title ?? "" });
  });
  bus.on("mode:changed", () => {
    showMode();
    poll();
  });
  bus.on("project:changed", () => poll());
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) poll();
    else clearTimeout(timer);
  });
  poll();
}

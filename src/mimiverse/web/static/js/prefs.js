// UI preferences (mode, theme, panel sizes): per user on the server, localStorage as fallback.

import { api } from "./api.js";
import { bus } from "./bus.js";

const KEY = "mimi.prefs";
const MODES = ["simple", "advanced", "expert"];
const THEMES = ["dark", "light"];
const DEFAULTS = { mode: "advanced", theme: "dark", layout: {} };

let current = { ...DEFAULTS, layout: {} };
let serverOk = true;
let pending = {};
let timer = 0;
let warned = false;

function clean(prefs) {
  const out = { ...DEFAULTS, layout: {} };
  if (MODES.includes(prefs?.mode)) out.mode = prefs.mode;
  if (THEMES.includes(prefs?.theme)) out.theme = prefs.theme;
  for (const [key, value] of Object.entries(prefs?.layout ?? {})) {
    if (typeof value === "number" && Number.isFinite(value)) out.layout[key] = value;
  }
  return out;
}

function readLocal() {
  try {
    return JSON.parse(localStorage.getItem(KEY) ?? "null");
  } catch {
    return null;
  }
}

function writeLocal() {
  try {
    localStorage.setItem(KEY, JSON.stringify(current));
  } catch {
    // private mode or full storage: the server copy is the one that counts
  }
}

/** Load the caller's prefs: the server's, else the last ones this browser saw, else defaults. */
export async function loadPrefs() {
  try {
    current = clean(await api("/api/ui/prefs"));
    serverOk = true;
  } catch (err) {
    serverOk = false;
    current = clean(readLocal() ?? DEFAULTS);
    console.warn("prefs: the server's copy is not available; using this browser's", err);
  }
  writeLocal();
  return current;
}

/** The prefs as last loaded or saved. */
export function prefs() {
  return current;
}

/** `later` on top of `earlier` (layout merged by key). */
function merge(earlier, later) {
  const out = { ...earlier, ...later };
  if (earlier.layout || later.layout) out.layout = { ...earlier.layout, ...later.layout };
  return out;
}

let retries = 0;

async function flush() {
  const body = pending;
  pending = {};
  if (!Object.keys(body).length) return;
  try {
    const answer = clean(await api("/api/ui/prefs", { method: "PUT", json: body }));
    // What changed while this was on its way still counts.
    current = clean(merge(answer, pending));
    serverOk = true;
    retries = 0;
    writeLocal();
  } catch (err) {
    serverOk = false;
    const transient = err.status === 0 || err.status === 429 || err.status >= 500;
    if (transient && retries < 5) {
      pending = merge(body, pending); // keep it for the next try
      retries += 1;
      clearTimeout(timer);
      timer = setTimeout(flush, 1000 * 2 ** retries);
    }
    if (!warned) {
      warned = true;
      bus.emit("toast", { kind: "error", text: `Preferences are kept in this browser only: ${err.message}` });
    }
  }
}

/** Change some prefs now (locally) and on the server soon (batched). `layout` merges by key. */
export function savePrefs(partial, { delayMs = 300 } = {}) {
  current = merge(current, partial);
  pending = merge(pending, partial);
  writeLocal();
  clearTimeout(timer);
  timer = setTimeout(flush, delayMs);
}

/** Whether the last exchange with the server's prefs worked. */
export function prefsOnServer() {
  return serverOk;
}

/** Send what is pending now (before the page goes away). */
export function flushPrefs() {
  clearTimeout(timer);
  return flush();
}

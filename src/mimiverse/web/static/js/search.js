// The Search view: hybrid / lexical / semantic codebase search with snippets; a hit opens its
// file at the line (click, Enter or Space; arrow keys move between hits).

import { api } from "./api.js";
import { bus } from "./bus.js";
import { basename, debounce, dirname, h, icon } from "./dom.js";
import { commands, state } from "./state.js";

const MODES = [
  { value: "hybrid", label: "Hybrid" },
  { value: "lexical", label: "Lexical" },
  { value: "semantic", label: "Semantic" },
];
const SNIPPET_LINES = 6;
const LIMIT = 30;
const MODE_KEY = "mimi.search.mode";
const STOP_WORDS = new Set("the and for are how what where which with that this from does did into when why who not all can".split(" "));

let els = null;
let controller = null;
let lastQuery = "";

/** Words of the query worth highlighting (identifiers split at _ and camelCase too). */
export function queryTerms(query) {
  const terms = new Set();
  for (const word of query.match(/[\p{L}\p{N}_]+/gu) ?? []) {
    if (word.length >= 2 && !STOP_WORDS.has(word.toLowerCase())) terms.add(word.toLowerCase());
    for (const part of word.split(/_+|(?<=[a-z0-9])(?=[A-Z])/)) {
      if (part.length >= 3) terms.add(part.toLowerCase());
    }
  }
  return [...terms].sort((a, b) => b.length - a.length);
}

function termPattern(terms) {
  if (!terms.length) return null;
  const escaped = terms.map((t) => t.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  return new RegExp(`(${escaped.join("|")})`, "gi");
}

/** `text` with each term match wrapped in <mark>. */
function marked(text, pattern) {
  if (!pattern) return [text];
  const out = [];
  let last = 0;
  for (const m of text.matchAll(pattern)) {
    if (m.index > last) out.push(text.slice(last, m.index));
    out.push(h("mark", {}, m[0]));
    last = m.index + m[0].length;
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}

/** The lines to show of a hit, around the line that holds the most query terms. */
function excerpt(hit, pattern) {
  const lines = (hit.snippet ?? "").replace(/\s+$/, "").split("\n");
  let best = 0;
  let bestScore = 0;
  if (pattern) {
    lines.forEach((line, i) => {
      const found = new Set([...line.matchAll(pattern)].map((m) => m[0].toLowerCase()));
      if (found.size > bestScore) {
        best = i;
        bestScore = found.size;
      }
    });
  }
  const start = Math.max(0, Math.min(best - 1, lines.length - SNIPPET_LINES));
  return {
    matchLine: (hit.start_line ?? 1) + best,
    start: (hit.start_line ?? 1) + start,
    lines: lines.slice(start, start + SNIPPET_LINES),
  };
}

function hitEl(hit, pattern) {
  const ex = excerpt(hit, pattern);
  const label = `${hit.path} line ${ex.matchLine}${hit.symbol ? `, ${hit.symbol}` : ""}`;
  const code = h(
    "pre",
    { class: "hit-code" },
    ex.lines.map((line, i) =>
      h(
        "span",
        { class: `hit-line${ex.start + i === ex.matchLine ? " hit-line-match" : ""}` },
        h("span", { class: "hit-ln" }, String(ex.start + i)),
        h("code", {}, marked(line, pattern)),
      ),
    ),
  );
  return h(
    "li",
    { class: "hit" },
    h(
      "div",
      {
        class: "search-hit",
        role: "button",
        tabindex: "-1",
        "aria-label": label,
        dataset: { path: hit.path, line: String(ex.matchLine) },
      },
      h(
        "div",
        { class: "hit-head" },
        h("span", { class: "hit-symbol" }, hit.symbol ? marked(hit.symbol, pattern) : `lines ${hit.start_line}–${hit.end_line}`),
        hit.kind ? h("span", { class: "hit-kind" }, hit.kind) : null,
        h("span", { class: "hit-lines" }, `:${ex.matchLine}`),
      ),
      code,
    ),
  );
}

function groupEl(path, hits, pattern) {
  const dir = dirname(path);
  return h(
    "li",
    { class: "hit-group" },
    h(
      "div",
      { class: "hit-file", title: path },
      icon("file", 14),
      h("span", { class: "hit-file-name" }, basename(path)),
      dir ? h("span", { class: "hit-file-dir" }, dir) : null,
      h("span", { class: "badge" }, String(hits.length)),
    ),
    h("ul", { class: "hit-list", role: "list" }, hits.map((hit) => hitEl(hit, pattern))),
  );
}

function setStatus(text, kind = "") {
  els.status.textContent = text;
  els.status.className = `search-status ${kind}`;
}

async function run() {
  const query = els.input.value.trim();
  const mode = els.mode.value;
  controller?.abort();
  if (!query) {
    els.results.replaceChildren();
    setStatus("Search the project by meaning and by words. Enter opens a hit.");
    lastQuery = "";
    return;
  }
  lastQuery = `${mode}:${query}`;
  controller = new AbortController();
  const mine = controller;
  setStatus("Searching…", "busy");
  els.view.setAttribute("aria-busy", "true");
  try {
    const body = await api("/api/codebase/search", {
      method: "POST",
      json: { query, mode, limit: LIMIT, project: state.project || undefined },
      signal: mine.signal,
    });
    if (mine !== controller) return;
    show(body, query);
  } catch (err) {
    if (err.name === "AbortError") return;
    els.results.replaceChildren();
    setStatus(err.message, "error");
  } finally {
    if (mine === controller) els.view.removeAttribute("aria-busy");
  }
}

function show(body, query) {
  const pattern = termPattern(queryTerms(query));
  const hits = body.results ?? [];
  const byFile = new Map();
  for (const hit of hits) {
    if (!byFile.has(hit.path)) byFile.set(hit.path, []);
    byFile.get(hit.path).push(hit);
  }
  els.results.replaceChildren(...[...byFile].map(([path, list]) => groupEl(path, list, pattern)));
  const first = els.results.querySelector(".search-hit");
  if (first) first.tabIndex = 0;
  const files = byFile.size;
  const took = body.took_ms !== undefined ? ` · ${Math.round(body.took_ms)} ms` : "";
  const used = body.mode && body.mode !== els.mode.value ? ` · ran as ${body.mode}` : "";
  const building = body.status && body.status.ready === false ? " · the index is still building" : "";
  if (!hits.length) setStatus(`No results for “${query}”${used}${building}`);
  else setStatus(`${hits.length} result${hits.length === 1 ? "" : "s"} in ${files} file${files === 1 ? "" : "s"}${took}${used}${building}`);
}

function openHit(el) {
  bus.emit("file:open", { path: el.dataset.path, line: Number(el.dataset.line) });
}

function onResultsKey(event) {
  const hit = event.target.closest(".search-hit");
  if (!hit) return;
  const all = [...els.results.querySelectorAll(".search-hit")];
  const i = all.indexOf(hit);
  const go = (el) => {
    if (!el) return;
    for (const other of all) other.tabIndex = -1;
    el.tabIndex = 0;
    el.focus();
    el.scrollIntoView({ block: "nearest" });
  };
  if (event.key === "Enter" || event.key === " ") {
    event.preventDefault();
    openHit(hit);
  } else if (event.key === "ArrowDown") {
    event.preventDefault();
    go(all[i + 1]);
  } else if (event.key === "ArrowUp") {
    event.preventDefault();
    if (i === 0) els.input.focus();
    else go(all[i - 1]);
  } else if (event.key === "Home" || event.key === "End") {
    event.preventDefault();
    go(event.key === "Home" ? all[0] : all[all.length - 1]);
  }
}

/** Build the Search view in `container` (the #region-search region). */
export function mount(container) {
  const input = h("input", {
    id: "search-input",
    class: "input search-input",
    type: "search",
    placeholder: "Search code (Enter)",
    "aria-label": "Search the codebase",
    autocomplete: "off",
    spellcheck: "false",
  });
  let saved = "hybrid";
  try {
    saved = localStorage.getItem(MODE_KEY) || "hybrid";
  } catch {
    saved = "hybrid";
  }
  const mode = h(
    "select",
    { id: "search-mode", class: "input search-mode", "aria-label": "Search mode", title: "Hybrid: words and meaning. Lexical: exact words (BM25). Semantic: meaning (embeddings)." },
    MODES.map((m) => h("option", { value: m.value, selected: m.value === saved }, m.label)),
  );
  const status = h("p", { class: "search-status", role: "status", "aria-live": "polite" });
  const results = h("ul", { class: "search-results", role: "list", "aria-label": "Search results" });
  const view = h("div", { class: "view-body search-body" }, h("div", { class: "search-form" }, input, mode), status, results);
  container.replaceChildren(h("div", { class: "view-head" }, h("h2", { class: "view-title" }, "Search")), view);
  els = { input, mode, status, results, view };

  const typed = debounce(() => {
    const query = input.value.trim();
    if (`${mode.value}:${query}` !== lastQuery && (query.length >= 3 || !query)) run();
  }, 450);
  input.addEventListener("input", typed);
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      typed.cancel();
      run();
    } else if (event.key === "ArrowDown") {
      const first = results.querySelector(".search-hit");
      if (first) {
        event.preventDefault();
        first.tabIndex = 0;
        first.focus();
      }
    } else if (event.key === "Escape" && input.value) {
      event.preventDefault();
      input.value = "";
      run();
    }
  });
  mode.addEventListener("change", () => {
    try {
      localStorage.setItem(MODE_KEY, mode.value);
    } catch {
      // storage off: the choice lasts for this page
    }
    if (input.value.trim()) run();
  });
  results.addEventListener("click", (event) => {
    const hit = event.target.closest(".search-hit");
    if (hit) openHit(hit);
  });
  results.addEventListener("keydown", onResultsKey);
  bus.on("project:changed", () => {
    controller?.abort();
    input.value = "";
    run();
  });
  for (const m of MODES) {
    commands.registerCommand({
      id: `search.mode.${m.value}`,
      title: `Search: Use ${m.label} Search`,
      when: () => mode.value !== m.value,
      run: () => {
        mode.value = m.value;
        mode.dispatchEvent(new Event("change"));
      },
    });
  }
  run();
}

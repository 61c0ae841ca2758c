// The command palette (Ctrl+Shift+P, ">" prefix), quick open of files (Ctrl+P) and go to line
// (Ctrl+G, ":" prefix), with a fuzzy filter. A WAI-ARIA combobox over a listbox in a modal.

import { bus } from "./bus.js";
import { basename, dirname, h, icon, trapFocus } from "./dom.js";
import { allFiles } from "./files.js";
import { commands, keyLabel } from "./state.js";
import { toastError } from "./toasts.js";

const LIMIT = 60;
const RECENT_MAX = 30;
const recent = [];
let built = null;
let items = [];
let active = 0;
let returnFocus = null;
let releaseTrap = null;
let currentPath = null;
let filesPromise = null;

bus.on("file:open", ({ path }) => {
  if (!path) return;
  currentPath = path;
  const at = recent.indexOf(path);
  if (at >= 0) recent.splice(at, 1);
  recent.unshift(path);
  recent.length = Math.min(recent.length, RECENT_MAX);
});
bus.on("file:renamed", ({ path, to }) => {
  const at = recent.indexOf(path);
  if (at >= 0) recent[at] = to;
});
bus.on("file:deleted", ({ path }) => {
  const at = recent.indexOf(path);
  if (at >= 0) recent.splice(at, 1);
});
for (const name of ["project:changed", "file:renamed", "file:deleted"]) {
  bus.on(name, () => {
    filesPromise = null;
  });
}
bus.on("file:changed", ({ changes = [], resync = false }) => {
  // Edits keep the list; files that come or go change it.
  if (resync || changes.some((c) => c.change !== "modified")) filesPromise = null;
});

/**
 * How well `query` matches `text` as a subsequence (case-insensitive): {score, positions} or
 * null. Consecutive letters, the start of a word or segment, and an exact case score higher.
 */
export function fuzzyMatch(query, text) {
  if (!query) return { score: 0, positions: [] };
  return scan(query, text, true) ?? scan(query, text, false);
}

function scan(query, text, preferWordStarts) {
  const q = query.toLowerCase();
  const t = text.toLowerCase();
  const positions = [];
  let score = 0;
  let from = 0;
  let previous = -2;
  for (let i = 0; i < q.length; i += 1) {
    if (q[i] === " ") continue;
    let at = t.indexOf(q[i], from);
    if (at < 0) return null;
    if (preferWordStarts && at !== previous + 1 && !isWordStart(text, at)) {
      for (let j = t.indexOf(q[i], at + 1); j >= 0; j = t.indexOf(q[i], j + 1)) {
        if (isWordStart(text, j)) {
          at = j;
          break;
        }
      }
    }
    score += 1;
    if (at === previous + 1) score += 5;
    if (isWordStart(text, at)) score += 4;
    if (text[at] === query[i]) score += 1;
    positions.push(at);
    previous = at;
    from = at + 1;
  }
  return { score: score - text.length * 0.02, positions };
}

function isWordStart(text, i) {
  if (i === 0) return true;
  const before = text[i - 1];
  const here = text[i];
  return "/\\_-. :".includes(before) || (before === before.toLowerCase() && here !== here.toLowerCase());
}

function highlighted(text, positions, offset = 0) {
  const marks = new Set(positions.map((p) => p - offset).filter((p) => p >= 0 && p < text.length));
  const out = [];
  let run = "";
  let inMark = false;
  for (let i = 0; i <= text.length; i += 1) {
    const mark = marks.has(i);
    if (i === text.length || mark !== inMark) {
      if (run) out.push(inMark ? h("mark", {}, run) : run);
      run = "";
      inMark = mark;
    }
    if (i < text.length) run += text[i];
  }
  return out;
}

function matchFile(query, path) {
  const name = basename(path);
  const byName = fuzzyMatch(query, name);
  if (byName) {
    const offset = path.length - name.length;
    return { score: byName.score + 10, positions: byName.positions.map((p) => p + offset) };
  }
  return fuzzyMatch(query, path);
}

async function fileItems(query) {
  filesPromise ??= allFiles().catch((err) => {
    filesPromise = null;
    throw err;
  });
  const files = await filesPromise;
  const rank = (path) => {
    const r = recent.indexOf(path);
    return r < 0 ? 0 : 20 - Math.min(r, 19) * 0.5;
  };
  const out = [];
  if (!query) {
    const listed = [...recent.filter((p) => files.includes(p)), ...files.filter((p) => !recent.includes(p))];
    for (const path of listed.slice(0, LIMIT)) out.push(fileItem(path, [], recent.includes(path)));
    return out;
  }
  const scored = [];
  for (const path of files) {
    const m = matchFile(query, path);
    if (m) scored.push({ path, score: m.score + rank(path), positions: m.positions });
  }
  scored.sort((a, b) => b.score - a.score || a.path.localeCompare(b.path));
  return scored.slice(0, LIMIT).map((s) => fileItem(s.path, s.positions, recent.includes(s.path)));
}

function fileItem(path, positions, isRecent) {
  const name = basename(path);
  const dir = dirname(path);
  const offset = path.length - name.length;
  return {
    label: highlighted(name, positions, offset),
    detail: dir ? highlighted(dir, positions, 0) : "",
    hint: isRecent ? "recently opened" : "",
    icon: "file",
    name: `${path}${isRecent ? ", recently opened" : ""}`,
    run: () => bus.emit("file:open", { path }),
  };
}

function commandItems(query) {
  const scored = [];
  for (const command of commands.list()) {
    const m = fuzzyMatch(query, command.title);
    if (m) scored.push({ command, ...m });
  }
  if (query) scored.sort((a, b) => b.score - a.score);
  return scored.slice(0, LIMIT).map(({ command, positions }) => ({
    label: highlighted(command.title, positions),
    detail: "",
    hint: command.keys.map(keyLabel).join("  "),
    icon: "sparkle",
    name: command.title,
    run: () => command.run(),
  }));
}

function lineItems(query) {
  const line = Number.parseInt(query, 10);
  if (!currentPath) return [{ label: "Open a file first to go to a line", detail: "", hint: "", icon: "info", name: "No file open", run: null }];
  if (!Number.isFinite(line) || line < 1) {
    return [{ label: `Type a line number to go to in ${basename(currentPath)}`, detail: "", hint: "", icon: "info", name: "Type a line number", run: null }];
  }
  return [
    {
      label: `Go to line ${line}`,
      detail: currentPath,
      hint: "",
      icon: "chevron-right",
      name: `Go to line ${line} in ${currentPath}`,
      run: () => bus.emit("file:open", { path: currentPath, line }),
    },
  ];
}

function build() {
  const input = h("input", {
    id: "palette-input",
    class: "palette-input",
    type: "text",
    role: "combobox",
    "aria-expanded": "true",
    "aria-controls": "palette-list",
    "aria-autocomplete": "list",
    "aria-label": "Search files by name; type > for commands or : for a line number",
    autocomplete: "off",
    spellcheck: "false",
  });
  const list = h("ul", { id: "palette-list", class: "palette-list", role: "listbox", "aria-label": "Results" });
  const hint = h("div", { class: "palette-hint", id: "palette-hint" });
  const dialog = h("div", { class: "palette", role: "dialog", "aria-modal": "true", "aria-label": "Command palette" }, input, hint, list);
  const backdrop = h("div", { class: "palette-backdrop", hidden: true }, dialog);
  backdrop.addEventListener("mousedown", (e) => {
    if (e.target === backdrop) closePalette();
  });
  input.addEventListener("input", () => refresh());
  input.addEventListener("keydown", onKey);
  list.addEventListener("mousedown", (e) => e.preventDefault()); // keep focus in the input
  document.getElementById("overlay-root").append(backdrop);
  return { backdrop, dialog, input, list, hint };
}

function onKey(event) {
  const move = { ArrowDown: 1, ArrowUp: -1, PageDown: 8, PageUp: -8 }[event.key];
  if (move !== undefined) {
    event.preventDefault();
    if (!items.length) return;
    const next = active + move;
    select(Math.abs(move) === 1 ? (next + items.length) % items.length : Math.max(0, Math.min(items.length - 1, next)));
  } else if (event.key === "Enter") {
    event.preventDefault();
    choose(active);
  } else if (event.key === "Escape") {
    event.preventDefault();
    event.stopPropagation();
    closePalette();
  }
}

function select(index) {
  active = index;
  const options = built.list.children;
  for (let i = 0; i < options.length; i += 1) options[i].setAttribute("aria-selected", String(i === index));
  const option = options[index];
  if (option) {
    built.input.setAttribute("aria-activedescendant", option.id);
    option.scrollIntoView({ block: "nearest" });
  } else {
    built.input.removeAttribute("aria-activedescendant");
  }
}

function choose(index) {
  const item = items[index];
  if (!item?.run) return;
  closePalette({ restoreFocus: false });
  Promise.resolve()
    .then(() => item.run())
    .catch((err) => toastError(item.name, err));
}

let generation = 0;

async function refresh() {
  const value = built.input.value;
  const mine = ++generation;
  let mode = "files";
  let query = value.trim();
  if (value.startsWith(">")) {
    mode = "commands";
    query = value.slice(1).trim();
  } else if (value.startsWith(":")) {
    mode = "line";
    query = value.slice(1).trim();
  }
  built.dialog.dataset.mode = mode;
  built.hint.textContent = {
    files: "Go to a file · type > for commands, : for a line",
    commands: "Run a command",
    line: currentPath ? `Go to a line in ${currentPath}` : "Go to a line",
  }[mode];
  let found;
  try {
    found = mode === "commands" ? commandItems(query) : mode === "line" ? lineItems(query) : await fileItems(query);
  } catch (err) {
    found = [{ label: `Cannot list the files: ${err.message}`, detail: "", hint: "", icon: "error", name: "Error", run: null }];
  }
  if (mine !== generation) return;
  if (!found.length) {
    found = [{ label: mode === "commands" ? "No matching commands" : "No matching files", detail: "", hint: "", icon: "info", name: "No results", run: null }];
  }
  items = found;
  built.list.replaceChildren(
    ...found.map((item, i) =>
      h(
        "li",
        {
          id: `palette-option-${i}`,
          class: `palette-item${item.run ? "" : " palette-empty"}`,
          role: "option",
          "aria-selected": "false",
          "aria-disabled": item.run ? false : "true",
          "aria-label": item.name,
          onclick: () => choose(i),
          onmousemove: () => active !== i && select(i),
        },
        icon(item.icon, 14),
        h("span", { class: "palette-label" }, item.label),
        item.detail ? h("span", { class: "palette-detail" }, item.detail) : null,
        item.hint ? h("span", { class: "palette-keys" }, item.hint) : null,
      ),
    ),
  );
  select(0);
}

/** Open the palette with `prefix` typed (">" commands, ":" go to line, "" files). */
export function openPalette(prefix = "") {
  built ??= build();
  if (built.backdrop.hidden) returnFocus = document.activeElement;
  built.backdrop.hidden = false;
  built.input.value = prefix;
  releaseTrap?.();
  releaseTrap = trapFocus(built.dialog);
  built.input.focus();
  refresh();
}

/** Close the palette (focus goes back where it was unless a chosen item moves it). */
export function closePalette({ restoreFocus = true } = {}) {
  if (!built || built.backdrop.hidden) return;
  built.backdrop.hidden = true;
  releaseTrap?.();
  releaseTrap = null;
  if (restoreFocus && returnFocus?.isConnected) returnFocus.focus();
  returnFocus = null;
}

export function paletteOpen() {
  return Boolean(built && !built.backdrop.hidden);
}

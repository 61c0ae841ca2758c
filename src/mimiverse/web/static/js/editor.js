// The editor panel: Monaco with one tab per open file, dirty markers, save (Ctrl/Cmd+S)
// with conflict handling, reload when the file changes on disk, and inline completions.
// Exports the contract's editor API (also set as window.mimi.editor for e2e tests).

import { api } from "./api.js";
import { bus } from "./bus.js";
import { state, commands } from "./state.js";
import { applyTheme, languageFor, loadMonaco } from "./monaco.js";
import { registerInlineCompletions } from "./inline.js";
import { el, ensureStyles } from "./panelkit.js";

const CONTEXT_FILES = 2;
const CONTEXT_FILE_CHARS = 8000;

let monaco = null;
let instance = null;
let ready = null;
let host = null;
let tabbar = null;
let notice = null;
let empty = null;
let compare = null; // {diff, disk, box} while a conflict is being compared
let modelSerial = 0;
const tabs = []; // {path, project, model, sha, savedVersion, language, view, el, deleted, saving}
const opening = new Map();
let active = null;
let inlineEnabled = true;

/** The editor API of the contract. */
export const editor = {
  openFile,
  activePath: () => active?.path ?? null,
  getValue: () => active?.model.getValue() ?? "",
  save: () => save(active),
  isDirty: (path) => Boolean(tabs.find((t) => t.path === path && dirty(t))),
  get monaco() {
    return monaco;
  },
  get instance() {
    return instance;
  },
  ready: () => ready,
};

/** Builds the panel in `container` and starts loading Monaco. */
export function mount(container) {
  ensureStyles();
  const panel = el("div", { class: "editor-panel" });
  container.replaceChildren(panel);
  tabbar = el("div", { class: "editor-tabs", role: "tablist", "aria-label": "Open files" });
  notice = el("div", { class: "editor-notice", role: "alert", hidden: "" });
  const body = el("div", { class: "editor-body" });
  host = el("div", { class: "editor-host", role: "tabpanel", "aria-label": "Editor" });
  empty = el("div", { class: "editor-empty" }, [
    el("p", {}, "No file is open."),
    el("p", { class: "muted" }, "Pick one in the file tree, or press Ctrl+P to open by name."),
  ]);
  body.append(host, empty);
  panel.append(tabbar, notice, body);
  tabbar.addEventListener("keydown", onTabKey);
  window.mimi = window.mimi || {};
  window.mimi.editor = editor;
  ready = start().catch((err) => {
    empty.replaceChildren(el("p", { class: "error" }, err.message));
    bus.emit("toast", { kind: "error", text: err.message });
    throw err;
  });
  ready.catch(() => {});
  wireBus();
  registerCommands();
  window.addEventListener("beforeunload", (event) => {
    if (tabs.some(dirty)) {
      event.preventDefault();
      event.returnValue = "";
    }
  });
  return editor;
}

async function start() {
  monaco = await loadMonaco();
  instance = monaco.editor.create(host, {
    model: null,
    theme: applyTheme(monaco, state.theme),
    automaticLayout: true,
    fontSize: 14,
    minimap: { enabled: false },
    scrollBeyondLastLine: false,
    tabSize: 4,
    inlineSuggest: { enabled: true, showToolbar: "onHover" },
    fixedOverflowWidgets: true,
    ariaLabel: "Code editor",
  });
  instance.addCommand(monaco.KeyMod.CtrlCmd | monaco.KeyCode.KeyS, () => save(active));
  instance.onDidChangeCursorPosition((e) => {
    bus.emit("status:set", {
      key: "cursor",
      text: `Ln ${e.position.lineNumber}, Col ${e.position.column}`,
    });
  });
  registerInlineCompletions(monaco, {
    tabOf: (model) => tabs.find((t) => t.model === model) || null,
    contextFiles,
    enabled: () => inlineEnabled,
  });
  window.mimi.editor = editor;
  showEmpty();
  return editor;
}

// --- tabs ------------------------------------------------------------------------------

/** Opens `path` (or switches to its tab); resolves once it is the active tab. */
export async function openFile(path, where = {}) {
  if (!ready) throw new Error("the editor panel is not mounted yet");
  await ready;
  let tab = tabs.find((t) => t.path === path);
  if (!tab) {
    if (!opening.has(path)) {
      opening.set(
        path,
        load(path).finally(() => opening.delete(path)),
      );
    }
    tab = await opening.get(path);
  }
  activate(tab);
  if (where.line) reveal(where.line, where.column || 1);
  return tab.path;
}

async function load(path) {
  const project = state.project || null;
  let file;
  try {
    file = await api("/api/files/content", { query: withProjectOf(project, { path }) });
  } catch (err) {
    bus.emit("toast", { kind: "error", text: `Cannot open ${path}: ${err.message}` });
    throw err;
  }
  const existing = tabs.find((t) => t.path === path);
  if (existing) return existing;
  const language = languageFor(monaco, file.language, path);
  const name = path.split("/").pop();
  modelSerial += 1;
  const uri = monaco.Uri.from({ scheme: "file", path: `/${modelSerial}/${name}` });
  const model = monaco.editor.createModel(file.content, language, uri);
  const tab = {
    path,
    project,
    model,
    sha: file.sha256,
    savedVersion: model.getAlternativeVersionId(),
    language: file.language || language,
    view: null,
    el: null,
    deleted: false,
    saving: null,
    used: Date.now(),
  };
  tab.el = tabElement(tab);
  model.onDidChangeContent(() => renderTab(tab));
  tabs.push(tab);
  tabbar.append(tab.el);
  return tab;
}

function tabElement(tab) {
  const name = el("span", { class: "tab-name" });
  const mark = el("span", { class: "tab-dirty", "aria-hidden": "true" }, "●");
  const close = el("button", {
    class: "tab-close",
    type: "button",
    tabindex: "-1",
    title: "Close",
  }, "×");
  const node = el("div", { class: "editor-tab", role: "tab", tabindex: "-1" }, [name, mark, close]);
  node.addEventListener("click", (e) => {
    if (e.target === close) return;
    activate(tab);
  });
  node.addEventListener("auxclick", (e) => {
    if (e.button === 1) closeTab(tab);
  });
  close.addEventListener("click", (e) => {
    e.stopPropagation();
    closeTab(tab);
  });
  tab.el = node;
  renderTab(tab);
  return node;
}

function renderTab(tab) {
  const node = tab.el;
  if (!node) return;
  const name = tab.path.split("/").pop();
  node.dataset.path = tab.path;
  node.title = tab.project ? `${tab.path} (${tab.project})` : tab.path;
  node.querySelector(".tab-name").textContent = name;
  node.querySelector(".tab-close").setAttribute("aria-label", `Close ${name}`);
  node.classList.toggle("dirty", dirty(tab));
  node.classList.toggle("deleted", tab.deleted);
  const selected = tab === active;
  node.classList.toggle("active", selected);
  node.setAttribute("aria-selected", String(selected));
  node.tabIndex = selected ? 0 : -1;
  const note = dirty(tab) ? ", unsaved changes" : "";
  node.setAttribute("aria-label", `${name}${note}${tab.deleted ? ", deleted on disk" : ""}`);
}

function dirty(tab) {
  return tab.model.getAlternativeVersionId() !== tab.savedVersion;
}

function activate(tab) {
  if (!instance) return;
  closeCompare();
  if (active && active !== tab && active.model === instance.getModel()) {
    active.view = instance.saveViewState();
  }
  const previous = active;
  active = tab;
  tab.used = Date.now();
  if (instance.getModel() !== tab.model) {
    instance.setModel(tab.model);
    if (tab.view) instance.restoreViewState(tab.view);
  }
  if (previous) renderTab(previous);
  renderTab(tab);
  if (notice.dataset.path && notice.dataset.path !== tab.path) hideNotice();
  showEmpty();
  instance.focus();
  bus.emit("status:set", { key: "language", text: tab.model.getLanguageId() });
}

function closeTab(tab, { force = false } = {}) {
  if (!force && dirty(tab)) {
    const ok = window.confirm(`${tab.path} has unsaved changes. Close it and lose them?`);
    if (!ok) return false;
  }
  const index = tabs.indexOf(tab);
  if (index < 0) return true;
  if (compare?.tab === tab) closeCompare();
  tabs.splice(index, 1);
  tab.el.remove();
  if (notice.dataset.path === tab.path) hideNotice();
  if (active === tab) {
    active = null;
    const next = tabs[index] || tabs[index - 1];
    if (next) activate(next);
    else {
      closeCompare();
      instance.setModel(null);
    }
  }
  tab.model.dispose();
  showEmpty();
  return true;
}

function showEmpty() {
  const none = !active;
  empty.hidden = !none;
  host.classList.toggle("hidden", none);
}

function reveal(line, column) {
  instance.revealLineInCenter(line);
  instance.setPosition({ lineNumber: line, column });
  instance.focus();
}

function onTabKey(event) {
  const current = tabs.findIndex((t) => t.el === document.activeElement);
  if (current < 0) return;
  const move = (to) => {
    const tab = tabs[(to + tabs.length) % tabs.length];
    tab.el.focus();
  };
  if (event.key === "ArrowRight") move(current + 1);
  else if (event.key === "ArrowLeft") move(current - 1);
  else if (event.key === "Home") move(0);
  else if (event.key === "End") move(tabs.length - 1);
  else if (event.key === "Enter" || event.key === " ") activate(tabs[current]);
  else if (event.key === "Delete") closeTab(tabs[current]);
  else return;
  event.preventDefault();
}

function contextFiles(model) {
  return tabs
    .filter((t) => t.model !== model)
    .sort((a, b) => b.used - a.used)
    .slice(0, CONTEXT_FILES)
    .map((t) => ({ path: t.path, text: t.model.getValue().slice(0, CONTEXT_FILE_CHARS) }));
}

// --- saving and conflicts --------------------------------------------------------------

async function save(tab, { overwrite = false } = {}) {
  if (!tab) return false;
  if (tab.saving) return tab.saving;
  if (!overwrite && !dirty(tab) && !tab.deleted) return true;
  tab.saving = (async () => {
    const content = tab.model.getValue();
    const version = tab.model.getAlternativeVersionId();
    const body = withProjectOf(tab.project, { path: tab.path, content });
    if (!overwrite && tab.sha) body.base_sha256 = tab.sha;
    try {
      const saved = await api("/api/files/content", { method: "PUT", json: body });
      tab.sha = saved.sha256;
      tab.savedVersion = version;
      tab.deleted = false;
      renderTab(tab);
      if (notice.dataset.path === tab.path) hideNotice();
      bus.emit("file:saved", { path: tab.path });
      return true;
    } catch (err) {
      if (err.status === 409) {
        conflict(tab);
      } else {
        bus.emit("toast", { kind: "error", text: `Could not save ${tab.path}: ${err.message}` });
      }
      return false;
    } finally {
      tab.saving = null;
    }
  })();
  return tab.saving;
}

function conflict(tab) {
  showNotice(tab, `${tab.path} changed on disk since you opened it. Your edits are still here; choose what to keep.`, [
    ["Compare", () => openCompare(tab)],
    ["Overwrite the file with mine", () => save(tab, { overwrite: true })],
    ["Reload from disk (Ctrl+Z brings mine back)", () => reload(tab, { force: true })],
  ]);
}

function showNotice(tab, text, actions) {
  notice.replaceChildren(el("span", { class: "notice-text" }, text));
  for (const [label, run] of actions) {
    const button = el("button", { type: "button" }, label);
    button.addEventListener("click", run);
    notice.append(button);
  }
  const dismiss = el("button", { type: "button", class: "notice-close", "aria-label": "Dismiss" }, "×");
  dismiss.addEventListener("click", hideNotice);
  notice.append(dismiss);
  notice.dataset.path = tab.path;
  notice.hidden = false;
}

function hideNotice() {
  notice.hidden = true;
  notice.replaceChildren();
  delete notice.dataset.path;
}

/** Puts the disk's text in the tab; an edit, so Ctrl+Z gets the previous text back. */
async function reload(tab, { force = false } = {}) {
  let file;
  try {
    file = await api("/api/files/content", { query: withProjectOf(tab.project, { path: tab.path }) });
  } catch (err) {
    if (err.status === 404) {
      markDeleted(tab);
      return;
    }
    bus.emit("toast", { kind: "error", text: `Could not reload ${tab.path}: ${err.message}` });
    return;
  }
  if (!force && dirty(tab)) return; // typed while we fetched: keep the user's text
  if (tab.model.getValue() !== file.content) {
    const view = tab === active ? instance.saveViewState() : null;
    tab.model.pushStackElement();
    tab.model.pushEditOperations([], [{ range: tab.model.getFullModelRange(), text: file.content }], () => null);
    tab.model.pushStackElement();
    if (view) instance.restoreViewState(view);
  }
  tab.sha = file.sha256;
  tab.savedVersion = tab.model.getAlternativeVersionId();
  tab.deleted = false;
  closeCompare();
  if (notice.dataset.path === tab.path) hideNotice();
  renderTab(tab);
}

async function openCompare(tab) {
  let file;
  try {
    file = await api("/api/files/content", { query: withProjectOf(tab.project, { path: tab.path }) });
  } catch (err) {
    bus.emit("toast", { kind: "error", text: `Could not read ${tab.path}: ${err.message}` });
    return;
  }
  if (active !== tab) activate(tab);
  closeCompare();
  const box = el("div", { class: "editor-compare", role: "region", "aria-label": `Compare ${tab.path}` });
  const bar = el("div", { class: "compare-bar" }, [
    el("span", {}, "Left: on disk now · Right: yours (editable)"),
  ]);
  const keep = el("button", { type: "button" }, "Keep mine (overwrite)");
  const take = el("button", { type: "button" }, "Use the disk version");
  const done = el("button", { type: "button" }, "Close compare");
  keep.addEventListener("click", () => save(tab, { overwrite: true }).then((ok) => ok && closeCompare()));
  take.addEventListener("click", () => reload(tab, { force: true }));
  done.addEventListener("click", closeCompare);
  bar.append(keep, take, done);
  const view = el("div", { class: "compare-host" });
  box.append(bar, view);
  host.parentElement.append(box);
  const disk = monaco.editor.createModel(file.content, tab.model.getLanguageId());
  const diff = monaco.editor.createDiffEditor(view, {
    automaticLayout: true,
    originalEditable: false,
    renderSideBySide: true,
  });
  diff.setModel({ original: disk, modified: tab.model });
  compare = { diff, disk, box, tab };
}

function closeCompare() {
  if (!compare) return;
  const { diff, disk, box } = compare;
  compare = null;
  diff.setModel(null);
  diff.dispose();
  disk.dispose();
  box.remove();
}

function markDeleted(tab) {
  if (!dirty(tab)) {
    closeTab(tab, { force: true });
    return;
  }
  tab.deleted = true;
  tab.sha = null;
  renderTab(tab);
  showNotice(tab, `${tab.path} was deleted on disk. Your text is still here; save to create it again.`, [
    ["Save it again", () => save(tab, { overwrite: true })],
  ]);
}

// --- bus and commands ------------------------------------------------------------------

function wireBus() {
  bus.on("file:open", (d) => {
    if (d?.path) openFile(d.path, { line: d.line, column: d.column }).catch(() => {});
  });
  bus.on("file:changed", (d) => onDiskChanges(d?.changes || []));
  bus.on("file:renamed", (d) => {
    if (!d?.path || !d?.to) return;
    for (const tab of tabs) {
      if (tab.path === d.path) tab.path = d.to;
      else if (tab.path.startsWith(`${d.path}/`)) tab.path = d.to + tab.path.slice(d.path.length);
      else continue;
      renderTab(tab);
    }
  });
  bus.on("file:deleted", (d) => {
    if (!d?.path) return;
    for (const tab of [...tabs]) {
      if (tab.path === d.path || tab.path.startsWith(`${d.path}/`)) markDeleted(tab);
    }
  });
  bus.on("theme:changed", (d) => {
    // the body's theme (and so the CSS variables) may change after the event
    if (monaco) requestAnimationFrame(() => applyTheme(monaco, d?.theme));
  });
  bus.on("layout:changed", () => {
    instance?.layout();
    compare?.diff.layout();
  });
  bus.on("project:changed", () => {
    for (const tab of [...tabs]) {
      if (!dirty(tab)) closeTab(tab, { force: true });
    }
  });
}

function onDiskChanges(changes) {
  for (const change of changes) {
    for (const tab of tabs) {
      if (tab.path !== change.path || (tab.project || null) !== (state.project || null)) continue;
      if (change.change === "deleted") {
        if (!tab.saving) markDeleted(tab);
      } else if (!dirty(tab) && !tab.saving) {
        reload(tab);
      }
    }
  }
}

function registerCommands() {
  const register = commands?.registerCommand?.bind(commands);
  if (!register) return;
  register({ id: "editor.save", title: "File: Save", keys: "Ctrl+S", run: () => save(active) });
  register({
    id: "editor.close",
    title: "File: Close editor",
    run: () => active && closeTab(active),
  });
  register({
    id: "editor.toggleInline",
    title: "Editor: Toggle inline completions",
    run: () => {
      inlineEnabled = !inlineEnabled;
      bus.emit("toast", { kind: "info", text: `Inline completions ${inlineEnabled ? "on" : "off"}` });
    },
  });
  register({
    id: "editor.triggerInline",
    title: "Editor: Suggest inline completion",
    keys: "Alt+\\",
    run: () => instance?.trigger("keyboard", "editor.action.inlineSuggest.trigger", {}),
  });
}

function withProjectOf(project, query) {
  return project ? { project, ...query } : { ...query };
}

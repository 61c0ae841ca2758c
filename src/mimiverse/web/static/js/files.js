// The Explorer: a lazy file tree (WAI-ARIA tree pattern) with create, rename, delete, upload
// (button and drag-drop), a context menu, and live updates from WS /api/files/watch.

import { api, withProject, wsUrl } from "./api.js";
import { bus } from "./bus.js";
import { confirmDialog } from "./dialog.js";
import { basename, dirname, formatBytes, h, icon } from "./dom.js";
import { commands, state } from "./state.js";
import { toastError } from "./toasts.js";

const SKIP_IN_LISTING = new Set(["node_modules", ".venv", "venv", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".tox", "dist", "build", ".next", "target"]);
const MAX_LIST_FOLDERS = 250;
const MAX_LIST_FILES = 50_000;

const folders = new Map(); // folder path → entries (loaded folders only)
const loading = new Map(); // folder path → promise
const expanded = new Set([""]);
let selected = "";
let editing = null; // {type: "rename", path} | {type: "new", kind, parent}
let els = null;
let watcher = null;
let menu = null;

/** Every file path of the current project (skips vendored/build folders; capped). */
export async function allFiles() {
  const files = [];
  const queue = [""];
  let visited = 0;
  while (queue.length && visited < MAX_LIST_FOLDERS && files.length < MAX_LIST_FILES) {
    const batch = queue.splice(0, 6);
    visited += batch.length;
    const listings = await Promise.all(batch.map((path) => entriesOf(path, { cached: true })));
    for (const entries of listings) {
      for (const entry of entries) {
        if (entry.kind === "dir") {
          if (!SKIP_IN_LISTING.has(entry.name)) queue.push(entry.path);
        } else {
          files.push(entry.path);
        }
      }
    }
  }
  return files.sort();
}

function fetchEntries(path) {
  return api("/api/files/tree", { query: withProject({ path }) }).then((body) => body.entries ?? []);
}

async function entriesOf(path, { cached = false } = {}) {
  if (cached && folders.has(path)) return folders.get(path);
  if (loading.has(path)) return loading.get(path).request;
  return fetchEntries(path);
}

/** List `path` again; a listing that an older request brings back late never wins. */
async function loadFolder(path) {
  const request = fetchEntries(path);
  const mine = { request };
  loading.set(path, mine);
  try {
    const entries = await request;
    if (loading.get(path) === mine || !folders.has(path)) folders.set(path, entries);
    return folders.get(path) ?? entries;
  } finally {
    if (loading.get(path) === mine) loading.delete(path);
  }
}

function byTreeOrder(a, b) {
  if (a.kind !== b.kind) return a.kind === "dir" ? -1 : 1;
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/** Show a change the server confirmed right away; the next listing confirms it. */
function putLocal(entry) {
  const parent = dirname(entry.path);
  const list = folders.get(parent);
  if (!list) return;
  folders.set(parent, [...list.filter((e) => e.path !== entry.path), entry].sort(byTreeOrder));
}

function dropLocal(path) {
  const parent = dirname(path);
  const list = folders.get(parent);
  if (list) folders.set(parent, list.filter((e) => e.path !== path));
}

function refreshSoon(paths) {
  reload(paths).catch((err) => console.warn("explorer: refresh failed", err));
}

function entryOf(path) {
  if (path === "") return { path: "", name: "", kind: "dir" };
  return (folders.get(dirname(path)) ?? []).find((e) => e.path === path) ?? null;
}

function targetFolder() {
  const entry = entryOf(selected);
  if (!entry) return "";
  return entry.kind === "dir" ? entry.path : dirname(entry.path);
}

// --- rendering -------------------------------------------------------------------------------

function row(entry, depth, index, count) {
  const isDir = entry.kind === "dir";
  const open = isDir && expanded.has(entry.path);
  const renaming = editing?.type === "rename" && editing.path === entry.path;
  const label = renaming ? renameInput(entry) : h("span", { class: "tree-name" }, entry.name);
  const li = h(
    "li",
    {
      role: "treeitem",
      class: `tree-item ${isDir ? "is-dir" : "is-file"}`,
      "aria-label": entry.name,
      "aria-level": String(depth),
      "aria-setsize": String(count),
      "aria-posinset": String(index + 1),
      "aria-selected": String(entry.path === selected),
      "aria-expanded": isDir ? String(open) : false,
      tabindex: entry.path === selected ? "0" : "-1",
      title: isDir ? entry.path : `${entry.path}${entry.size != null ? ` · ${formatBytes(entry.size)}` : ""}`,
      dataset: { path: entry.path, kind: entry.kind },
    },
    h(
      "div",
      { class: "tree-row", style: { "--depth": String(depth - 1) } },
      h("span", { class: "tree-twisty" }, isDir ? icon(open ? "chevron-down" : "chevron-right", 14) : null),
      icon(isDir ? (open ? "folder-open" : "folder") : "file", 15),
      label,
    ),
  );
  if (open) li.append(group(entry.path, depth + 1));
  return li;
}

function group(path, depth) {
  const ul = h("ul", { role: "group", class: "tree-group" });
  const entries = folders.get(path);
  if (!entries) {
    ul.append(h("li", { role: "none", class: "tree-note", style: { "--depth": String(depth - 1) } }, "Loading…"));
    return ul;
  }
  if (editing?.type === "new" && editing.parent === path) ul.append(newRow(depth));
  entries.forEach((entry, i) => ul.append(row(entry, depth, i, entries.length)));
  return ul;
}

function render() {
  if (!els) return;
  const hadFocus = els.tree.contains(document.activeElement) && document.activeElement.matches("[role=treeitem]");
  const entries = folders.get("");
  const items = [];
  if (editing?.type === "new" && editing.parent === "") items.push(newRow(1));
  (entries ?? []).forEach((entry, i) => items.push(row(entry, 1, i, entries.length)));
  els.tree.replaceChildren(...items);
  els.empty.hidden = !(entries && entries.length === 0 && !editing);
  if (!els.tree.querySelector('[role=treeitem][tabindex="0"]')) {
    els.tree.querySelector("[role=treeitem]")?.setAttribute("tabindex", "0");
  }
  if (hadFocus) focusItem(selected);
  const input = els.tree.querySelector("input.tree-input");
  if (input && document.activeElement !== input) {
    input.focus();
    const dot = input.value.lastIndexOf(".");
    input.setSelectionRange(0, editing?.type === "rename" && dot > 0 ? dot : input.value.length);
  }
}

function itemEl(path) {
  return els?.tree.querySelector(`[role=treeitem][data-path="${CSS.escape(path)}"]`) ?? null;
}

function visibleItems() {
  return [...els.tree.querySelectorAll("[role=treeitem]")];
}

function select(path, { focus = true } = {}) {
  selected = path;
  for (const el of visibleItems()) {
    const on = el.dataset.path === path;
    el.setAttribute("aria-selected", String(on));
    el.setAttribute("tabindex", on ? "0" : "-1");
  }
  if (focus) focusItem(path);
}

function focusItem(path) {
  const el = itemEl(path);
  if (el) {
    el.focus({ preventScroll: true });
    el.scrollIntoView({ block: "nearest" });
  }
}

// --- folders ---------------------------------------------------------------------------------

async function expand(path) {
  expanded.add(path);
  if (!folders.has(path)) {
    render();
    try {
      await loadFolder(path);
    } catch (err) {
      expanded.delete(path);
      toastError(`Cannot open the folder ${path}`, err);
    }
  }
  render();
}

function collapse(path) {
  expanded.delete(path);
  render();
}

async function toggle(path) {
  if (expanded.has(path)) collapse(path);
  else await expand(path);
}

async function reload(paths = [...folders.keys()]) {
  await Promise.all(
    paths.map(async (path) => {
      try {
        await loadFolder(path);
      } catch (err) {
        if (err.status === 404) {
          folders.delete(path);
          expanded.delete(path);
        } else if (path === "") {
          throw err;
        }
      }
    }),
  );
  for (const path of [...folders.keys()]) {
    if (path && !entryOf(path)) {
      folders.delete(path);
      expanded.delete(path);
    }
  }
  render();
}

/** Expand the folders above `path` and select it (without moving focus). */
async function reveal(path) {
  const parts = path.split("/");
  for (let i = 1; i < parts.length; i += 1) {
    const folder = parts.slice(0, i).join("/");
    expanded.add(folder);
    if (!folders.has(folder)) {
      try {
        await loadFolder(folder);
      } catch {
        return;
      }
    }
  }
  selected = path;
  render();
  itemEl(path)?.scrollIntoView({ block: "nearest" });
}

// --- actions ---------------------------------------------------------------------------------

function open(path, line) {
  bus.emit("file:open", line ? { path, line } : { path });
}

function startNew(kind, parent = targetFolder()) {
  editing = { type: "new", kind, parent };
  if (parent) {
    expand(parent);
  } else {
    render();
  }
}

function newRow(depth) {
  const kind = editing.kind;
  const where = editing.parent ? `${editing.parent}/` : "the project root";
  const input = h("input", {
    class: "tree-input",
    type: "text",
    "aria-label": `New ${kind === "dir" ? "folder" : "file"} name in ${where}`,
    placeholder: kind === "dir" ? "folder name" : "file name (a/b.py makes folders)",
    spellcheck: "false",
    autocomplete: "off",
  });
  wireInput(input, (name) => createEntry(kind, editing.parent, name));
  return h(
    "li",
    { role: "none", class: "tree-item tree-editing" },
    h("div", { class: "tree-row", style: { "--depth": String(depth - 1) } }, h("span", { class: "tree-twisty" }), icon(kind === "dir" ? "folder" : "file", 15), input),
  );
}

function renameInput(entry) {
  const input = h("input", {
    class: "tree-input",
    type: "text",
    value: entry.name,
    "aria-label": `Rename ${entry.path}`,
    spellcheck: "false",
    autocomplete: "off",
  });
  wireInput(input, (name) => renameEntry(entry, name));
  return input;
}

function wireInput(input, commit) {
  let done = false;
  const finish = async (save) => {
    if (done || !input.isConnected) return;
    done = true;
    const name = input.value.trim();
    if (save && name) {
      const ok = await commit(name);
      if (!ok) {
        done = false;
        input.focus();
        return;
      }
    } else {
      const back = editing?.type === "rename" ? editing.path : selected;
      editing = null;
      render();
      focusItem(back);
    }
  };
  input.addEventListener("keydown", (event) => {
    event.stopPropagation();
    if (event.key === "Enter") {
      event.preventDefault();
      finish(true);
    } else if (event.key === "Escape") {
      event.preventDefault();
      finish(false);
    }
  });
  input.addEventListener("blur", () => setTimeout(() => finish(true), 0));
  input.addEventListener("click", (event) => event.stopPropagation());
}

function badName(name) {
  if (name.startsWith("/") || name.split("/").some((p) => p === ".." || p === "." || p === "")) {
    return "use a name inside the project (no leading /, no '..' or empty parts)";
  }
  return null;
}

async function createEntry(kind, parent, name) {
  const problem = badName(name);
  if (problem) {
    toastError("Cannot create", new Error(problem));
    return false;
  }
  const path = parent ? `${parent}/${name}` : name;
  try {
    await api("/api/files", { method: "POST", json: { project: state.project || undefined, path, kind } });
  } catch (err) {
    toastError(`Cannot create ${path}`, err);
    return false;
  }
  editing = null;
  const first = name.split("/")[0];
  const top = parent ? `${parent}/${first}` : first;
  putLocal({ path: top, name: first, kind: top === path ? kind : "dir", size: top === path && kind === "file" ? 0 : null });
  const parts = path.split("/");
  for (let i = 1; i < parts.length; i += 1) expanded.add(parts.slice(0, i).join("/"));
  render();
  select(top);
  await reload([...new Set([...folders.keys(), ...expanded])]).catch((err) => toastError("Cannot refresh the Explorer", err));
  if (path !== top || selected !== path) select(path);
  if (kind === "file") open(path);
  return true;
}

async function renameEntry(entry, name) {
  if (name === entry.name) {
    editing = null;
    render();
    focusItem(entry.path);
    return true;
  }
  const problem = badName(name);
  if (problem) {
    toastError("Cannot rename", new Error(problem));
    return false;
  }
  const parent = dirname(entry.path);
  const to = parent ? `${parent}/${name}` : name;
  try {
    await api("/api/files/rename", { method: "POST", json: { project: state.project || undefined, path: entry.path, to } });
  } catch (err) {
    toastError(`Cannot rename ${entry.path}`, err);
    return false;
  }
  editing = null;
  moveState(entry.path, to);
  dropLocal(entry.path);
  putLocal({ ...entry, path: to, name });
  render();
  select(to);
  bus.emit("file:renamed", { path: entry.path, to });
  refreshSoon([...new Set([...folders.keys(), dirname(to)])]);
  return true;
}

function moveState(from, to) {
  const moved = (p) => (p === from ? to : p.startsWith(`${from}/`) ? to + p.slice(from.length) : p);
  for (const p of [...expanded]) {
    expanded.delete(p);
    expanded.add(moved(p));
  }
  for (const p of [...folders.keys()]) {
    if (p === from || p.startsWith(`${from}/`)) folders.delete(p);
  }
}

function startRename(path = selected) {
  if (!path) return;
  editing = { type: "rename", path };
  render();
}

async function remove(path = selected) {
  const entry = entryOf(path);
  if (!entry || !path) return;
  const isDir = entry.kind === "dir";
  const ok = await confirmDialog({
    title: isDir ? `Delete the folder ${entry.name}?` : `Delete ${entry.name}?`,
    message: isDir ? `${path} and everything in it will be deleted from disk.` : `${path} will be deleted from disk.`,
    confirm: "Delete",
    danger: true,
  });
  if (!ok) return;
  try {
    await api("/api/files", { method: "DELETE", query: withProject({ path, recursive: isDir ? "true" : undefined }) });
  } catch (err) {
    toastError(`Cannot delete ${path}`, err);
    return;
  }
  const siblings = visibleItems().map((el) => el.dataset.path);
  const at = siblings.indexOf(path);
  moveState(path, "\u0000gone");
  expanded.delete("\u0000gone");
  dropLocal(path);
  render();
  const next = siblings.slice(at + 1).find((p) => !p.startsWith(`${path}/`) && itemEl(p)) ?? siblings.slice(0, at).reverse().find((p) => itemEl(p)) ?? "";
  select(next);
  bus.emit("file:deleted", { path });
  refreshSoon([...folders.keys()]);
}

async function upload(fileList, dir = targetFolder(), { overwrite = false } = {}) {
  const chosen = [...(fileList ?? [])];
  if (!chosen.length) return;
  const form = new FormData();
  for (const file of chosen) form.append("files", file, file.name);
  const where = dir || "the project root";
  let body;
  try {
    body = await api("/api/files/upload", { method: "POST", query: withProject({ dir, overwrite: overwrite ? "true" : undefined }), body: form });
  } catch (err) {
    if (err.status === 409 && !overwrite) {
      const replace = await confirmDialog({ title: "Replace existing files?", message: err.message, confirm: "Replace", danger: true });
      if (replace) await upload(chosen, dir, { overwrite: true });
      return;
    }
    toastError(`Cannot upload to ${where}`, err);
    return;
  }
  const paths = body?.paths ?? [];
  bus.emit("toast", { kind: "success", text: `Uploaded ${paths.length} file${paths.length === 1 ? "" : "s"} to ${where}` });
  if (dir) expanded.add(dir);
  await reload([...new Set([...folders.keys(), dir])]).catch((err) => toastError("Cannot refresh the Explorer", err));
  if (paths[0]) select(paths[0], { focus: false });
}

function copyPath(path = selected) {
  navigator.clipboard?.writeText(path).then(
    () => bus.emit("toast", { kind: "info", text: `Copied ${path}` }),
    (err) => toastError("Cannot copy the path", err),
  );
}

function collapseAll() {
  expanded.clear();
  expanded.add("");
  if (selected.includes("/")) selected = selected.split("/")[0];
  render();
}

// --- context menu ------------------------------------------------------------------------------

function closeMenu({ focus = true } = {}) {
  if (!menu) return;
  const gone = menu;
  menu = null; // first: removing the focused item fires focusout, which closes too
  gone.remove();
  if (focus) focusItem(selected);
}

function openMenu(path, x, y) {
  closeMenu({ focus: false });
  const entry = entryOf(path);
  const isFile = entry?.kind === "file";
  const actions = [
    isFile && { label: "Open", keys: "Enter", run: () => open(path) },
    { label: "New File…", run: () => startNew("file") },
    { label: "New Folder…", run: () => startNew("dir") },
    { label: "Upload Files…", run: () => els.picker.click() },
    path && { label: "Rename…", keys: "F2", run: () => startRename(path) },
    path && { label: "Delete", keys: "Delete", run: () => remove(path), danger: true },
    path && { label: "Copy Path", run: () => copyPath(path) },
  ].filter(Boolean);
  const buttons = actions.map((a) =>
    h(
      "button",
      { type: "button", role: "menuitem", class: `menu-item${a.danger ? " danger" : ""}`, tabindex: "-1" },
      h("span", {}, a.label),
      a.keys ? h("kbd", {}, a.keys) : null,
    ),
  );
  menu = h("div", { class: "menu", role: "menu", "aria-label": path ? `Actions for ${path}` : "Explorer actions" }, buttons);
  buttons.forEach((b, i) =>
    b.addEventListener("click", () => {
      closeMenu({ focus: false });
      if (path) select(path);
      actions[i].run();
    }),
  );
  menu.addEventListener("keydown", (event) => {
    const i = buttons.indexOf(document.activeElement);
    const go = { ArrowDown: 1, ArrowUp: -1 }[event.key];
    if (go) {
      event.preventDefault();
      buttons[(i + go + buttons.length) % buttons.length].focus();
    } else if (event.key === "Home" || event.key === "End") {
      event.preventDefault();
      buttons[event.key === "Home" ? 0 : buttons.length - 1].focus();
    } else if (event.key === "Escape" || event.key === "Tab") {
      event.preventDefault();
      closeMenu();
    }
  });
  menu.addEventListener("focusout", (event) => {
    if (menu && !menu.contains(event.relatedTarget)) closeMenu({ focus: false });
  });
  document.getElementById("overlay-root").append(menu);
  const box = menu.getBoundingClientRect();
  menu.style.left = `${Math.min(x, innerWidth - box.width - 4)}px`;
  menu.style.top = `${Math.min(y, innerHeight - box.height - 4)}px`;
  buttons[0].focus();
}

// --- keyboard (WAI-ARIA tree) -------------------------------------------------------------------

let typed = "";
let typedAt = 0;

function onTreeKey(event) {
  const current = event.target.closest("[role=treeitem]");
  if (!current || event.target.matches("input")) return;
  const items = visibleItems();
  const i = items.indexOf(current);
  const path = current.dataset.path;
  const isDir = current.dataset.kind === "dir";
  const isOpen = current.getAttribute("aria-expanded") === "true";
  const go = (el) => el && select(el.dataset.path);
  const handled = () => {
    event.preventDefault();
    event.stopPropagation();
  };
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  switch (event.key) {
    case "ArrowDown":
      handled();
      go(items[i + 1]);
      return;
    case "ArrowUp":
      handled();
      go(items[i - 1]);
      return;
    case "Home":
      handled();
      go(items[0]);
      return;
    case "End":
      handled();
      go(items[items.length - 1]);
      return;
    case "ArrowRight":
      handled();
      if (isDir && !isOpen) expand(path);
      else if (isDir) go(current.querySelector("[role=treeitem]"));
      return;
    case "ArrowLeft":
      handled();
      if (isDir && isOpen) collapse(path);
      else go(current.parentElement.closest("[role=treeitem]"));
      return;
    case "Enter":
    case " ":
      handled();
      if (isDir) toggle(path);
      else open(path);
      return;
    case "F2":
      handled();
      startRename(path);
      return;
    case "Delete":
      handled();
      remove(path);
      return;
    case "ContextMenu":
      handled();
      menuAt(current);
      return;
    case "F10":
      if (event.shiftKey) {
        handled();
        menuAt(current);
      }
      return;
    default:
      if (event.key.length === 1 && /\S/.test(event.key)) {
        handled();
        const now = Date.now();
        typed = now - typedAt < 700 ? typed + event.key.toLowerCase() : event.key.toLowerCase();
        typedAt = now;
        const order = [...items.slice(i + (typed.length === 1 ? 1 : 0)), ...items.slice(0, i + 1)];
        go(order.find((el) => el.getAttribute("aria-label").toLowerCase().startsWith(typed)));
      }
  }
}

let menuByKeyAt = 0;

function menuAt(item) {
  menuByKeyAt = Date.now();
  const box = item.querySelector(".tree-row").getBoundingClientRect();
  openMenu(item.dataset.path, box.left + 24, box.bottom);
}

// --- live updates ------------------------------------------------------------------------------

let pendingDirs = new Set();
let flushTimer = 0;

function onChanges(changes) {
  bus.emit("file:changed", { changes });
  for (const { path } of changes) {
    pendingDirs.add(dirname(path));
    if (folders.has(path)) pendingDirs.add(path);
  }
  clearTimeout(flushTimer);
  flushTimer = setTimeout(() => {
    const dirs = [...pendingDirs].filter((d) => folders.has(d));
    pendingDirs = new Set();
    if (dirs.length && !editing) reload(dirs).catch((err) => console.warn("explorer: refresh failed", err));
    else if (dirs.length) dirs.forEach((d) => pendingDirs.add(d));
  }, 120);
}

function connect() {
  watcher?.close();
  let retry = 1000;
  let closedOnPurpose = false;
  const project = state.project;
  const dial = () => {
    const ws = new WebSocket(wsUrl("/api/files/watch", withProject()));
    ws.addEventListener("open", () => {
      retry = 1000;
      setLive(true);
      if (ws.reconnected) reload().catch(() => {});
    });
    ws.addEventListener("message", (event) => {
      try {
        const msg = JSON.parse(event.data);
        if (msg.type === "changes" && Array.isArray(msg.changes)) onChanges(msg.changes);
        else if (msg.type === "resync") {
          // Too many changes at once to list: reload every open folder.
          bus.emit("file:changed", { changes: [], resync: true });
          reload().catch((err) => console.warn("explorer: resync failed", err));
        } else if (msg.error) {
          toastError("Live file updates stopped", new Error(msg.error.message ?? "watch failed"));
        }
      } catch (err) {
        console.warn("explorer: bad watch message", err);
      }
    });
    ws.addEventListener("close", () => {
      setLive(false);
      if (closedOnPurpose || project !== state.project) return;
      setTimeout(() => {
        if (closedOnPurpose) return;
        current = dial();
        current.reconnected = true;
      }, retry);
      retry = Math.min(retry * 2, 30_000);
    });
    return ws;
  };
  let current = dial();
  watcher = {
    close() {
      closedOnPurpose = true;
      current.close();
    },
  };
}

function setLive(on) {
  if (!els) return;
  els.live.hidden = on;
}

// --- mount -------------------------------------------------------------------------------------

async function loadRoot() {
  els.error.hidden = true;
  try {
    await loadFolder("");
    for (const path of expanded) if (path && !folders.has(path)) await loadFolder(path).catch(() => expanded.delete(path));
  } catch (err) {
    els.error.hidden = false;
    els.errorText.textContent = `Cannot list the files: ${err.message}`;
  }
  render();
}

function projectLabel() {
  const ref = state.project || "";
  return (ref.split("/").pop() || "project").toUpperCase();
}

/** Build the Explorer in `container` (the #region-files region). */
export function mount(container) {
  const action = (name, label, run) => h("button", { type: "button", class: "icon-button", "aria-label": label, title: label, onclick: run }, icon(name, 16));
  const picker = h("input", { type: "file", multiple: true, hidden: true, "aria-label": "Files to upload", tabindex: "-1" });
  picker.addEventListener("change", () => {
    upload(picker.files);
    picker.value = "";
  });
  const title = h("span", { class: "view-subtitle" }, projectLabel());
  const live = h("span", { class: "live-off", title: "Live updates are reconnecting", hidden: true }, "offline");
  const head = h(
    "div",
    { class: "view-head" },
    h("h2", { class: "view-title" }, "Explorer"),
    h("div", { class: "view-actions" }, [
      action("new-file", "New File…", () => startNew("file")),
      action("new-folder", "New Folder…", () => startNew("dir")),
      action("upload", "Upload Files…", () => picker.click()),
      action("refresh", "Refresh Explorer", () => reload().catch((err) => toastError("Cannot refresh", err))),
      action("collapse", "Collapse Folders", collapseAll),
    ]),
  );
  const tree = h("ul", { class: "tree", role: "tree", "aria-label": "Files" });
  const empty = h("div", { class: "tree-empty", hidden: true }, h("p", {}, "This project has no files yet."), h("button", { type: "button", class: "button", onclick: () => startNew("file") }, "New File"));
  const errorText = h("p", {});
  const error = h("div", { class: "tree-error", role: "alert", hidden: true }, errorText, h("button", { type: "button", class: "button", onclick: loadRoot }, "Retry"));
  const body = h("div", { class: "view-body tree-scroll" }, h("div", { class: "tree-root-label" }, title, live), tree, empty, error);
  container.replaceChildren(head, body, picker);
  els = { container, tree, empty, error, errorText, picker, title, live, body };

  tree.addEventListener("keydown", onTreeKey);
  tree.addEventListener("click", (event) => {
    const item = event.target.closest("[role=treeitem]");
    if (!item || event.target.matches("input")) return;
    event.stopPropagation();
    select(item.dataset.path);
    if (item.dataset.kind === "dir") toggle(item.dataset.path);
    else open(item.dataset.path);
  });
  body.addEventListener("contextmenu", (event) => {
    event.preventDefault();
    if (Date.now() - menuByKeyAt < 500) return; // the key's own contextmenu event: open already
    const item = event.target.closest("[role=treeitem]");
    if (item) select(item.dataset.path);
    openMenu(item ? item.dataset.path : "", event.clientX, event.clientY);
  });
  tree.addEventListener("focusin", (event) => {
    const item = event.target.closest("[role=treeitem]");
    if (item && item.dataset.path !== selected && !event.target.matches("input")) select(item.dataset.path, { focus: false });
  });

  // Drag files from the desktop onto a folder (or anywhere: the project root).
  const dropTarget = (event) => {
    const item = event.target.closest?.("[role=treeitem]");
    if (!item) return "";
    return item.dataset.kind === "dir" ? item.dataset.path : dirname(item.dataset.path);
  };
  const mark = (dir) => {
    for (const el of body.querySelectorAll(".drop-target")) el.classList.remove("drop-target");
    if (dir === null) return;
    (dir ? itemEl(dir) : body)?.classList.add("drop-target");
  };
  body.addEventListener("dragover", (event) => {
    if (![...(event.dataTransfer?.types ?? [])].includes("Files")) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
    mark(dropTarget(event));
  });
  body.addEventListener("dragleave", (event) => {
    if (!body.contains(event.relatedTarget)) mark(null);
  });
  body.addEventListener("drop", (event) => {
    event.preventDefault();
    mark(null);
    upload(event.dataTransfer?.files, dropTarget(event));
  });

  bus.on("file:open", ({ path }) => {
    if (path && path !== selected) reveal(path);
  });
  bus.on("project:changed", () => {
    folders.clear();
    expanded.clear();
    expanded.add("");
    selected = "";
    editing = null;
    title.textContent = projectLabel();
    connect();
    loadRoot();
  });

  const reg = commands.registerCommand;
  reg({ id: "files.newFile", title: "File: New File…", keys: "Ctrl+Alt+N", run: () => startNew("file") });
  reg({ id: "files.newFolder", title: "File: New Folder…", run: () => startNew("dir") });
  reg({ id: "files.upload", title: "File: Upload Files…", run: () => els.picker.click() });
  reg({ id: "files.refresh", title: "File: Refresh Explorer", run: () => reload() });
  reg({ id: "files.collapse", title: "File: Collapse Folders in Explorer", run: collapseAll });
  reg({ id: "files.rename", title: "File: Rename Selected", when: () => Boolean(selected), run: () => startRename() });
  reg({ id: "files.delete", title: "File: Delete Selected", when: () => Boolean(selected), run: () => remove() });
  reg({ id: "files.copyPath", title: "File: Copy Path of Selected", when: () => Boolean(selected), run: () => copyPath() });

  connect();
  return loadRoot();
}

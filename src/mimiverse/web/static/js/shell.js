// The workbench shell: regions and their visibility per mode, resizable panels, theme,
// the hash route (#/metrics), and the commands and shortcuts that drive them.

import { bus } from "./bus.js";
import { icon } from "./dom.js";
import { makeSplitter, relayout } from "./layout.js";
import { openPalette } from "./palette.js";
import { prefs, savePrefs } from "./prefs.js";
import { commands, state } from "./state.js";
import { toastError } from "./toasts.js";

export const MODES = ["simple", "advanced", "expert"];
const MODE_TITLES = { simple: "Simple", advanced: "Advanced", expert: "Expert" };
const SIZES = { sidebar: 264, agent: 400, panel: 240 };
const MIN = { sidebar: 170, agent: 280, panel: 90 };
const MIN_EDITOR = { width: 320, height: 140 };

const ui = { sidebar: true, view: "files", panel: true, agent: true, route: "work" };
const $ = (id) => document.getElementById(id);
let splitters = {};

/** Wire the static shell in index.html to the state, prefs, commands and keyboard. */
export function initShell() {
  const layout = prefs().layout;
  ui.sidebar = layout.sidebarVisible !== 0;
  ui.panel = layout.panelVisible !== 0;
  ui.agent = layout.agentVisible !== 0;
  ui.view = layout.searchView === 1 ? "search" : "files";
  decorate();
  installSplitters(layout);
  installControls();
  registerShellCommands();
  installShortcuts();
  window.addEventListener("hashchange", route);
  window.addEventListener("resize", () => {
    for (const s of Object.values(splitters)) s.refresh();
    relayout();
  });
  setTheme(state.theme, { persist: false });
  setMode(state.mode, { persist: false });
  route();
}

function decorate() {
  const icons = { files: "files", search: "search", panel: "terminal", metrics: "chart" };
  for (const el of document.querySelectorAll(".activity")) {
    const name = el.dataset.view ?? el.dataset.toggle ?? el.dataset.link;
    el.prepend(icon(icons[name], 22));
  }
  $("panel-close").append(icon("close", 14));
  $("metrics-link").prepend(icon("chart", 14));
  $("palette-button").prepend(icon("search", 14));
}

// --- sizes -----------------------------------------------------------------------------------

function setSize(name, px) {
  $("workbench").style.setProperty(`--${name}-size`, `${px}px`);
}

function sizeOf(name) {
  const value = getComputedStyle($("workbench")).getPropertyValue(`--${name}-size`);
  return Number.parseFloat(value) || SIZES[name];
}

function installSplitters(layout) {
  const bench = $("workbench");
  const otherX = (name) => {
    const other = name === "sidebar" ? "agent" : "sidebar";
    const otherShown = other === "sidebar" ? !$("sidebar").hidden : !$("region-agent").hidden;
    return (otherShown ? sizeOf(other) : 0) + $("activitybar").offsetWidth + 12;
  };
  const spec = {
    sidebar: { el: "split-sidebar", axis: "x", max: () => bench.clientWidth - otherX("sidebar") - MIN_EDITOR.width },
    agent: { el: "split-agent", axis: "x", invert: true, max: () => bench.clientWidth - otherX("agent") - MIN_EDITOR.width },
    panel: { el: "split-panel", axis: "y", invert: true, max: () => $("center").clientHeight - MIN_EDITOR.height },
  };
  for (const [name, s] of Object.entries(spec)) {
    setSize(name, layout[name] ?? SIZES[name]);
    splitters[name] = makeSplitter($(s.el), {
      axis: s.axis,
      invert: s.invert,
      min: MIN[name],
      max: s.max,
      initial: SIZES[name],
      get: () => sizeOf(name),
      set: (px) => setSize(name, px),
      commit: (px) => savePrefs({ layout: { [name]: px } }),
    });
  }
}

// --- visibility --------------------------------------------------------------------------------

function saveVisibility() {
  savePrefs({
    layout: {
      sidebarVisible: ui.sidebar ? 1 : 0,
      panelVisible: ui.panel ? 1 : 0,
      agentVisible: ui.agent ? 1 : 0,
      searchView: ui.view === "search" ? 1 : 0,
    },
  });
}

function applyVisibility() {
  const advanced = state.mode !== "simple";
  const work = ui.route === "work";
  const sidebar = advanced && ui.sidebar;
  const panel = advanced && ui.panel;
  const agent = ui.agent || !advanced; // Simple mode is chat + editor: the agent stays
  $("workbench").hidden = !work;
  $("metrics-view").hidden = work;
  $("activitybar").hidden = !advanced;
  $("sidebar").hidden = !sidebar;
  $("split-sidebar").hidden = !sidebar;
  $("region-files").hidden = !sidebar || ui.view !== "files";
  $("region-search").hidden = !sidebar || ui.view !== "search";
  $("panel").hidden = !panel;
  $("region-terminal").hidden = !panel;
  $("split-panel").hidden = !panel;
  $("region-agent").hidden = !agent;
  $("split-agent").hidden = !agent;
  for (const el of document.querySelectorAll(".activity[data-view]")) {
    el.setAttribute("aria-pressed", String(sidebar && ui.view === el.dataset.view));
  }
  document.querySelector('.activity[data-toggle="panel"]').setAttribute("aria-pressed", String(panel));
  for (const el of document.querySelectorAll('[href="#/metrics"]')) {
    if (work) el.removeAttribute("aria-current");
    else el.setAttribute("aria-current", "page");
  }
  requestAnimationFrame(() => {
    for (const s of Object.values(splitters)) s.refresh();
  });
  relayout();
}

/** Switch to Advanced first when `what` is not shown in Simple mode. */
function needAdvanced(what) {
  if (state.mode !== "simple") return;
  setMode("advanced");
  bus.emit("toast", { kind: "info", text: `Switched to Advanced mode to show ${what}.` });
}

function toWork() {
  if (ui.route !== "work") location.hash = "#/";
}

/** Show the Explorer or Search view in the side bar and focus it. */
export function showView(view, { focus = true } = {}) {
  toWork();
  needAdvanced(view === "search" ? "Search" : "the Explorer");
  ui.view = view;
  ui.sidebar = true;
  saveVisibility();
  applyVisibility();
  if (focus) focusRegion(view);
}

export function toggleSidebar(force) {
  toWork();
  const shown = !$("sidebar").hidden;
  needAdvanced("the side bar");
  ui.sidebar = force ?? !shown;
  saveVisibility();
  applyVisibility();
  if (!ui.sidebar && $("sidebar").contains(document.activeElement)) focusRegion("editor");
}

export function togglePanel(force) {
  toWork();
  const shown = !$("panel").hidden;
  const wasFocused = $("panel").contains(document.activeElement);
  needAdvanced("the terminal");
  ui.panel = force ?? !shown;
  saveVisibility();
  applyVisibility();
  if (ui.panel) focusRegion("terminal");
  else if (wasFocused) focusRegion("editor");
}

export function toggleAgent(force) {
  toWork();
  if (state.mode === "simple") ui.agent = true;
  else ui.agent = force ?? !ui.agent;
  saveVisibility();
  applyVisibility();
  if (ui.agent) focusRegion("agent");
}

/** Move focus into a region: its natural control (search box, tree, agent input …). */
export function focusRegion(name) {
  requestAnimationFrame(() => {
    const target = {
      files: () => $("region-files").querySelector('[role=treeitem][tabindex="0"]') ?? $("region-files").querySelector("[role=tree], button"),
      search: () => $("search-input"),
      terminal: () => $("region-terminal").querySelector("textarea, [tabindex]") ?? $("region-terminal"),
      agent: () => $("agent-input") ?? $("region-agent").querySelector("textarea, input, button"),
      editor: () => $("region-editor").querySelector("textarea, .monaco-editor [tabindex]") ?? $("region-editor"),
    }[name]?.();
    if (target) {
      target.focus();
      if (name === "search" && target.select) target.select();
    }
  });
}

// --- mode and theme ----------------------------------------------------------------------------

/** Set the mode ("simple" | "advanced" | "expert"): shown regions, persisted per user. */
export function setMode(mode, { persist = true } = {}) {
  if (!MODES.includes(mode)) return;
  const changed = mode !== document.body.dataset.mode;
  state.mode = mode;
  document.body.dataset.mode = mode;
  $("mode-select").value = mode;
  applyVisibility();
  if (persist) savePrefs({ mode });
  if (changed || !persist) bus.emit("mode:changed", { mode });
}

/** Set the colour theme ("dark" | "light"). */
export function setTheme(theme, { persist = true } = {}) {
  if (theme !== "dark" && theme !== "light") return;
  state.theme = theme;
  document.body.dataset.theme = theme;
  document.documentElement.style.colorScheme = theme;
  const toggle = $("theme-toggle");
  const other = theme === "dark" ? "light" : "dark";
  toggle.replaceChildren(icon(theme === "dark" ? "sun" : "moon"));
  toggle.setAttribute("aria-label", `Switch to ${other} theme`);
  toggle.title = `Switch to ${other} theme`;
  if (persist) savePrefs({ theme });
  bus.emit("theme:changed", { theme });
}

// --- route ---------------------------------------------------------------------------------

function route() {
  const next = location.hash.startsWith("#/metrics") ? "metrics" : "work";
  if (next === ui.route && document.body.dataset.route === next) return;
  const returning = Boolean(document.body.dataset.route) && next === "work";
  ui.route = next;
  document.body.dataset.route = next;
  applyVisibility();
  bus.emit("route:changed", { route: next });
  if (returning) focusRegion("editor");
}

// --- controls, commands, shortcuts -----------------------------------------------------------------

function installControls() {
  $("mode-select").addEventListener("change", (e) => setMode(e.target.value));
  $("theme-toggle").addEventListener("click", () => setTheme(state.theme === "dark" ? "light" : "dark"));
  $("palette-button").addEventListener("click", () => openPalette(""));
  $("panel-close").addEventListener("click", () => togglePanel(false));
  for (const el of document.querySelectorAll(".activity[data-view]")) {
    el.addEventListener("click", () => {
      const view = el.dataset.view;
      if (ui.sidebar && ui.view === view && !$("sidebar").hidden) toggleSidebar(false);
      else showView(view);
    });
  }
  document.querySelector('.activity[data-toggle="panel"]').addEventListener("click", () => togglePanel());
}

function registerShellCommands() {
  const reg = commands.registerCommand;
  reg({ id: "workbench.commands", title: "Show All Commands", keys: ["Ctrl+Shift+P", "F1"], run: () => openPalette(">") });
  reg({ id: "workbench.quickOpen", title: "Go to File…", keys: "Ctrl+P", run: () => openPalette("") });
  reg({ id: "workbench.gotoLine", title: "Go to Line…", keys: "Ctrl+G", run: () => openPalette(":") });
  reg({ id: "view.explorer", title: "View: Show Explorer", keys: "Ctrl+Shift+E", run: () => showView("files") });
  reg({ id: "view.search", title: "View: Show Search", keys: "Ctrl+Shift+F", run: () => showView("search") });
  reg({ id: "view.sidebar", title: "View: Toggle Side Bar", keys: "Ctrl+B", run: () => toggleSidebar() });
  reg({ id: "view.terminal", title: "View: Toggle Terminal", keys: "Ctrl+`", run: () => togglePanel() });
  reg({ id: "view.agent", title: "Agent: Focus Chat", keys: ["Ctrl+L", "Ctrl+Alt+I"], run: () => toggleAgent(true) });
  reg({ id: "view.agentToggle", title: "View: Toggle Agent Panel", run: () => toggleAgent() });
  reg({ id: "view.tabMovesFocus", title: "View: Toggle Tab Key Moves Focus", keys: "Ctrl+M", run: () => setTabMovesFocus(!tabMovesFocus) });
  reg({ id: "view.nextPart", title: "View: Focus Next Part", keys: "F6", run: () => cyclePart(1) });
  reg({ id: "view.previousPart", title: "View: Focus Previous Part", keys: "Shift+F6", run: () => cyclePart(-1) });
  reg({ id: "view.editor", title: "View: Focus Editor", keys: "Ctrl+1", run: () => { toWork(); focusRegion("editor"); } });
  reg({ id: "view.metrics", title: "View: Open Metrics", run: () => { location.hash = "#/metrics"; } });
  reg({ id: "view.work", title: "View: Back to the Editor", when: () => ui.route !== "work", run: () => { location.hash = "#/"; } });
  reg({
    id: "view.resetLayout",
    title: "View: Reset Panel Sizes",
    run: () => {
      for (const [name, s] of Object.entries(splitters)) {
        s.update(SIZES[name]);
        savePrefs({ layout: { [name]: SIZES[name] } });
      }
    },
  });
  for (const mode of MODES) {
    reg({ id: `mode.${mode}`, title: `Mode: ${MODE_TITLES[mode]}`, when: () => state.mode !== mode, run: () => setMode(mode) });
  }
  reg({ id: "theme.toggle", title: "Preferences: Toggle Light/Dark Theme", run: () => setTheme(state.theme === "dark" ? "light" : "dark") });
  reg({ id: "theme.dark", title: "Preferences: Dark Theme", when: () => state.theme !== "dark", run: () => setTheme("dark") });
  reg({ id: "theme.light", title: "Preferences: Light Theme", when: () => state.theme !== "light", run: () => setTheme("light") });
}

const PARTS = [
  { name: "titlebar", el: () => document.querySelector(".titlebar"), focus: () => $("palette-button").focus() },
  { name: "activitybar", el: () => $("activitybar"), focus: () => $("activitybar").querySelector("button").focus() },
  { name: "sidebar", el: () => $("sidebar"), focus: () => focusRegion(ui.view) },
  { name: "editor", el: () => $("region-editor"), focus: () => focusRegion("editor") },
  { name: "panel", el: () => $("panel"), focus: () => focusRegion("terminal") },
  { name: "agent", el: () => $("region-agent"), focus: () => focusRegion("agent") },
  { name: "metrics", el: () => $("metrics-view"), focus: () => $("metrics-view").querySelector("button, a")?.focus() },
  { name: "statusbar", el: () => $("statusbar"), focus: () => $("statusbar").querySelector("button:not([hidden])")?.focus() },
];

/** F6 / Shift+F6: move focus to the next / previous part of the window (as VS Code does). */
function cyclePart(step) {
  const shown = PARTS.filter((p) => {
    const el = p.el();
    return el && !el.hidden && el.offsetParent !== null;
  });
  const at = shown.findIndex((p) => p.el().contains(document.activeElement));
  const next = shown[(at + step + shown.length) % shown.length] ?? shown[0];
  next?.focus();
}

// --- Tab moves focus (Ctrl+M, as in VS Code) ---------------------------------------------------
// The editor and the terminal keep Tab for indenting and for the shell. With this mode on, Tab
// and Shift+Tab leave them for the next or previous control instead.

const TAB_TRAPS = ["region-editor", "region-terminal"];
let tabMovesFocus = false;

export function setTabMovesFocus(on) {
  tabMovesFocus = on;
  document.body.dataset.tabMovesFocus = String(on);
  bus.emit("status:set", { key: "tab-focus", text: on ? "Tab Moves Focus" : "", title: "Ctrl+M: Tab moves focus out of the editor and the terminal" });
}

function trapOf(el) {
  return TAB_TRAPS.map((id) => $(id)).find((region) => region?.contains(el)) ?? null;
}

function moveFocusOutOf(trap, backwards) {
  const all = [...document.querySelectorAll('a[href], button:not([disabled]), input:not([disabled]):not([type="hidden"]), select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex="-1"])')].filter(
    (el) => el.offsetParent !== null && !el.closest("[hidden]") && !trap.contains(el),
  );
  const after = all.filter((el) => trap.compareDocumentPosition(el) & Node.DOCUMENT_POSITION_FOLLOWING);
  const before = all.filter((el) => trap.compareDocumentPosition(el) & Node.DOCUMENT_POSITION_PRECEDING);
  const target = backwards ? before[before.length - 1] ?? after[after.length - 1] : after[0] ?? before[0];
  target?.focus();
}

function installShortcuts() {
  window.addEventListener(
    "keydown",
    (event) => {
      if (!tabMovesFocus || event.key !== "Tab" || event.ctrlKey || event.altKey || event.metaKey) return;
      const trap = trapOf(document.activeElement);
      if (!trap) return;
      event.preventDefault();
      event.stopPropagation();
      moveFocusOutOf(trap, event.shiftKey);
    },
    true,
  );
  window.addEventListener(
    "keydown",
    (event) => {
      if (event.defaultPrevented || event.isComposing || $("app").hidden) return;
      const command = commands.forEvent(event);
      if (!command) return;
      const modal = document.querySelector('[aria-modal="true"]:not([hidden])');
      if (modal && !modal.classList.contains("palette")) return; // a dialog has the keyboard
      event.preventDefault();
      event.stopPropagation();
      Promise.resolve()
        .then(() => command.run())
        .catch((err) => toastError(command.title, err));
    },
    true,
  );
}

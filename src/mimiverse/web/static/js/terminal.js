// The terminal panel: xterm.js over WS /api/terminal/ws, a real PTY (bash -l) in the
// project's sandbox. Several terminals as tabs; each fits its box and tells the server
// its size; when the shell exits (or the socket drops) a button starts a new one.
// xterm and its fit addon are imported as ES modules (lib/*.mjs): their UMD builds would
// register with Monaco's AMD loader instead of defining globals.

import { wsUrl } from "./api.js";
import { bus } from "./bus.js";
import { state, commands } from "./state.js";
import { el, ensureLink, ensureStyles } from "./panelkit.js";

const FALLBACK = {
  dark: { background: "#181818", foreground: "#cccccc", cursor: "#e7e7e7", selectionBackground: "#264f78" },
  light: { background: "#f8f8f8", foreground: "#3b3b3b", cursor: "#1f1f1f", selectionBackground: "#add6ff" },
};

let lib = null;
let hostEl = null;
let tabbar = null;
let counter = 0;
const terminals = [];
let current = null;
const TYPEAHEAD_CHARS = 65_536; // what a terminal keeps of keys typed while it connects

/** Builds the panel in `container`; the first shell starts once the panel is visible. */
export function mount(container) {
  ensureStyles();
  ensureLink("/vendor/xterm/css/xterm.css");
  const panel = el("div", { class: "terminal-panel" });
  container.replaceChildren(panel);
  tabbar = el("div", { class: "terminal-tabs", role: "tablist", "aria-label": "Terminals" });
  const add = el("button", { type: "button", class: "terminal-new", "aria-label": "New terminal", title: "New terminal" }, "+");
  add.addEventListener("click", () => open());
  const bar = el("div", { class: "terminal-bar" }, [tabbar, add]);
  hostEl = el("div", { id: "terminal-host", class: "terminal-host" });
  panel.append(hostEl, bar); // the bar shows on top (CSS order); focus lands in the shell first
  tabbar.addEventListener("keydown", onTabKey);

  const seen = new ResizeObserver(() => {
    if (!terminals.length && visible()) open();
    current?.fit();
  });
  seen.observe(hostEl);
  window.addEventListener("resize", () => current?.fit());
  bus.on("layout:changed", () => requestAnimationFrame(() => current?.fit()));
  bus.on("theme:changed", (d) => {
    // the body's theme attribute (and so the CSS variables) may change after the event
    requestAnimationFrame(() => {
      for (const t of terminals) if (t.term) t.term.options.theme = themeOf(d?.theme);
    });
  });
  bus.on("project:changed", () => {
    for (const t of [...terminals]) close(t);
    if (visible()) open();
  });
  registerCommands();
  return { open, focus: () => current?.term?.focus() };
}

function visible() {
  return hostEl.offsetWidth > 0 && hostEl.offsetHeight > 0;
}

/** xterm's colours from the shell's CSS variables (the panel's own look), else defaults. */
function themeOf(theme) {
  const base = FALLBACK[theme === "light" ? "light" : "dark"];
  const css = getComputedStyle(document.body);
  const pick = (name, fallback) => css.getPropertyValue(name).trim() || fallback;
  return {
    background: pick("--bg-side", base.background),
    foreground: pick("--fg", base.foreground),
    cursor: pick("--fg-strong", base.cursor),
    cursorAccent: pick("--bg-side", base.background),
    selectionBackground: pick("--bg-selected", base.selectionBackground),
  };
}

async function loadLib() {
  if (!lib) {
    lib = Promise.all([
      import("/vendor/xterm/lib/xterm.mjs"),
      import("/vendor/xterm-addon-fit/lib/addon-fit.mjs"),
    ]).then(([xterm, fit]) => ({ Terminal: xterm.Terminal, FitAddon: fit.FitAddon }));
    lib.catch(() => {
      lib = null;
    });
  }
  return lib;
}

/** Opens a new terminal tab and starts its shell. */
async function open() {
  counter += 1;
  const t = new TerminalTab(counter);
  terminals.push(t);
  tabbar.append(t.tab);
  hostEl.append(t.view);
  select(t);
  try {
    const { Terminal, FitAddon } = await loadLib();
    t.start(Terminal, FitAddon);
  } catch (err) {
    t.view.replaceChildren(el("p", { class: "error" }, `The terminal failed to load: ${err.message}. Run bash scripts/setup.`));
  }
  return t;
}

function select(t) {
  current = t;
  for (const each of terminals) {
    const on = each === t;
    each.view.hidden = !on;
    each.tab.classList.toggle("active", on);
    each.tab.setAttribute("aria-selected", String(on));
    each.tab.tabIndex = on ? 0 : -1;
  }
  requestAnimationFrame(() => {
    t.fit();
    t.term?.focus();
  });
}

function close(t) {
  t.dispose();
  const index = terminals.indexOf(t);
  terminals.splice(index, 1);
  t.tab.remove();
  t.view.remove();
  if (current === t) {
    current = null;
    const next = terminals[index] || terminals[index - 1];
    if (next) select(next);
  }
}

function onTabKey(event) {
  const index = terminals.findIndex((t) => t.tab === document.activeElement);
  if (index < 0) return;
  const go = (i) => terminals[(i + terminals.length) % terminals.length].tab.focus();
  if (event.key === "ArrowRight") go(index + 1);
  else if (event.key === "ArrowLeft") go(index - 1);
  else if (event.key === "Enter" || event.key === " ") select(terminals[index]);
  else if (event.key === "Delete") close(terminals[index]);
  else return;
  event.preventDefault();
}

class TerminalTab {
  constructor(n) {
    this.n = n;
    this.term = null;
    this.fitter = null;
    this.socket = null;
    this.phase = "ended"; // connecting | open | ended
    this.typeahead = ""; // keys typed while connecting, sent once the socket opens
    const label = el("span", {}, `Terminal ${n}`);
    const x = el("button", { type: "button", class: "tab-close", tabindex: "-1", "aria-label": `Close terminal ${n}` }, "×");
    this.tab = el("div", { class: "terminal-tab", role: "tab", tabindex: "-1", "aria-label": `Terminal ${n}` }, [label, x]);
    this.tab.addEventListener("click", (e) => (e.target === x ? close(this) : select(this)));
    this.screen = el("div", { class: "terminal-screen" });
    this.status = el("div", { class: "terminal-status", role: "status", hidden: "" });
    this.view = el("div", { class: "term-view", role: "tabpanel", "aria-label": `Terminal ${n}` }, [this.screen, this.status]);
  }

  start(Terminal, FitAddon) {
    this.term = new Terminal({
      cursorBlink: true,
      fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace',
      fontSize: 13,
      scrollback: 5000,
      theme: themeOf(state.theme),
    });
    this.fitter = new FitAddon();
    this.term.loadAddon(this.fitter);
    this.term.open(this.screen);
    this.fit();
    this.term.onData((data) => {
      if (this.phase === "open") this.send({ type: "input", data });
      else if (this.phase === "connecting") this.typeahead = (this.typeahead + data).slice(-TYPEAHEAD_CHARS);
      else if (data === "\r") this.connect();
    });
    this.term.onResize(({ cols, rows }) => this.send({ type: "resize", cols, rows }));
    this.connect();
  }

  fit() {
    if (!this.fitter || !this.term || this.view.hidden || !visible()) return;
    try {
      this.fitter.fit();
    } catch {
      // not laid out yet: the next resize fits it
    }
  }

  connect() {
    this.socket?.close();
    this.status.hidden = true;
    const query = new URLSearchParams({ cols: String(this.term.cols), rows: String(this.term.rows) });
    if (state.project) query.set("project", state.project);
    const socket = new WebSocket(wsUrl(`/api/terminal/ws?${query}`));
    this.socket = socket;
    this.phase = "connecting";
    this.typeahead = "";
    let exited = false;
    let problem = "";
    socket.onopen = () => {
      this.phase = "open";
      this.send({ type: "resize", cols: this.term.cols, rows: this.term.rows });
      if (this.typeahead) this.send({ type: "input", data: this.typeahead });
      this.typeahead = "";
    };
    socket.onmessage = (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (message.type === "output") this.term.write(message.data);
      else if (message.type === "exit") {
        exited = true;
        this.ended(`The shell exited with code ${message.code}.`);
      } else if (message.type === "error") {
        problem = message.error?.message || "the server refused a frame";
        this.term.write(`\r\n\x1b[31m[${problem}]\x1b[0m\r\n`);
      }
    };
    socket.onclose = (event) => {
      if (this.socket !== socket || exited) return;
      const why = event.reason || problem;
      this.ended(why ? `Disconnected: ${why}.` : "Disconnected from the server.");
    };
  }

  ended(why) {
    this.phase = "ended";
    this.typeahead = "";
    this.socket = null;
    this.term.write(`\r\n\x1b[2m[${why} Press Enter to start a new shell.]\x1b[0m\r\n`);
    const again = el("button", { type: "button", class: "terminal-reconnect" }, "Start a new shell");
    again.addEventListener("click", () => {
      this.connect();
      this.term.focus();
    });
    this.status.replaceChildren(el("span", {}, why), again);
    this.status.hidden = false;
  }

  send(message) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  }

  dispose() {
    const socket = this.socket;
    this.socket = null;
    this.phase = "ended";
    socket?.close();
    this.term?.dispose();
  }
}

function registerCommands() {
  const register = commands?.registerCommand?.bind(commands);
  if (!register) return;
  register({ id: "terminal.new", title: "Terminal: New terminal", run: () => open() });
  register({
    id: "terminal.focus",
    title: "Terminal: Focus",
    run: () => (current ? current.term?.focus() : open()),
  });
}

// Shared state of the IDE and the command registry behind the palette and the shortcuts.

export const state = {
  /** The current project's ref ("" = the caller's default project). */
  project: "",
  /** "simple" | "advanced" | "expert" */
  mode: "advanced",
  /** "dark" | "light" */
  theme: "dark",
  /** The caller as /api/auth/status or /api/auth/me describes them (null before boot). */
  user: null,
  /** The CSRF token cookie-authenticated writes echo in X-CSRF-Token ("" when none). */
  csrf: "",
  /** "local" | "accounts" */
  auth: "local",
  /** Panel sizes in pixels by splitter name (persisted with the prefs). */
  layout: {},
};

const registry = new Map();
const IS_MAC = /Mac|iPhone|iPad/.test(navigator.platform || navigator.userAgent);

/** Normalise "Ctrl+Shift+P" / "Mod+P" to a canonical key ("ctrl+shift+p"); Mod = Ctrl (Cmd on macOS). */
export function normaliseKeys(keys) {
  const parts = keys.split("+").map((p) => p.trim().toLowerCase());
  const key = parts.pop();
  const mods = new Set(parts.map((m) => (m === "mod" ? (IS_MAC ? "meta" : "ctrl") : m === "cmd" ? "meta" : m)));
  const order = ["ctrl", "meta", "alt", "shift"].filter((m) => mods.has(m));
  return [...order, key === "backquote" ? "`" : key].join("+");
}

/** The canonical key of a keyboard event (Cmd counts as Ctrl on macOS). */
export function eventKeys(event) {
  const mods = [];
  if (event.ctrlKey || (IS_MAC && event.metaKey)) mods.push("ctrl");
  if (event.metaKey && !IS_MAC) mods.push("meta");
  if (event.altKey) mods.push("alt");
  if (event.shiftKey) mods.push("shift");
  let key = event.key.toLowerCase();
  if (event.code === "Backquote") key = "`";
  else if (event.code?.startsWith("Key")) key = event.code.slice(3).toLowerCase();
  else if (event.code?.startsWith("Digit")) key = event.code.slice(5);
  return [...mods, key].join("+");
}

/** How a key binding reads in menus ("Ctrl+Shift+P", "⌘⇧P" on macOS). */
export function keyLabel(keys) {
  const parts = normaliseKeys(keys).split("+");
  const names = { ctrl: IS_MAC ? "⌘" : "Ctrl", meta: "Meta", alt: IS_MAC ? "⌥" : "Alt", shift: IS_MAC ? "⇧" : "Shift" };
  const shown = parts.map((p) => names[p] ?? (p.length === 1 ? p.toUpperCase() : p[0].toUpperCase() + p.slice(1)));
  return IS_MAC ? shown.join("") : shown.join("+");
}

export const commands = {
  /**
   * Add a command to the palette (and bind `keys`, e.g. "Ctrl+Shift+P", when given).
   * Registering an id again replaces the command. Returns a function that removes it.
   */
  registerCommand({ id, title, keys, run, when }) {
    if (!id || !title || typeof run !== "function") throw new Error("registerCommand needs id, title and run");
    const keyList = keys ? (Array.isArray(keys) ? keys : [keys]) : [];
    registry.set(id, { id, title, keys: keyList, bound: keyList.map(normaliseKeys), run, when });
    return () => registry.delete(id);
  },

  /** Every command that applies now, by title. */
  list() {
    return [...registry.values()].filter((c) => !c.when || c.when()).sort((a, b) => a.title.localeCompare(b.title));
  },

  get(id) {
    return registry.get(id);
  },

  /** Run a command by id; errors become an error toast by the caller's bus listener. */
  async run(id, ...args) {
    const command = registry.get(id);
    if (!command) throw new Error(`no command "${id}"`);
    return command.run(...args);
  },

  /** The command bound to a keyboard event, if any. */
  forEvent(event) {
    const pressed = eventKeys(event);
    for (const command of registry.values()) {
      if (command.bound.includes(pressed) && (!command.when || command.when())) return command;
    }
    return null;
  },
};

export const registerCommand = commands.registerCommand;

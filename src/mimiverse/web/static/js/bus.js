// The IDE's event bus: modules talk through named events, never through each other's insides.
//
// Events (see the IDE contract): file:open {path, line?, column?}, file:saved {path},
// file:changed {changes}, file:renamed {path, to}, file:deleted {path},
// project:changed {project}, mode:changed {mode}, theme:changed {theme}, layout:changed {},
// agent:ask {text}, status:set {key, text, title?}, toast {kind, text}.

const listeners = new Map();

export const bus = {
  /** Call `fn(detail)` on each `name` event; returns a function that stops listening. */
  on(name, fn) {
    if (!listeners.has(name)) listeners.set(name, new Set());
    listeners.get(name).add(fn);
    return () => listeners.get(name)?.delete(fn);
  },

  /** Call `fn` once, on the next `name` event. */
  once(name, fn) {
    const off = bus.on(name, (detail) => {
      off();
      fn(detail);
    });
    return off;
  },

  /** Deliver `detail` to every listener of `name`; one listener's error does not stop the rest. */
  emit(name, detail = {}) {
    for (const fn of [...(listeners.get(name) ?? [])]) {
      try {
        fn(detail);
      } catch (err) {
        console.error(`bus: a "${name}" listener failed`, err);
      }
    }
  },
};

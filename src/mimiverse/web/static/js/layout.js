// Resizable panels: splitters that move by pointer drag and by keyboard (WAI-ARIA separator).

import { bus } from "./bus.js";

const STEP = 10;
const BIG_STEP = 60;
let relayoutQueued = false;

/** Ask panels (editor, terminal, charts) to fit their new size, once per frame. */
export function relayout() {
  if (relayoutQueued) return;
  relayoutQueued = true;
  requestAnimationFrame(() => {
    relayoutQueued = false;
    bus.emit("layout:changed", {});
  });
}

/**
 * Make `el` (role=separator, focusable) resize a panel.
 * axis "x": the separator is vertical and moves left/right; "y": horizontal, moves up/down.
 * `invert`: the panel lies after the separator (dragging towards it grows it).
 * `get()` → current size; `set(size)` applies it; `min`/`max()` bound it; `commit(size)` persists.
 */
export function makeSplitter(el, { axis, invert = false, get, set, min, max, initial, commit }) {
  el.setAttribute("role", "separator");
  el.setAttribute("tabindex", "0");
  el.setAttribute("aria-orientation", axis === "x" ? "vertical" : "horizontal");
  const bounds = () => [min, Math.max(min, Math.floor(max()))];
  const update = (size, { persist = false } = {}) => {
    const [lo, hi] = bounds();
    const clamped = Math.round(Math.min(hi, Math.max(lo, size)));
    set(clamped);
    el.setAttribute("aria-valuemin", String(lo));
    el.setAttribute("aria-valuemax", String(hi));
    el.setAttribute("aria-valuenow", String(clamped));
    relayout();
    if (persist) commit(clamped);
    return clamped;
  };

  el.addEventListener("pointerdown", (event) => {
    if (event.button !== 0) return;
    event.preventDefault();
    el.setPointerCapture(event.pointerId);
    el.classList.add("dragging");
    document.body.classList.add(axis === "x" ? "resizing-x" : "resizing-y");
    const start = axis === "x" ? event.clientX : event.clientY;
    const startSize = get();
    let last = startSize;
    const move = (e) => {
      const delta = (axis === "x" ? e.clientX : e.clientY) - start;
      last = update(startSize + (invert ? -delta : delta));
    };
    const up = () => {
      el.removeEventListener("pointermove", move);
      el.removeEventListener("pointerup", up);
      el.removeEventListener("pointercancel", up);
      el.classList.remove("dragging");
      document.body.classList.remove("resizing-x", "resizing-y");
      update(last, { persist: true });
    };
    el.addEventListener("pointermove", move);
    el.addEventListener("pointerup", up);
    el.addEventListener("pointercancel", up);
  });

  el.addEventListener("keydown", (event) => {
    const grow = axis === "x" ? (invert ? "ArrowLeft" : "ArrowRight") : invert ? "ArrowUp" : "ArrowDown";
    const shrink = axis === "x" ? (invert ? "ArrowRight" : "ArrowLeft") : invert ? "ArrowDown" : "ArrowUp";
    const step = event.shiftKey ? BIG_STEP : STEP;
    const [lo, hi] = bounds();
    let size = null;
    if (event.key === grow) size = get() + step;
    else if (event.key === shrink) size = get() - step;
    else if (event.key === "Home") size = lo;
    else if (event.key === "End") size = hi;
    else if (event.key === "Enter") size = initial;
    if (size === null) return;
    event.preventDefault();
    update(size, { persist: true });
  });

  el.addEventListener("dblclick", () => update(initial, { persist: true }));
  return { update, refresh: () => update(get()) };
}

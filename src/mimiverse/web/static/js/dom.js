// Small DOM helpers shared by the shell's modules: element builder, icons, focus trap.

/**
 * `h("button", {class: "x", onclick: fn, "aria-label": "Close"}, "text", child)`.
 * Attributes starting with "on" become listeners; `dataset` and `style` objects are merged;
 * `false`/`null`/`undefined` attributes and children are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === false || value === null || value === undefined) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "style" && typeof value === "object") {
      for (const [prop, v] of Object.entries(value)) {
        if (prop.startsWith("--")) el.style.setProperty(prop, v); // custom properties need setProperty
        else el.style[prop] = v;
      }
    }
    else if (key === "class") el.className = value;
    else if (key in el && typeof value !== "string") el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

const SVG = "http://www.w3.org/2000/svg";

// 16×16 stroke icons (drawn for this IDE; no icon font, nothing fetched).
const ICONS = {
  files: "M3.5 1.5h6l3 3v10h-9z M9.5 1.5v3h3",
  search: "M7 2.5a4.5 4.5 0 1 0 0 9a4.5 4.5 0 1 0 0-9z M10.3 10.3l3.7 3.7",
  terminal: "M1.5 2.5h13v11h-13z M4 6l2.5 2L4 10 M8 10.5h4",
  chart: "M2 14h12 M4 12V8 M7 12V4 M10 12V7 M13 12V2.5",
  "arrow-left": "M13 8H3 M7 4L3 8l4 4",
  "chevron-right": "M6 3.5l4.5 4.5L6 12.5",
  "chevron-down": "M3.5 6l4.5 4.5L12.5 6",
  file: "M4 1.5h5l3 3v10H4z M9 1.5v3h3",
  folder: "M1.5 3.5h5l1.5 1.5h6.5v8h-13z",
  "folder-open": "M1.5 3.5h5l1.5 1.5h5.5v2 M1.5 13.5l2-6.5h11l-2 6.5h-11z M1.5 13.5v-10",
  "new-file": "M4 1.5h5l3 3v4 M4 1.5v13h5 M9 1.5v3h3 M12.5 10v5 M10 12.5h5",
  "new-folder": "M1.5 3.5h5l1.5 1.5h6.5v3 M1.5 3.5v10h7 M12.5 10v5 M10 12.5h5",
  upload: "M8 11V2.5 M4.5 6L8 2.5 11.5 6 M2.5 11v2.5h11V11",
  refresh: "M13 3.5v3h-3 M12.7 6.5A5 5 0 1 0 13 10",
  collapse: "M4 6.5l4-3 4 3 M4 12.5l4-3 4 3",
  close: "M4 4l8 8 M12 4l-8 8",
  sun: "M8 5a3 3 0 1 0 0 6a3 3 0 1 0 0-6z M8 1v1.5 M8 13.5V15 M1 8h1.5 M13.5 8H15 M3 3l1 1 M12 12l1 1 M3 13l1-1 M12 4l1-1",
  moon: "M13.5 9.5A6 6 0 0 1 6.5 2.5a6 6 0 1 0 7 7z",
  sparkle: "M8 1.5l1.6 4.9L14.5 8l-4.9 1.6L8 14.5l-1.6-4.9L1.5 8l4.9-1.6z",
  repo: "M3.5 2.5a1 1 0 0 1 1-1h8v11h-8a1 1 0 0 0-1 1z M3.5 13.5a1 1 0 0 0 1 1h8v-2 M6 4.5h4",
  user: "M8 2a3 3 0 1 0 0 6a3 3 0 1 0 0-6z M2.5 14.5a5.5 5.5 0 0 1 11 0",
  logout: "M6 2.5H2.5v11H6 M10 5l3 3-3 3 M13 8H5.5",
  check: "M3 8.5l3 3 7-7",
  warning: "M8 1.5l6.5 12h-13z M8 6v3.5 M8 11.5v.5",
  error: "M8 1.5a6.5 6.5 0 1 0 0 13a6.5 6.5 0 1 0 0-13z M5.5 5.5l5 5 M10.5 5.5l-5 5",
  info: "M8 1.5a6.5 6.5 0 1 0 0 13a6.5 6.5 0 1 0 0-13z M8 7v4.5 M8 4.5V5",
  layout: "M1.5 2.5h13v11h-13z M5.5 2.5v11 M5.5 9.5h9",
  database: "M2.5 4c0-1.4 2.5-2.5 5.5-2.5s5.5 1.1 5.5 2.5-2.5 2.5-5.5 2.5S2.5 5.4 2.5 4z M2.5 4v8c0 1.4 2.5 2.5 5.5 2.5s5.5-1.1 5.5-2.5V4 M2.5 8c0 1.4 2.5 2.5 5.5 2.5s5.5-1.1 5.5-2.5",
  pulse: "M1 8.5h3l2-5 3 9 2-4h4",
  chip: "M4 4h8v8H4z M6 1.5V4 M10 1.5V4 M6 12v2.5 M10 12v2.5 M1.5 6H4 M1.5 10H4 M12 6h2.5 M12 10h2.5",
  trash: "M2.5 4h11 M6 4V2.5h4V4 M4 4l.7 10h6.6L12 4",
  edit: "M10.5 2.5l3 3-8 8h-3v-3z",
  copy: "M5.5 5.5h8v8h-8z M10.5 5.5V2.5h-8v8h3",
  more: "M3.5 8h.01 M8 8h.01 M12.5 8h.01",
  panel: "M1.5 2.5h13v11h-13z M1.5 9.5h13",
};

/** An inline SVG icon (decorative: hidden from assistive tech). */
export function icon(name, size = 16) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 16 16");
  svg.setAttribute("width", size);
  svg.setAttribute("height", size);
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  svg.classList.add("icon", `icon-${name}`);
  const path = document.createElementNS(SVG, "path");
  path.setAttribute("d", ICONS[name] ?? ICONS.info);
  svg.append(path);
  return svg;
}

const FOCUSABLE =
  'a[href], button:not([disabled]), input:not([disabled]):not([type="hidden"]), select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex="-1"])';

/** The keyboard-focusable, visible elements inside `root`. */
export function focusables(root) {
  return [...root.querySelectorAll(FOCUSABLE)].filter((el) => el.offsetParent !== null || el === document.activeElement);
}

/** Keep Tab inside `root` (a modal dialog); returns a function that releases it. */
export function trapFocus(root) {
  const onKey = (event) => {
    if (event.key !== "Tab") return;
    const items = focusables(root);
    if (!items.length) return;
    const first = items[0];
    const last = items[items.length - 1];
    if (event.shiftKey && document.activeElement === first) {
      last.focus();
      event.preventDefault();
    } else if (!event.shiftKey && document.activeElement === last) {
      first.focus();
      event.preventDefault();
    }
  };
  root.addEventListener("keydown", onKey);
  return () => root.removeEventListener("keydown", onKey);
}

/** `fn` run at most once per `ms`, on the trailing edge. */
export function debounce(fn, ms) {
  let timer = 0;
  const wrapped = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
  wrapped.cancel = () => clearTimeout(timer);
  return wrapped;
}

/** "1.2 kB", "3.4 MB". */
export function formatBytes(n) {
  if (n === null || n === undefined) return "";
  if (n < 1024) return `${n} B`;
  const units = ["kB", "MB", "GB"];
  let value = n / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/** "12 ms", "1.4 s". */
export function formatMs(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "–";
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
}

/** "42%" from a 0..1 rate ("–" when unknown). */
export function formatRate(rate) {
  if (rate === null || rate === undefined || Number.isNaN(rate)) return "–";
  return `${Math.round(rate * 100)}%`;
}

/** The folder part of a relative path ("" for the root). */
export function dirname(path) {
  const cut = path.lastIndexOf("/");
  return cut < 0 ? "" : path.slice(0, cut);
}

/** The last part of a relative path. */
export function basename(path) {
  return path.slice(path.lastIndexOf("/") + 1);
}

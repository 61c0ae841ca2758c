// Small helpers the work panels share: their stylesheet, vendor CSS links, DOM building.

const HREF = "/static/css/panels.css";

/** Adds <link rel="stylesheet" href="/static/css/panels.css"> when it is missing. */
export function ensureStyles() {
  const present = [...document.querySelectorAll('link[rel="stylesheet"]')].some((link) =>
    link.getAttribute("href")?.startsWith(HREF),
  );
  if (present) return;
  const link = document.createElement("link");
  link.rel = "stylesheet";
  link.href = HREF;
  document.head.append(link);
}

/** Adds a stylesheet link for `href` once (vendor CSS such as xterm's). */
export function ensureLink(href) {
  if (document.querySelector(`link[rel="stylesheet"][href="${href}"]`)) return;
  const link = document.createElement("link");
  link.rel = "stylesheet";
  link.href = href;
  document.head.append(link);
}

/** A DOM element with attributes and children (strings become text nodes, never HTML). */
export function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null && value !== false) node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of [].concat(children)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(typeof child === "string" || typeof child === "number" ? document.createTextNode(String(child)) : child);
  }
  return node;
}

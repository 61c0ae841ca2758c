// A small, safe Markdown renderer for model answers: fenced code, headings, lists,
// quotes, paragraphs; inline code, bold, italics and http(s) links. It builds DOM nodes
// with text content only, so nothing a model writes is ever parsed as HTML.

import { el } from "./panelkit.js";

/** `text` as a DocumentFragment. */
export function renderMarkdown(text) {
  const out = document.createDocumentFragment();
  const lines = String(text ?? "").replace(/\r\n?/g, "\n").split("\n");
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    const fence = line.match(/^\s*(```+|~~~+)\s*([\w+#.-]*)/);
    if (fence) {
      const body = [];
      i += 1;
      while (i < lines.length && !lines[i].trimStart().startsWith(fence[1])) body.push(lines[i++]);
      i += 1; // the closing fence (or the end while still streaming)
      const code = el("code", fence[2] ? { "data-lang": fence[2] } : {}, body.join("\n"));
      out.append(el("pre", { class: "md-code" }, code));
      continue;
    }
    const heading = line.match(/^(#{1,4})\s+(.*)$/);
    if (heading) {
      out.append(el(`h${Math.min(heading[1].length + 2, 6)}`, {}, inline(heading[2])));
      i += 1;
      continue;
    }
    if (/^\s*([-*+]|\d+[.)])\s+/.test(line)) {
      const ordered = /^\s*\d+[.)]\s+/.test(line);
      const list = el(ordered ? "ol" : "ul");
      while (i < lines.length && /^\s*([-*+]|\d+[.)])\s+/.test(lines[i])) {
        list.append(el("li", {}, inline(lines[i].replace(/^\s*([-*+]|\d+[.)])\s+/, ""))));
        i += 1;
      }
      out.append(list);
      continue;
    }
    if (/^\s*>/.test(line)) {
      const quoted = [];
      while (i < lines.length && /^\s*>/.test(lines[i])) quoted.push(lines[i++].replace(/^\s*>\s?/, ""));
      out.append(el("blockquote", {}, inline(quoted.join(" "))));
      continue;
    }
    if (!line.trim()) {
      i += 1;
      continue;
    }
    const para = [];
    while (i < lines.length && lines[i].trim() && !/^\s*(```|~~~|#{1,4}\s|[-*+]\s|\d+[.)]\s|>)/.test(lines[i])) {
      para.push(lines[i++]);
    }
    if (!para.length) para.push(lines[i++]);
    const p = el("p");
    para.forEach((part, n) => {
      if (n) p.append(el("br"));
      p.append(...inline(part));
    });
    out.append(p);
  }
  return out;
}

const INLINE = /(`+)([^`]+?)\1|\*\*([^*]+)\*\*|__([^_]+)__|\*([^*\s][^*]*?)\*|\[([^\]]+)\]\(([^)\s]+)\)/g;

/** Inline Markdown of one line as nodes. */
function inline(text) {
  const nodes = [];
  let last = 0;
  for (const m of text.matchAll(INLINE)) {
    if (m.index > last) nodes.push(document.createTextNode(text.slice(last, m.index)));
    if (m[2] !== undefined) nodes.push(el("code", {}, m[2]));
    else if (m[3] !== undefined || m[4] !== undefined) nodes.push(el("strong", {}, m[3] ?? m[4]));
    else if (m[5] !== undefined) nodes.push(el("em", {}, m[5]));
    else nodes.push(link(m[6], m[7]));
    last = m.index + m[0].length;
  }
  if (last < text.length) nodes.push(document.createTextNode(text.slice(last)));
  return nodes;
}

function link(label, href) {
  let url;
  try {
    url = new URL(href, window.location.origin);
  } catch {
    return document.createTextNode(label);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return document.createTextNode(label);
  return el("a", { href: url.href, target: "_blank", rel: "noopener noreferrer" }, label);
}

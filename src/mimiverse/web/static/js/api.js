// HTTP, SSE and WebSocket helpers for the IDE's calls to its own server.

import { bus } from "./bus.js";
import { state } from "./state.js";

/** An error answer from the server: `message` is the server's own words (they say what to fix). */
export class ApiError extends Error {
  constructor(status, code, message, body = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

const WRITES = new Set(["POST", "PUT", "PATCH", "DELETE"]);

/** `query` plus the current project (a `project` already in `query` wins). */
export function withProject(query = {}) {
  return state.project ? { project: state.project, ...query } : { ...query };
}

function urlOf(path, query) {
  const url = new URL(path, location.origin);
  for (const [key, value] of Object.entries(query ?? {})) {
    if (value !== undefined && value !== null) url.searchParams.set(key, String(value));
  }
  return url.pathname + url.search;
}

function headersFor(method, extra) {
  const headers = { Accept: "application/json", ...extra };
  if (WRITES.has(method) && state.csrf) headers["X-CSRF-Token"] = state.csrf;
  return headers;
}

async function errorOf(resp) {
  let body = null;
  let text = "";
  try {
    text = await resp.text();
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  const err = body?.error;
  const message =
    (typeof err === "object" && err?.message) ||
    (typeof err === "string" && err) ||
    (typeof body?.detail === "string" && body.detail) ||
    text.trim().slice(0, 300) ||
    `${resp.status} ${resp.statusText}`;
  const code = (typeof err === "object" && (err?.type || err?.code)) || `http_${resp.status}`;
  return new ApiError(resp.status, String(code), message, body);
}

async function send(path, { method = "GET", json, query, signal, body, headers } = {}) {
  method = method.toUpperCase();
  const init = { method, signal, credentials: "same-origin", headers: headersFor(method, headers) };
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers["Content-Type"] = "application/json";
  } else if (body !== undefined) {
    init.body = body; // FormData, Blob …: the browser sets the content type
  }
  let resp;
  try {
    resp = await fetch(urlOf(path, query), init);
  } catch (cause) {
    if (cause?.name === "AbortError") throw cause;
    throw new ApiError(0, "network", `cannot reach the Mimiverse server (${cause?.message ?? cause}): is \`mimiverse serve\` running?`);
  }
  if (!resp.ok) {
    const err = await errorOf(resp);
    if (resp.status === 401 && state.auth === "accounts" && !path.startsWith("/api/auth/")) {
      bus.emit("auth:required", { message: err.message });
    }
    throw err;
  }
  return resp;
}

/**
 * Call a JSON API: `api("/api/files/tree", {query: withProject({path: ""})})`.
 * Resolves to the parsed JSON (null when empty); rejects with ApiError on an error status.
 */
export async function api(path, options = {}) {
  const resp = await send(path, options);
  if (resp.status === 204) return null;
  const text = await resp.text();
  if (!text) return null;
  const type = resp.headers.get("content-type") ?? "";
  return type.includes("json") ? JSON.parse(text) : text;
}

/**
 * POST `json` and read the answer as server-sent events: `onEvent({event, data})` per event
 * (`data` parsed when it is JSON; OpenAI's "[DONE]" arrives as the string). Resolves when the
 * stream ends; rejects with ApiError on an error status.
 */
export async function apiStream(path, { json, query, signal, onEvent, method = "POST" } = {}) {
  const resp = await send(path, { method, json, query, signal, headers: { Accept: "text/event-stream" } });
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  const dispatch = (block) => {
    let event = "message";
    const data = [];
    let id = null;
    for (const line of block.split("\n")) {
      if (!line || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") event = value;
      else if (field === "data") data.push(value);
      else if (field === "id") id = value;
    }
    if (!data.length) return;
    const raw = data.join("\n");
    let parsed = raw;
    try {
      parsed = JSON.parse(raw);
    } catch {
      parsed = raw;
    }
    onEvent?.({ event, data: parsed, id });
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      dispatch(buffer.slice(0, cut));
      buffer = buffer.slice(cut + 2);
    }
  }
  buffer += decoder.decode();
  if (buffer.trim()) dispatch(buffer);
}

/** `ws://` or `wss://` URL of `path` on this server (with `query`, e.g. withProject()). */
export function wsUrl(path, query) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${urlOf(path, query)}`;
}

// The agent panel: plain chat (POST /v1/chat/completions, streamed) or the agent (a
// session whose events stream from GET /api/agent/sessions/{id}/events), both in one
// timeline. Tool calls and their observations fold into one item (unfolded in Expert
// mode, which also shows each step's latency); errors say what they mean and what to
// do; a proposed changeset opens the diff review below the timeline.

import { api, apiStream } from "./api.js";
import { bus } from "./bus.js";
import { state, commands } from "./state.js";
import { mount as mountReview } from "./diffreview.js";
import { renderMarkdown } from "./markdown.js";
import { el, ensureStyles } from "./panelkit.js";

const CHAT_TURNS = 30;
const RECONNECTS = 5;
const KIND_KEY = "mimi.agent.kind";

let timeline = null;
let input = null;
let send = null;
let stop = null;
let kindSelect = null;
let statusEl = null;
let review = null;
let chat = []; // the chat conversation sent with each request
let chatAbort = null;
let session = null; // {id, project}
let follower = null; // AbortController of the events stream
let running = false;
let lastSeq = 0;
let steps = new Map(); // step number → {item, started}
let tools = new Map(); // call id → item parts
let lastTool = null;
let lastElapsed = 0;

/** Builds the panel in `container`. */
export function mount(container) {
  ensureStyles();
  const panel = el("div", { class: "agent-panel" });
  kindSelect = el("select", { id: "agent-kind", "aria-label": "Chat or agent" }, [
    el("option", { value: "agent" }, "Agent"),
    el("option", { value: "chat" }, "Chat"),
  ]);
  kindSelect.value = localStorage.getItem(KIND_KEY) === "chat" ? "chat" : "agent";
  kindSelect.addEventListener("change", () => {
    localStorage.setItem(KIND_KEY, kindSelect.value);
    updatePlaceholder();
  });
  statusEl = el("span", { class: "agent-state", role: "status" });
  const fresh = el("button", { type: "button", id: "agent-new", title: "Start a new conversation" }, "New");
  fresh.addEventListener("click", reset);
  timeline = el("div", {
    id: "agent-timeline",
    class: "agent-timeline",
    role: "log",
    "aria-live": "polite",
    "aria-label": "Conversation and agent timeline",
    tabindex: "0",
  });
  const reviewBox = el("section", { id: "changeset", hidden: true });
  review = mountReview(reviewBox);
  input = el("textarea", {
    id: "agent-input",
    rows: "3",
    "aria-label": "Ask the agent",
    placeholder: "",
  });
  send = el("button", { type: "submit", id: "agent-send", class: "primary" }, "Send");
  stop = el("button", { type: "button", id: "agent-stop", hidden: true }, "Stop");
  stop.addEventListener("click", halt);
  const form = el("form", { class: "agent-form", "aria-label": "Message" }, [
    input,
    el("div", { class: "agent-buttons" }, [
      el("span", { class: "muted agent-hint" }, "Enter sends · Shift+Enter new line"),
      stop,
      send,
    ]),
  ]);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    submit();
  });
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      submit();
    }
  });
  container.replaceChildren(panel);
  panel.append(
    el("div", { class: "agent-head" }, [kindSelect, statusEl, fresh]),
    timeline,
    reviewBox,
    form,
  );
  updatePlaceholder();
  bus.on("agent:ask", (d) => {
    if (!d?.text) return;
    input.value = d.text;
    submit();
  });
  bus.on("mode:changed", (d) => applyMode(d?.mode));
  bus.on("project:changed", reset);
  registerCommands();
  resume();
  return { ask: (text) => bus.emit("agent:ask", { text }) };
}

function updatePlaceholder() {
  input.placeholder =
    kindSelect.value === "chat"
      ? "Ask a question…"
      : "Describe a change, e.g. “rename add to plus in calc.py”…";
}

function expert() {
  return (document.body.dataset.mode || state.mode) === "expert";
}

function applyMode(mode) {
  const open = mode === "expert";
  for (const details of timeline.querySelectorAll("details.tl-fold")) details.open = open;
}

function setRunning(on, text = "") {
  running = on;
  stop.hidden = !on;
  send.disabled = on;
  statusEl.textContent = text;
}

async function submit() {
  const text = input.value.trim();
  if (!text || running) return;
  input.value = "";
  if (kindSelect.value === "chat") await sendChat(text);
  else await sendAgent(text);
}

function halt() {
  if (chatAbort) chatAbort.abort();
  if (session && running && kindSelect.value === "agent") {
    api(`/api/agent/sessions/${encodeURIComponent(session.id)}/cancel`, { method: "POST" }).catch((err) =>
      bus.emit("toast", { kind: "error", text: `Could not stop the agent: ${err.message}` }),
    );
  }
}

function reset() {
  chatAbort?.abort();
  follower?.abort();
  chat = [];
  session = null;
  sessionStorage.removeItem(sessionKey());
  steps = new Map();
  tools = new Map();
  lastTool = null;
  lastSeq = 0;
  lastElapsed = 0;
  timeline.replaceChildren();
  review.hide();
  setRunning(false);
}

// --- chat ------------------------------------------------------------------------------

async function sendChat(text) {
  chat.push({ role: "user", content: text });
  chat = chat.slice(-CHAT_TURNS);
  add(item("user", [el("div", { class: "tl-text" }, text)], "You"), true);
  const body = el("div", { class: "tl-md" });
  const answer = add(item("assistant", [body], "Assistant"));
  answer.classList.add("streaming");
  let reply = "";
  let painted = false;
  const paint = () => {
    painted = false;
    body.replaceChildren(renderMarkdown(reply));
    follow();
  };
  chatAbort = new AbortController();
  setRunning(true, "answering…");
  const started = performance.now();
  try {
    await apiStream("/v1/chat/completions", {
      json: { messages: chat, stream: true },
      signal: chatAbort.signal,
      onEvent({ data }) {
        if (data === "[DONE]" || data === null || typeof data !== "object") return;
        if (data.error) throw new Error(data.error.message || "the model failed");
        const piece = data.choices?.[0]?.delta?.content;
        if (piece) {
          reply += piece;
          if (!painted) {
            painted = true;
            requestAnimationFrame(paint);
          }
        }
      },
    });
    paint();
    chat.push({ role: "assistant", content: reply });
    answer.append(latency(`${((performance.now() - started) / 1000).toFixed(1)} s`));
  } catch (err) {
    if (chatAbort.signal.aborted) {
      paint();
      answer.append(el("p", { class: "muted" }, "(stopped)"));
      if (reply) chat.push({ role: "assistant", content: reply });
    } else {
      chat.pop();
      add(errorItem(err.message));
    }
  } finally {
    answer.classList.remove("streaming");
    chatAbort = null;
    setRunning(false);
  }
}

// --- the agent ---------------------------------------------------------------------------

async function sendAgent(text) {
  setRunning(true, "starting…");
  add(item("user", [el("div", { class: "tl-text" }, text)], "You"), true);
  try {
    if (!session) {
      const made = await api("/api/agent/sessions", {
        method: "POST",
        json: state.project ? { title: text.slice(0, 80), project: state.project } : { title: text.slice(0, 80) },
      });
      session = { id: made.id };
      sessionStorage.setItem(sessionKey(), made.id);
    }
    const sent = await api(`/api/agent/sessions/${encodeURIComponent(session.id)}/messages`, {
      method: "POST",
      json: { content: text },
    });
    lastSeq = Math.max(lastSeq, Number(new URL(sent.events_url, location.origin).searchParams.get("after") || 0));
    await followEvents();
  } catch (err) {
    add(errorItem(err.message));
    setRunning(false);
  }
}

function sessionKey() {
  return `mimi.agent.session.${state.project || ""}`;
}

/** After a page reload: show the session's events so far, and follow a run in progress. */
async function resume() {
  const id = sessionStorage.getItem(sessionKey());
  if (!id) return;
  try {
    const info = await api(`/api/agent/sessions/${encodeURIComponent(id)}`);
    const past = await api(`/api/agent/sessions/${encodeURIComponent(id)}/events`, { query: { follow: "false" } });
    session = { id };
    for (const event of past.events) show(event, false);
    for (const id of info.waiting_for || []) await review.show(id);
    if (["running", "waiting_approval"].includes(info.status)) {
      setRunning(true, info.status === "waiting_approval" ? "waiting for your review" : "working…");
      await followEvents();
    }
  } catch {
    sessionStorage.removeItem(sessionKey());
  }
}

/** Streams the session's events from `lastSeq` until the run finishes; reconnects. */
async function followEvents() {
  follower?.abort();
  const abort = new AbortController();
  follower = abort;
  let tries = 0;
  let finished = false;
  while (!finished && !abort.signal.aborted) {
    const url = `/api/agent/sessions/${encodeURIComponent(session.id)}/events?after=${lastSeq}`;
    try {
      await apiStream(url, {
        method: "GET",
        signal: abort.signal,
        onEvent: ({ data }) => {
          if (!data || typeof data !== "object") return;
          tries = 0;
          show(data);
          if (data.kind === "session_finished") finished = true;
        },
      });
      if (!finished) throw new Error("the events stream ended early");
    } catch (err) {
      if (abort.signal.aborted) break;
      tries += 1;
      if (tries > RECONNECTS) {
        add(errorItem(`Lost the agent's events: ${err.message}`, "Reload the page to see where it got to."));
        break;
      }
      statusEl.textContent = "reconnecting…";
      await new Promise((r) => setTimeout(r, 500 * tries));
    }
  }
  if (follower === abort) follower = null;
  if (finished || !abort.signal.aborted) setRunning(false);
}

// --- the timeline ---------------------------------------------------------------------------

/** Renders one agent event (`live`: as it happens, not replayed after a reload). */
function show(event, live = true) {
  if (event.seq && event.seq <= lastSeq) return;
  lastSeq = Math.max(lastSeq, event.seq || 0);
  const d = event.data || {};
  review.onEvent(event);
  switch (event.kind) {
    case "session_started":
      steps = new Map();
      tools = new Map();
      lastElapsed = 0;
      if (live) setRunning(true, "working…");
      else if (d.message) add(item("user", [el("div", { class: "tl-text" }, d.message)], "You"));
      add(item(event.kind, [
        el("div", { class: "tl-text" }, "Started"),
        el("div", { class: "tl-meta" }, `up to ${d.max_steps} steps · ${d.mode} tool calls${d.auto_approve ? " · auto-approve" : ""}`),
      ]));
      break;
    case "plan":
      add(item(event.kind, [el("ol", { class: "tl-plan" }, (d.steps || []).map((s) => el("li", {}, s)))], "Plan"));
      break;
    case "step_started": {
      const bar = el("progress", { max: String(d.max_steps || 1), value: String(d.step || 0), "aria-label": `Step ${d.step} of ${d.max_steps}` });
      const node = item(event.kind, [el("span", { class: "tl-text" }, `Step ${d.step}`), el("span", { class: "tl-meta" }, ` of ${d.max_steps}`), bar]);
      steps.set(d.step, { item: node, started: event.at });
      statusEl.textContent = `step ${d.step} of ${d.max_steps}`;
      add(node);
      break;
    }
    case "step_finished": {
      const step = steps.get(d.step);
      const took = Math.max(0, (d.elapsed_s ?? 0) - lastElapsed);
      lastElapsed = d.elapsed_s ?? lastElapsed;
      if (step) {
        step.item.dataset.done = "true";
        step.item.append(latency(`${took.toFixed(2)} s · ${d.tokens} tokens so far`));
      }
      break;
    }
    case "model_text":
      add(item(event.kind, [el("div", { class: "tl-text" }, d.text || "")], "Thinking"));
      break;
    case "tool_call":
      add(toolItem(event));
      break;
    case "observation":
      observe(event);
      break;
    case "output": {
      const target = lastTool && tools.get(lastTool);
      if (target) {
        target.output.hidden = false;
        target.output.textContent += d.text || "";
        target.output.scrollTop = target.output.scrollHeight;
      }
      break;
    }
    case "proposed_diff": {
      const open = el("button", { type: "button", class: "tl-review" }, "Review");
      open.addEventListener("click", () => review.show(d.id).catch((err) => add(errorItem(err.message))));
      add(item(event.kind, [
        el("div", { class: "tl-text" }, `Proposed: ${d.title || d.id}`),
        el("div", { class: "tl-meta" }, `${(d.hunks || []).length} hunk(s) in ${(d.files || []).join(", ")}`),
        open,
      ], "Changes"));
      if (live) {
        statusEl.textContent = "waiting for your review";
        review.show(d.id).catch((err) => add(errorItem(`Could not load the changes: ${err.message}`)));
      }
      break;
    }
    case "changeset_decided": {
      const hunks = d.hunks || {};
      const values = Object.values(hunks);
      const text = d.approved === "all"
        ? `All hunks approved (${d.by || "auto"}).`
        : `Decided: ${values.filter((s) => s === "approved").length} accepted, ${values.filter((s) => s === "rejected").length} rejected${values.includes("pending") ? `, ${values.filter((s) => s === "pending").length} undecided` : ""}.`;
      add(item(event.kind, [el("div", { class: "tl-text" }, text)]));
      break;
    }
    case "changeset_applied":
      add(item(event.kind, [el("div", { class: "tl-text" }, `Applied to ${(d.files || []).join(", ")}${d.status === "partially_applied" ? " (some hunks rejected)" : ""}.`)]));
      if (live) bus.emit("file:changed", { changes: (d.files || []).map((path) => ({ change: "modified", path })) });
      break;
    case "changeset_undone":
      add(item(event.kind, [el("div", { class: "tl-text" }, `Undone: ${(d.files || []).join(", ")} restored.`)]));
      break;
    case "test_result":
      add(testItem(event));
      break;
    case "context_summarised":
      add(item(event.kind, [el("div", { class: "tl-meta" }, `Older steps were summarised to fit the model's context (${d.folded_steps || 0} folded).`)]));
      break;
    case "error":
      add(errorItem(d.message || "Something failed.", explain(d), d.raw, event.kind));
      break;
    case "answer":
      add(item(event.kind, [el("div", { class: "tl-md" }, renderMarkdown(d.text || ""))], d.status && d.status !== "done" ? `Answer (${d.status})` : "Answer"));
      break;
    case "session_finished":
      add(item(event.kind, [
        el("div", { class: "tl-text" }, `Finished: ${d.status}`),
        el("div", { class: "tl-meta" }, `${d.steps} step(s) · ${d.usage?.total_tokens ?? "?"} tokens · ${d.seconds} s`),
      ]), live);
      setRunning(false);
      break;
    default:
      add(item(event.kind, [el("pre", { class: "tl-json" }, JSON.stringify(d, null, 2))]));
  }
}

function item(kind, children, heading) {
  const node = el("div", { class: "tl-item", "data-kind": kind }, heading ? [el("div", { class: "tl-head" }, heading), ...children] : children);
  return node;
}

/** Appends a timeline item; keeps the newest in view unless the user scrolled up to read
 * (`force`: always, for the user's own message and the end of a run). */
function add(node, force = false) {
  const near = timeline.scrollHeight - timeline.scrollTop - timeline.clientHeight < 120;
  timeline.append(node);
  if (near || force) timeline.scrollTop = timeline.scrollHeight;
  return node;
}

function follow() {
  const near = timeline.scrollHeight - timeline.scrollTop - timeline.clientHeight < 120;
  if (near) timeline.scrollTop = timeline.scrollHeight;
}

function latency(text) {
  return el("span", { class: "tl-latency" }, text);
}

function toolItem(event) {
  const d = event.data || {};
  const badge = el("span", { class: "tl-badge running" }, "running");
  const summary = el("summary", {}, [
    el("span", { class: "tl-tool-name" }, d.name),
    el("span", { class: "tl-args" }, brief(d.arguments)),
    badge,
  ]);
  const args = el("pre", { class: "tl-json" }, JSON.stringify(d.arguments ?? {}, null, 2));
  const output = el("pre", { class: "tl-output", hidden: true });
  const result = el("pre", { class: "tl-observation", hidden: true });
  const details = el("details", { class: "tl-fold" }, [summary, el("div", { class: "tl-label" }, "Arguments"), args, output, result]);
  details.open = expert();
  tools.set(d.id, { details, badge, output, result, at: event.at });
  lastTool = d.id;
  return item(event.kind, [details]);
}

function observe(event) {
  const d = event.data || {};
  const parts = tools.get(d.id);
  if (!parts) {
    add(item(event.kind, [el("pre", { class: "tl-observation" }, d.text || "")]));
    return;
  }
  parts.badge.textContent = d.ok ? "ok" : "failed";
  parts.badge.className = `tl-badge ${d.ok ? "ok" : "failed"}`;
  parts.result.hidden = false;
  parts.result.textContent = (d.text || "") + (d.truncated ? "\n… (cut)" : "");
  parts.details.closest(".tl-item").dataset.ok = String(Boolean(d.ok));
  const seconds = Math.max(0, (event.at || 0) - (parts.at || 0));
  parts.details.querySelector("summary").append(latency(`${seconds.toFixed(2)} s`));
  const label = el("div", { class: "tl-label" }, d.ok ? "Result" : "Error");
  parts.result.before(label);
  if (!d.ok) {
    parts.details.after(el("p", { class: "tl-explain" }, toolHint(d)));
  }
  if (lastTool === d.id) lastTool = null;
}

function testItem(event) {
  const d = event.data || {};
  const counts = Object.entries(d.counts || {}).map(([k, v]) => `${v} ${k}`).join(", ");
  const failures = (d.failures || []).map((f) => (typeof f === "string" ? f : JSON.stringify(f)));
  const children = [el("div", { class: "tl-text" }, `${d.passed ? "Tests passed" : "Tests failed"}${counts ? `: ${counts}` : ""}`)];
  if (failures.length) {
    const details = el("details", { class: "tl-fold" }, [el("summary", {}, `${failures.length} failure(s)`), el("pre", { class: "tl-output" }, failures.join("\n"))]);
    details.open = expert();
    children.push(details);
  }
  const node = item(event.kind, children, d.command || "Tests");
  node.dataset.ok = String(Boolean(d.passed));
  return node;
}

function errorItem(message, hint = "", raw = "", kind = "error") {
  const children = [el("div", { class: "tl-text" }, message)];
  if (hint) children.push(el("p", { class: "tl-explain" }, hint));
  if (raw) {
    const details = el("details", { class: "tl-fold" }, [el("summary", {}, "What the model said"), el("pre", { class: "tl-output" }, raw)]);
    details.open = expert();
    children.push(details);
  }
  const node = item(kind, children, "Problem");
  node.setAttribute("role", "alert");
  return node;
}

/** What an agent error means and what to do about it. */
function explain(d) {
  const message = String(d.message || "");
  if (d.status === "budget") {
    return "The run hit one of its budgets. Split the task, or raise agent_max_steps, agent_max_tokens or agent_max_wall_s in the settings.";
  }
  if (d.status === "stuck") {
    return "The agent kept failing at the same thing. Name the file and the exact change, or try a larger chat model.";
  }
  if (/not a usable tool call|unusable replies/i.test(message)) {
    return "Small models sometimes answer in the wrong format; the agent told the model and retries. A larger chat model (routes.chat) makes this rare.";
  }
  if (/could not answer|model/i.test(message) && /fail|answer|unavailable|timed out/i.test(message)) {
    return "The chat model could not be reached or failed. The status bar's model item and GET /api/health say which endpoint is down.";
  }
  if (/cancelled/i.test(message)) return "You stopped the run; the changes already applied stay (undo them from their review).";
  if (/could not apply|changed on disk/i.test(message)) {
    return "A file changed on disk after the agent read it, so nothing was written. Ask again: the agent will read the current text.";
  }
  return "";
}

function toolHint(d) {
  const text = String(d.text || "");
  if (/no file|not found|does not exist/i.test(text)) return "The tool could not find that file; the agent sees this error and can look again.";
  if (/search.*(not found|no match)|matches? (no|more than one)/i.test(text)) return "The edit's search text did not match the file exactly; the agent will re-read the file and retry.";
  if (/timed out|timeout/i.test(text)) return "The command ran too long and was stopped.";
  return "The agent sees this error and decides what to do next.";
}

function brief(args) {
  const text = Object.entries(args || {})
    .map(([k, v]) => `${k}=${typeof v === "string" ? JSON.stringify(v.length > 40 ? `${v.slice(0, 39)}…` : v) : JSON.stringify(v)}`)
    .join(", ");
  return text.length > 100 ? `${text.slice(0, 99)}…` : text;
}

function registerCommands() {
  const register = commands?.registerCommand?.bind(commands);
  if (!register) return;
  register({ id: "agent.new", title: "Agent: New conversation", run: reset });
  register({ id: "agent.focusInput", title: "Agent: Focus the message box", run: () => input.focus() });
  register({ id: "agent.stop", title: "Agent: Stop", run: halt });
}

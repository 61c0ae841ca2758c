// Inline completions (ghost text) from POST /api/ai/fim/stream, for every language.
// Requests wait DEBOUNCE_MS of quiet typing, are aborted when Monaco cancels them, and
// report what happened to each suggestion to POST /api/ai/fim/feedback: shown, accepted
// (Tab), rejected (Escape), and later how much of an accepted one is still there.

import { api, apiStream } from "./api.js";
import { bus } from "./bus.js";

const DEBOUNCE_MS = 150;
const PREFIX_CHARS = 16000;
const SUFFIX_CHARS = 6000;
const RETAINED_AFTER_MS = 30000;
const ACCEPT_COMMAND = "mimi.inline.accepted";
const EXPLICIT = 1; // monaco.languages.InlineCompletionTriggerKind.Explicit
const ACCEPTED = 0; // InlineCompletionEndOfLifeReasonKind.Accepted
const REJECTED = 1;

/** Registers the provider. `source` gives `tabOf(model)` → {path, language} | null,
 * `contextFiles(model)` → [{path, text}] and `enabled()`. Returns a disposable. */
export function registerInlineCompletions(monaco, source) {
  const session = `web-${Math.random().toString(36).slice(2, 10)}`;
  const told = new Map(); // suggestion id → events already reported
  let lastError = "";

  const report = (id, event, extra = {}) => {
    const done = told.get(id) || new Set();
    if (done.has(event)) return;
    done.add(event);
    told.set(id, done);
    if (told.size > 500) told.delete(told.keys().next().value);
    api("/api/ai/fim/feedback", { method: "POST", json: { id, event, ...extra } }).catch(() => {});
  };

  const accepted = (editorModel, item) => {
    if (!item?.mimiId || told.get(item.mimiId)?.has("accepted")) return;
    report(item.mimiId, "accepted");
    watchRetention(monaco, editorModel, item, (chars) =>
      report(item.mimiId, "retained", { retained_chars: chars }),
    );
  };

  const pending = new Map(); // suggestion id → item, for the accept command
  const command = monaco.editor.registerCommand(ACCEPT_COMMAND, (_accessor, id, uri) => {
    const model = monaco.editor.getModel(monaco.Uri.parse(uri));
    accepted(model, pending.get(id));
  });

  const provider = {
    displayName: "Mimiverse",
    async provideInlineCompletions(model, position, context, token) {
      const tab = source.tabOf(model);
      if (!tab || !source.enabled()) return { items: [] };
      if (context.triggerKind !== EXPLICIT && !(await pause(DEBOUNCE_MS, token))) {
        return { items: [] };
      }
      const { prefix, suffix } = around(model, position);
      if (!prefix.trim() && !suffix.trim()) return { items: [] };
      const body = {
        prefix,
        suffix,
        path: tab.path,
        language: tab.language || "",
        session,
        files: source.contextFiles(model),
      };
      const abort = new AbortController();
      const listener = token.onCancellationRequested(() => abort.abort());
      let found;
      try {
        found = await suggestion(body, abort.signal);
      } catch (err) {
        if (abort.signal.aborted || err?.name === "AbortError") return { items: [] };
        const message = err?.message || String(err);
        bus.emit("status:set", { key: "fim", text: "completions: error", title: message });
        if (message !== lastError) bus.emit("toast", { kind: "error", text: `Inline completion: ${message}` });
        lastError = message;
        return { items: [] };
      } finally {
        listener.dispose();
      }
      lastError = "";
      if (!found || !found.completion || token.isCancellationRequested) return { items: [] };
      const ms = Math.round(found.latency_ms ?? found.latency ?? 0);
      bus.emit("status:set", {
        key: "fim",
        text: `completion ${ms} ms${found.cached ? " (cached)" : ""}`,
        title: `inline completion from ${found.model || found.endpoint || "the model"}: ${ms} ms, ${found.source}`,
      });
      const item = placed(monaco, model, position, found.completion);
      item.mimiId = found.id;
      item.command = {
        id: ACCEPT_COMMAND,
        title: "Accept completion",
        arguments: [found.id, model.uri.toString()],
      };
      pending.set(found.id, item);
      if (pending.size > 50) pending.delete(pending.keys().next().value);
      return { items: [item], enableForwardStability: true };
    },
    handleItemDidShow(_completions, item) {
      if (item?.mimiId) report(item.mimiId, "shown");
    },
    handleEndOfLifetime(_completions, item, reason) {
      if (!item?.mimiId) return;
      if (reason?.kind === ACCEPTED) {
        accepted(item.model, item);
      } else if (reason?.kind === REJECTED) {
        report(item.mimiId, "rejected");
      }
    },
    disposeInlineCompletions() {},
  };
  const registration = monaco.languages.registerInlineCompletionsProvider("*", provider);
  return {
    dispose() {
      registration.dispose();
      command.dispose();
    },
  };
}

/** Resolves true after `ms`, or false as soon as Monaco cancels the request. */
function pause(ms, token) {
  return new Promise((resolve) => {
    if (token.isCancellationRequested) return resolve(false);
    const timer = setTimeout(() => {
      listener.dispose();
      resolve(true);
    }, ms);
    const listener = token.onCancellationRequested(() => {
      clearTimeout(timer);
      resolve(false);
    });
  });
}

/** Text before and after the cursor, cut at line starts to the sizes we send. */
function around(model, position) {
  const end = model.getFullModelRange();
  let prefix = model.getValueInRange({
    startLineNumber: 1,
    startColumn: 1,
    endLineNumber: position.lineNumber,
    endColumn: position.column,
  });
  let suffix = model.getValueInRange({
    startLineNumber: position.lineNumber,
    startColumn: position.column,
    endLineNumber: end.endLineNumber,
    endColumn: end.endColumn,
  });
  if (prefix.length > PREFIX_CHARS) {
    const cut = prefix.slice(-PREFIX_CHARS);
    const line = cut.indexOf("\n");
    prefix = line >= 0 ? cut.slice(line + 1) : cut;
  }
  if (suffix.length > SUFFIX_CHARS) {
    const cut = suffix.slice(0, SUFFIX_CHARS);
    const line = cut.lastIndexOf("\n");
    suffix = line >= 0 ? cut.slice(0, line + 1) : cut;
  }
  return { prefix, suffix };
}

/** The final suggestion of one streamed request (null when the model had nothing). */
async function suggestion(body, signal) {
  let final = null;
  let failure = null;
  await apiStream("/api/ai/fim/stream", {
    json: body,
    signal,
    onEvent({ event, data }) {
      if (event === "error") failure = data?.error?.message || "the model failed mid-answer";
      else if (data && typeof data === "object" && data.done) final = data;
    },
  });
  if (failure) throw new Error(failure);
  return final;
}

/** An inline item at the cursor; a multi-line one replaces the rest of the line (Monaco
 * wants such ranges to end at the line's end), keeping that rest after the new text. */
function placed(monaco, model, position, text) {
  const line = position.lineNumber;
  const rest = model.getLineContent(line).slice(position.column - 1);
  if (text.includes("\n") && rest.trim()) {
    return {
      insertText: text + rest,
      range: new monaco.Range(line, position.column, line, model.getLineMaxColumn(line)),
      model,
      inserted: text,
    };
  }
  return {
    insertText: text,
    range: new monaco.Range(line, position.column, line, position.column),
    model,
    inserted: text,
  };
}

/** After a while, how many characters of an accepted suggestion are still in place. */
function watchRetention(monaco, model, item, done) {
  if (!model || model.isDisposed()) return;
  const start = model.getOffsetAt({
    lineNumber: item.range.startLineNumber,
    column: item.range.startColumn,
  });
  const text = item.inserted;
  const startPos = model.getPositionAt(start);
  const endPos = model.getPositionAt(start + text.length);
  const [decoration] = model.deltaDecorations(
    [],
    [
      {
        range: new monaco.Range(startPos.lineNumber, startPos.column, endPos.lineNumber, endPos.column),
        options: { stickiness: monaco.editor.TrackedRangeStickiness.NeverGrowsWhenTypingAtEdges },
      },
    ],
  );
  setTimeout(() => {
    if (model.isDisposed()) return;
    const range = model.getDecorationRange(decoration);
    model.deltaDecorations([decoration], []);
    const now = range ? model.getValueInRange(range) : "";
    let kept = 0;
    while (kept < now.length && kept < text.length && now[kept] === text[kept]) kept += 1;
    done(kept);
  }, RETAINED_AFTER_MS);
}

// Reviewing a proposed changeset: each hunk accepted or rejected on its own, the result
// previewed in Monaco's diff editor (left: the file now, right: the file with the hunks
// you keep), then applied through the agent API, and undone if need be.
//
// When the agent's run waits on the changeset, deciding its last hunk wakes the run and
// the agent applies the approved hunks itself; otherwise Apply calls .../apply.

import { api } from "./api.js";
import { bus } from "./bus.js";
import { state } from "./state.js";
import { applyTheme, languageFor, loadMonaco } from "./monaco.js";
import { el, ensureStyles } from "./panelkit.js";

const SETTLE_TIMEOUT_MS = 30000;

/** Builds the review in `container` (the `#changeset` section); returns its controller. */
export function mount(container) {
  ensureStyles();
  return new Review(container);
}

class Review {
  constructor(box) {
    this.box = box;
    box.id = box.id || "changeset";
    box.classList.add("changeset");
    box.setAttribute("aria-label", "Proposed changes");
    box.hidden = true;
    this.cs = null;
    this.decisions = new Map(); // hunk id → "pending" | "approved" | "rejected"
    this.fileIndex = 0;
    this.busy = false;
    this.diff = null;
    this.models = new Map(); // file path → {original, modified}
    this.zones = [];

    this.title = el("h3", { class: "cs-title" });
    this.status = el("p", { class: "cs-status", role: "status", "aria-live": "polite" });
    const all = el("button", { type: "button", class: "cs-accept-all" }, "Accept all");
    const none = el("button", { type: "button", class: "cs-reject-all" }, "Reject all");
    all.addEventListener("click", () => this.decideAll("approved"));
    none.addEventListener("click", () => this.decideAll("rejected"));
    this.bulk = el("div", { class: "cs-bulk" }, [all, none]);
    this.grow = el("button", {
      type: "button",
      class: "cs-expand",
      "aria-pressed": "false",
      "aria-label": "Show the review larger",
      title: "Show the review larger",
    }, "⤢");
    this.grow.addEventListener("click", () => this.expand(!this.box.classList.contains("expanded")));
    this.list = el("ol", { class: "hunk-list", "aria-label": "Hunks" });
    this.files = el("div", { class: "cs-files", role: "tablist", "aria-label": "Changed files" });
    this.host = el("div", { class: "cs-diff", "aria-label": "Diff of the selected file" });
    this.apply = el("button", { type: "button", id: "changeset-apply", class: "primary" }, "Apply");
    this.undo = el("button", { type: "button", id: "changeset-undo", hidden: true }, "Undo");
    const close = el("button", { type: "button", class: "cs-close" }, "Close");
    this.apply.addEventListener("click", () => this.commit());
    this.undo.addEventListener("click", () => this.revert());
    close.addEventListener("click", () => this.hide());
    const foot = el("div", { class: "cs-actions" }, [this.apply, this.undo, close]);
    box.replaceChildren(
      el("div", { class: "cs-head" }, [this.title, this.bulk, this.grow]),
      this.status,
      this.list,
      this.files,
      this.host,
      foot,
    );
    bus.on("layout:changed", () => this.diff?.layout());
    box.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && box.classList.contains("expanded")) {
        e.stopPropagation();
        this.expand(false);
        this.grow.focus();
      }
    });
  }

  /** Shows changeset `id` (fetched with its files and hunks). */
  async show(id) {
    const cs = await api(`/api/agent/changesets/${encodeURIComponent(id)}`);
    this.load(cs);
    this.box.hidden = false;
    this.box.scrollIntoView({ block: "nearest" });
    await this.renderDiff();
  }

  /** The agent's events about this changeset refresh it. */
  onEvent(event) {
    const kinds = ["changeset_decided", "changeset_applied", "changeset_undone"];
    if (!this.cs || !kinds.includes(event.kind) || event.data?.id !== this.cs.id || this.busy) return;
    this.refresh();
  }

  hide() {
    this.expand(false);
    this.box.hidden = true;
  }

  /** Shows the review over the work area (side-by-side diff) or back in the panel. */
  expand(on) {
    this.box.classList.toggle("expanded", on);
    this.grow.setAttribute("aria-pressed", String(on));
    this.grow.textContent = on ? "⤡" : "⤢";
    this.grow.title = on ? "Back into the agent panel" : "Show the review larger";
    this.grow.setAttribute("aria-label", this.grow.title);
    requestAnimationFrame(() => {
      this.diff?.updateOptions({ renderSideBySide: this.host.offsetWidth > 700 });
      this.diff?.layout();
    });
  }

  async refresh() {
    if (!this.cs) return;
    const cs = await api(`/api/agent/changesets/${encodeURIComponent(this.cs.id)}`);
    this.load(cs);
    await this.renderDiff();
  }

  load(cs) {
    const same = this.cs?.id === cs.id;
    this.cs = cs;
    if (!same) {
      this.fileIndex = 0;
      this.decisions.clear();
      for (const models of this.models.values()) {
        models.original.dispose();
        models.modified.dispose();
      }
      this.models.clear();
    }
    for (const hunk of this.hunks()) {
      const local = this.decisions.get(hunk.id);
      if (hunk.status !== "pending" || !local || !this.open()) this.decisions.set(hunk.id, hunk.status);
    }
    this.render();
  }

  hunks() {
    return (this.cs?.files || []).flatMap((f) => f.hunks);
  }

  open() {
    return this.cs?.status === "proposed";
  }

  // --- the hunk list ------------------------------------------------------------------

  render() {
    const cs = this.cs;
    this.title.textContent = cs.title || "Proposed changes";
    this.title.title = `${cs.title || "Proposed changes"} (${cs.id})`;
    const hunks = this.hunks();
    this.list.replaceChildren();
    hunks.forEach((hunk, n) => this.list.append(this.hunkItem(hunk, n)));
    this.files.replaceChildren();
    cs.files.forEach((file, n) => {
      const tab = el("button", {
        type: "button",
        role: "tab",
        class: "cs-file",
        "aria-selected": String(n === this.fileIndex),
        "data-path": file.path,
      }, fileLabel(file));
      tab.addEventListener("click", () => this.selectFile(n));
      this.files.append(tab);
    });
    this.files.hidden = cs.files.length < 2;
    const open = this.open();
    this.bulk.hidden = !open;
    const undecided = hunks.filter((h) => this.decisions.get(h.id) === "pending").length;
    this.apply.hidden = !open;
    this.apply.disabled = this.busy || undecided > 0;
    this.apply.title = undecided ? `Decide ${undecided} more hunk(s) first` : "Write the accepted hunks";
    this.undo.hidden = !["applied", "partially_applied"].includes(cs.status);
    this.undo.disabled = this.busy;
    this.status.textContent = this.summary(hunks, undecided);
    this.box.dataset.status = cs.status;
  }

  hunkItem(hunk, n) {
    const decision = this.decisions.get(hunk.id) || "pending";
    const added = hunk.lines.filter((l) => l.startsWith("+")).length;
    const removed = hunk.lines.filter((l) => l.startsWith("-")).length;
    const many = this.cs.files.length > 1;
    const where = hunk.kind === "rename" ? hunk.header.replace(/^@@\s*|\s*@@$/g, "") : `line ${firstChange(hunk)}`;
    const describe = `hunk-${this.cs.id}-${n}`;
    const go = el("button", { type: "button", class: "hunk-goto", title: `${hunk.path} ${hunk.header}`, "aria-describedby": describe }, [
      el("span", { class: "hunk-n" }, `#${n + 1}`),
      many ? el("span", { class: "hunk-path" }, hunk.path.split("/").pop()) : null,
      el("span", { class: "hunk-where" }, where),
      hunk.kind === "rename" ? null : el("span", { class: "hunk-stat" }, [
        el("span", { class: "add" }, `+${added}`),
        " ",
        el("span", { class: "del" }, `−${removed}`),
      ]),
      el("span", { class: `hunk-state ${decision}` }, decisionWord(decision).split(" ")[0]),
    ]);
    go.addEventListener("click", () => this.reveal(hunk));
    const open = this.open() && !this.busy;
    const button = (kind, label, pressed) => {
      const node = el("button", {
        type: "button",
        class: `hunk-${kind}`,
        "data-hunk": String(n),
        "data-hunk-id": hunk.id,
        "aria-pressed": String(pressed),
        "aria-label": `${label} hunk ${n + 1} (${hunk.path}, ${where})`,
        disabled: !open,
      }, label);
      return node;
    };
    const accept = button("accept", "Accept", decision === "approved");
    const reject = button("reject", "Reject", decision === "rejected");
    accept.addEventListener("click", () => this.decide(hunk, decision === "approved" ? "pending" : "approved"));
    reject.addEventListener("click", () => this.decide(hunk, decision === "rejected" ? "pending" : "rejected"));
    const text = el("pre", { class: "sr-only", id: describe }, describeHunk(hunk));
    return el("li", { class: "hunk", "data-hunk": String(n), "data-decision": decision }, [
      el("div", { class: "hunk-row" }, [go, el("span", { class: "hunk-buttons" }, [accept, reject])]),
      text,
    ]);
  }

  summary(hunks, undecided) {
    const count = (s) => hunks.filter((h) => this.decisions.get(h.id) === s).length;
    const files = this.cs.files.length;
    const size = `${hunks.length} hunk${hunks.length === 1 ? "" : "s"} in ${files} file${files === 1 ? "" : "s"}`;
    switch (this.cs.status) {
      case "proposed":
        if (this.busy) return "Applying…";
        return undecided
          ? `${size}. Accept or reject each hunk (${undecided} undecided), then Apply.`
          : `${size}: ${count("approved")} accepted, ${count("rejected")} rejected. Apply writes the accepted ones.`;
      case "applied":
        return `Applied all ${size}.`;
      case "partially_applied":
        return `Applied ${count("approved")} of ${hunks.length} hunks; ${count("rejected")} rejected.`;
      case "rejected":
        return "Every hunk was rejected; no file changed.";
      case "undone":
        return "Undone: the files are back as they were.";
      default:
        return `${size} (${this.cs.status}).`;
    }
  }

  decide(hunk, decision) {
    if (!this.open() || this.busy) return;
    this.decisions.set(hunk.id, decision);
    this.render();
    this.renderDiff();
    this.list.querySelector(`.hunk-${decision === "rejected" ? "reject" : "accept"}[data-hunk-id="${hunk.id}"]`)?.focus();
  }

  decideAll(decision) {
    if (!this.open() || this.busy) return;
    for (const hunk of this.hunks()) this.decisions.set(hunk.id, decision);
    this.render();
    this.renderDiff();
  }

  // --- apply and undo -----------------------------------------------------------------

  async commit() {
    const cs = this.cs;
    if (!this.open() || this.busy) return;
    const approve = this.hunks().filter((h) => this.decisions.get(h.id) === "approved").map((h) => h.id);
    const reject = this.hunks().filter((h) => this.decisions.get(h.id) === "rejected").map((h) => h.id);
    this.busy = true;
    this.render();
    try {
      const session = await api(`/api/agent/sessions/${encodeURIComponent(cs.session_id)}`).catch(() => null);
      const agentApplies = Boolean(session?.waiting_for?.includes(cs.id));
      const base = `/api/agent/changesets/${encodeURIComponent(cs.id)}`;
      if (approve.length) await api(`${base}/approve`, { method: "POST", json: { hunks: approve } });
      if (reject.length) await api(`${base}/reject`, { method: "POST", json: { hunks: reject } });
      let result;
      if (!agentApplies) result = await api(`${base}/apply`, { method: "POST" });
      else if (approve.length) result = await this.settled(base);
      else result = await this.closeRejected(base, cs.session_id);
      this.busy = false;
      this.load(result);
      await this.renderDiff();
      if (approve.length) {
        const paths = result.files.filter((f) => f.applied).map((f) => f.applied.path || f.path);
        bus.emit("file:changed", { changes: paths.map((path) => ({ change: "modified", path })) });
        bus.emit("toast", { kind: "info", text: this.status.textContent });
      }
    } catch (err) {
      this.busy = false;
      bus.emit("toast", { kind: "error", text: `Could not apply ${cs.id}: ${err.message}` });
      await this.refresh().catch(() => this.render());
      this.status.textContent = `Not applied: ${err.message}`;
    }
  }

  /** The changeset once the agent has applied it (it does so right after the decision). */
  async settled(base) {
    const deadline = Date.now() + SETTLE_TIMEOUT_MS;
    for (;;) {
      const cs = await api(base);
      if (cs.status !== "proposed") return cs;
      if (Date.now() > deadline) {
        throw new Error("the agent has not applied it yet; check the timeline for an error");
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  /** All rejected while the agent waited: once it has moved on, record the changeset as
   * rejected (apply writes nothing then). */
  async closeRejected(base, sessionId) {
    const deadline = Date.now() + SETTLE_TIMEOUT_MS;
    while (Date.now() < deadline) {
      const session = await api(`/api/agent/sessions/${encodeURIComponent(sessionId)}`);
      if (!session.waiting_for?.includes(this.cs.id)) return api(`${base}/apply`, { method: "POST" });
      await new Promise((r) => setTimeout(r, 200));
    }
    return api(base);
  }

  async revert() {
    const cs = this.cs;
    this.busy = true;
    this.render();
    try {
      const result = await api(`/api/agent/changesets/${encodeURIComponent(cs.id)}/undo`, { method: "POST" });
      this.busy = false;
      this.load(result);
      await this.renderDiff();
      const paths = result.files.map((f) => f.path);
      bus.emit("file:changed", { changes: paths.map((path) => ({ change: "modified", path })) });
      bus.emit("toast", { kind: "info", text: `Undid ${cs.id}` });
    } catch (err) {
      this.busy = false;
      this.render();
      bus.emit("toast", { kind: "error", text: `Could not undo ${cs.id}: ${err.message}` });
    }
  }

  // --- the diff -----------------------------------------------------------------------

  selectFile(n) {
    this.fileIndex = n;
    this.render();
    this.renderDiff();
  }

  reveal(hunk) {
    const n = this.cs.files.findIndex((f) => f.hunks.some((h) => h.id === hunk.id));
    if (n !== this.fileIndex) this.selectFile(n);
    const span = parseHeader(hunk.header);
    if (!span || !this.diff) return;
    const line = Math.max(1, span.oldStart + 1);
    this.diff.getOriginalEditor().revealLineInCenter(line);
    this.diff.getModifiedEditor().revealLineInCenter(this.zoneLine(hunk) || line);
  }

  zoneLine(hunk) {
    return this.zones.find((z) => z.id === hunk.id)?.line;
  }

  async renderDiff() {
    const file = this.cs?.files[this.fileIndex];
    if (!file) return;
    const monaco = await loadMonaco();
    if (!this.diff) {
      this.diff = monaco.editor.createDiffEditor(this.host, {
        theme: applyTheme(monaco, state.theme),
        automaticLayout: true,
        readOnly: true,
        originalEditable: false,
        renderSideBySide: this.host.offsetWidth > 700,
        useInlineViewWhenSpaceIsLimited: true,
        minimap: { enabled: false },
        scrollBeyondLastLine: false,
        renderOverviewRuler: false,
        ariaLabel: "Proposed change",
      });
    }
    const { text, starts } = preview(file, this.decisions);
    let models = this.models.get(file.path);
    if (!models) {
      const language = languageFor(monaco, "", file.path);
      models = {
        original: monaco.editor.createModel(file.before ?? "", language),
        modified: monaco.editor.createModel(text, language),
      };
      this.models.set(file.path, models);
    } else if (models.modified.getValue() !== text) {
      models.modified.setValue(text);
    }
    const current = this.diff.getModel();
    if (current?.original !== models.original || current?.modified !== models.modified) {
      this.diff.setModel(models);
    }
    this.label(file, starts);
  }

  /** A labelled strip above each hunk in the preview: its number and decision. */
  label(file, starts) {
    const editor = this.diff.getModifiedEditor();
    const all = this.hunks();
    editor.changeViewZones((zones) => {
      for (const zone of this.zones) zones.removeZone(zone.zoneId);
      this.zones = [];
      for (const hunk of file.hunks) {
        if (!(hunk.id in starts)) continue;
        const n = all.indexOf(hunk);
        const decision = this.decisions.get(hunk.id) || "pending";
        const node = el("div", { class: `hunk-zone ${decision}` }, `Hunk #${n + 1} · ${decisionWord(decision)}`);
        const line = starts[hunk.id];
        const zoneId = zones.addZone({ afterLineNumber: line, heightInPx: 20, domNode: node });
        this.zones.push({ id: hunk.id, zoneId, line: line + 1 });
      }
    });
  }
}

function decisionWord(decision) {
  return { approved: "accepted", rejected: "rejected (kept as it is)", pending: "undecided" }[decision];
}

function fileLabel(file) {
  if (file.before === null || file.before === undefined) return `${file.path} (new)`;
  if (file.after === null || file.after === undefined) return `${file.path} (deleted)`;
  if (file.renamed_from) return `${file.renamed_from} → ${file.path}`;
  return file.path;
}

/** Context lines before a hunk's first change. */
function leadingContext(hunk) {
  let n = 0;
  while (n < hunk.lines.length && hunk.lines[n].startsWith(" ")) n += 1;
  return n;
}

/** The 1-based line of the proposed file where a hunk's first change is. */
function firstChange(hunk) {
  const span = parseHeader(hunk.header);
  return span ? span.newStart + leadingContext(hunk) + 1 : 1;
}

/** A hunk's changed lines in words, for screen readers. */
function describeHunk(hunk) {
  const changed = hunk.lines.filter((l) => l.startsWith("+") || l.startsWith("-"));
  const shown = changed.slice(0, 20).map((l) => `${l.startsWith("+") ? "added" : "removed"}: ${l.slice(1)}`);
  if (changed.length > shown.length) shown.push(`and ${changed.length - shown.length} more changed lines`);
  return shown.join("\n");
}

/** `@@ -a,b +c,d @@` → 0-based [start, end) line spans, as agent/diffs.py reads them. */
function parseHeader(header) {
  const m = /^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@/.exec(header);
  if (!m) return null;
  const range = (first, length) => {
    const count = length === undefined ? 1 : Number(length);
    const start = count ? Number(first) - 1 : Number(first);
    return [start, start + count];
  };
  const [oldStart, oldEnd] = range(m[1], m[2]);
  const [newStart, newEnd] = range(m[3], m[4]);
  return { oldStart, oldEnd, newStart, newEnd };
}

function splitLines(text) {
  if (!text) return [];
  const parts = text.split("\n");
  const lines = parts.slice(0, -1).map((p) => `${p}\n`);
  if (parts[parts.length - 1]) lines.push(parts[parts.length - 1]);
  return lines;
}

/** The file as applying would leave it: each text hunk taken from `after` unless rejected
 * (undecided hunks show as proposed); also where each hunk starts in that text. */
function preview(file, decisions) {
  if (file.after === null || file.after === undefined) {
    const kept = file.hunks.some((h) => decisions.get(h.id) === "rejected");
    return { text: kept ? file.before ?? "" : "", starts: {} };
  }
  if (file.before === null || file.before === undefined) {
    const kept = !file.hunks.some((h) => decisions.get(h.id) === "rejected");
    return { text: kept ? file.after : "", starts: {} };
  }
  const old = splitLines(file.before);
  const neu = splitLines(file.after);
  const spans = file.hunks
    .filter((h) => h.kind !== "rename")
    .map((h) => ({ hunk: h, span: parseHeader(h.header) }))
    .filter((s) => s.span)
    .sort((a, b) => a.span.oldStart - b.span.oldStart);
  const out = [];
  const starts = {};
  let pos = 0;
  for (const { hunk, span } of spans) {
    out.push(...old.slice(pos, span.oldStart));
    starts[hunk.id] = out.length + leadingContext(hunk);
    const take = decisions.get(hunk.id) !== "rejected";
    out.push(...(take ? neu.slice(span.newStart, span.newEnd) : old.slice(span.oldStart, span.oldEnd)));
    pos = span.oldEnd;
  }
  out.push(...old.slice(pos));
  return { text: out.join(""), starts };
}

// Modal dialogs: a confirmation (alertdialog) and a small form, with focus kept inside.

import { h, trapFocus } from "./dom.js";

function modal({ role = "dialog", label, body, actions, onKey }) {
  const returnTo = document.activeElement;
  const titleId = `dialog-title-${Math.random().toString(36).slice(2, 8)}`;
  const dialog = h(
    "div",
    { class: "dialog", role, "aria-modal": "true", "aria-labelledby": titleId },
    h("h2", { class: "dialog-title", id: titleId }, label),
    body,
    h("div", { class: "dialog-actions" }, actions),
  );
  const backdrop = h("div", { class: "dialog-backdrop" }, dialog);
  document.getElementById("overlay-root").append(backdrop);
  const release = trapFocus(dialog);
  // On the document: Escape works even when the focus fell out (a button that got disabled).
  const onEscape = (event) => {
    if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      onKey?.("Escape");
    }
  };
  document.addEventListener("keydown", onEscape, true);
  const close = () => {
    document.removeEventListener("keydown", onEscape, true);
    release();
    backdrop.remove();
    if (returnTo?.isConnected) returnTo.focus();
  };
  return { dialog, backdrop, close };
}

/** Ask before something that cannot be undone; resolves true when confirmed. */
export function confirmDialog({ title, message, confirm = "OK", danger = false }) {
  return new Promise((resolve) => {
    const cancelButton = h("button", { type: "button", class: "button" }, "Cancel");
    const okButton = h("button", { type: "button", class: `button ${danger ? "button-danger" : "button-primary"}` }, confirm);
    const descId = `dialog-desc-${Math.random().toString(36).slice(2, 8)}`;
    const { dialog, close } = modal({
      role: "alertdialog",
      label: title,
      body: h("p", { class: "dialog-message", id: descId }, message),
      actions: [cancelButton, okButton],
      onKey: () => done(false),
    });
    dialog.setAttribute("aria-describedby", descId);
    const done = (answer) => {
      close();
      resolve(answer);
    };
    cancelButton.addEventListener("click", () => done(false));
    okButton.addEventListener("click", () => done(true));
    (danger ? cancelButton : okButton).focus();
  });
}

/**
 * A one-form dialog: `fields` [{name, label, value?, placeholder?, pattern?, options?}];
 * `submit(values)` may throw (its message is shown and the dialog stays); resolves with
 * what submit returned, or null when cancelled.
 */
export function formDialog({ title, fields, confirm = "OK", note, submit }) {
  return new Promise((resolve) => {
    const error = h("p", { class: "dialog-error", role: "alert", hidden: true });
    const inputs = fields.map((f) => {
      const id = `field-${f.name}-${Math.random().toString(36).slice(2, 6)}`;
      const control = f.options
        ? h("select", { id, name: f.name, class: "input" }, f.options.map((o) => h("option", { value: o.value }, o.label)))
        : h("input", { id, name: f.name, class: "input", type: "text", value: f.value ?? "", placeholder: f.placeholder ?? "", pattern: f.pattern, required: true, autocomplete: "off", spellcheck: "false" });
      return { f, control, row: h("div", { class: "form-row" }, h("label", { for: id }, f.label), control) };
    });
    const cancelButton = h("button", { type: "button", class: "button" }, "Cancel");
    const okButton = h("button", { type: "submit", class: "button button-primary" }, confirm);
    const form = h("form", { class: "dialog-form", novalidate: true }, inputs.map((i) => i.row), note ? h("p", { class: "dialog-note" }, note) : null, error);
    const { dialog, close } = modal({ label: title, body: form, actions: [cancelButton, okButton], onKey: () => done(null) });
    okButton.setAttribute("form", (form.id = `form-${Math.random().toString(36).slice(2, 8)}`));
    const done = (value) => {
      close();
      resolve(value);
    };
    cancelButton.addEventListener("click", () => done(null));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const values = Object.fromEntries(inputs.map(({ f, control }) => [f.name, control.value.trim()]));
      okButton.disabled = true;
      try {
        done(await submit(values));
      } catch (err) {
        error.hidden = false;
        error.textContent = err.message ?? String(err);
        okButton.disabled = false;
        const first = dialog.querySelector("input, select");
        first?.focus();
        first?.select?.();
      }
    });
    dialog.querySelector("input, select")?.focus();
  });
}

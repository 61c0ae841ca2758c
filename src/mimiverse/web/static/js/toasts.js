// Toasts: short notes in the corner; errors carry the server's message and stay until read.

import { bus } from "./bus.js";
import { h, icon } from "./dom.js";

const MAX = 4;

/** Show `toast` events in `host` (a live region). */
export function installToasts(host) {
  bus.on("toast", ({ kind = "info", text = "", timeoutMs } = {}) => {
    if (!text) return;
    const error = kind === "error";
    const close = h("button", { class: "icon-button toast-close", "aria-label": "Dismiss notification", type: "button" }, icon("close", 14));
    const toast = h(
      "div",
      { class: `toast toast-${kind}`, role: error ? "alert" : "status" },
      icon(error ? "error" : kind === "success" ? "check" : "info"),
      h("div", { class: "toast-text" }, text),
      close,
    );
    const dismiss = () => {
      toast.classList.add("leaving");
      setTimeout(() => toast.remove(), 150);
    };
    close.addEventListener("click", dismiss);
    host.append(toast);
    while (host.children.length > MAX) host.firstElementChild.remove();
    setTimeout(dismiss, timeoutMs ?? (error ? 10_000 : 4_000));
  });
}

/** Report `err` (an ApiError or any Error) as an error toast, prefixed by what was being done. */
export function toastError(what, err) {
  if (err?.name === "AbortError") return;
  const message = err?.message ?? String(err);
  bus.emit("toast", { kind: "error", text: what ? `${what}: ${message}` : message });
}

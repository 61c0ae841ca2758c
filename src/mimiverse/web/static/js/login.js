// The login screen (auth=accounts): sign in, or create the first admin with the setup code
// `mimiverse serve` printed; the user menu with logout once signed in.

import { api } from "./api.js";
import { bus } from "./bus.js";
import { h, icon } from "./dom.js";
import { commands, state } from "./state.js";
import { toastError } from "./toasts.js";

function field(name, label, type = "text", extra = {}) {
  const id = `login-${name}`;
  const input = h("input", { id, name, type, class: "input", required: true, autocomplete: extra.autocomplete ?? "off", spellcheck: "false", ...extra });
  return { input, row: h("div", { class: "form-row" }, h("label", { for: id }, label), input) };
}

/**
 * Show the login (or first-admin setup) form in `view` until someone signs in; resolves with
 * the user (and sets state.user / state.csrf).
 */
export function showLogin(view, { setupRequired = false, reason = "" } = {}) {
  return new Promise((resolve) => {
    const username = field("username", "Username", "text", { autocomplete: "username" });
    const password = field("password", setupRequired ? "Password (at least 10 characters)" : "Password", "password", {
      autocomplete: setupRequired ? "new-password" : "current-password",
    });
    const code = setupRequired ? field("setup_code", "Setup code", "text", { autocomplete: "one-time-code" }) : null;
    const error = h("p", { class: "login-error", role: "alert", hidden: !reason }, reason);
    const submit = h("button", { type: "submit", class: "button button-primary button-wide" }, setupRequired ? "Create admin and sign in" : "Sign in");
    const form = h(
      "form",
      { class: "login-form", "aria-label": setupRequired ? "Create the first admin" : "Sign in" },
      username.row,
      password.row,
      code?.row,
      error,
      submit,
    );
    const card = h(
      "div",
      { class: "login-card" },
      h("div", { class: "login-brand", "aria-hidden": "true" }, h("span", { class: "brand-mark" }), "Mimiverse"),
      h("h1", {}, setupRequired ? "Create the first admin" : "Sign in"),
      h(
        "p",
        { class: "muted" },
        ...(setupRequired
          ? ["No account exists yet. Use the setup code ", h("code", {}, "mimiverse serve"), " printed (also in ", h("code", {}, "<data_dir>/setup-code"), ")."]
          : ["This server has accounts: sign in to open your projects."]),
      ),
      form,
    );
    view.replaceChildren(card);
    view.hidden = false;
    username.input.focus();
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      error.hidden = true;
      submit.disabled = true;
      const body = { username: username.input.value.trim(), password: password.input.value };
      if (code) body.setup_code = code.input.value.trim();
      try {
        const answer = await api(setupRequired ? "/api/auth/setup" : "/api/auth/login", { method: "POST", json: body });
        state.user = answer.user;
        state.csrf = answer.csrf ?? answer.user?.csrf ?? "";
        view.hidden = true;
        view.replaceChildren();
        resolve(state.user);
      } catch (err) {
        error.textContent = err.message;
        error.hidden = false;
        submit.disabled = false;
        password.input.select();
        password.input.focus();
      }
    });
  });
}

async function logout() {
  try {
    await api("/api/auth/logout", { method: "POST" });
  } catch (err) {
    toastError("Cannot log out", err);
    return;
  }
  state.user = null;
  state.csrf = "";
  location.reload();
}

/** The signed-in user's menu in the title bar (auth=accounts only). */
export function mountUser(slot) {
  if (state.auth !== "accounts" || !state.user) {
    slot.replaceChildren();
    return;
  }
  const user = state.user;
  const button = h(
    "button",
    { type: "button", class: "user-button", "aria-label": `Log out ${user.username}`, title: `${user.username} (${user.role}) — log out` },
    icon("user", 14),
    h("span", { class: "user-name" }, user.username),
    icon("logout", 14),
  );
  button.addEventListener("click", logout);
  slot.replaceChildren(button);
  commands.registerCommand({ id: "auth.logout", title: "Accounts: Log Out", run: logout });
}

/** Ask for the password again when the session ended (the page and its edits stay). */
export function watchSession(view) {
  let asking = null;
  bus.on("auth:required", () => {
    if (asking || state.auth !== "accounts") return;
    asking = showLogin(view, { reason: "Your session ended: sign in again to go on." }).finally(() => {
      asking = null;
    });
  });
}

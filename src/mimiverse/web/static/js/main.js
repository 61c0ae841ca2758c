// Boot: who is calling (login when accounts are on), prefs, project, then the shell and every
// panel. Work panels (editor, agent, terminal) load on their own: one that fails shows its
// error in its region and the rest of the IDE works.

import { api, apiStream, withProject, wsUrl } from "./api.js";
import { bus } from "./bus.js";
import { h, icon } from "./dom.js";
import * as files from "./files.js";
import { mountUser, showLogin, watchSession } from "./login.js";
import * as metrics from "./metrics.js";
import { loadPrefs } from "./prefs.js";
import * as projects from "./projects.js";
import * as search from "./search.js";
import { initShell } from "./shell.js";
import { commands, state } from "./state.js";
import * as status from "./status.js";
import { installToasts } from "./toasts.js";

const PANELS = [
  { name: "editor", region: "region-editor", title: "editor" },
  { name: "agent", region: "region-agent", title: "agent" },
  { name: "terminal", region: "region-terminal", title: "terminal" },
];
const MOUNT_TIMEOUT_MS = 30_000;
const $ = (id) => document.getElementById(id);

window.mimi = { bus, state, api, apiStream, wsUrl, withProject, commands, editor: null, panels: {} };

function withTimeout(promise, ms, what) {
  let timer = 0;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms / 1000} s`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** The object editor.js offers as its API (openFile, activePath, getValue, monaco, instance). */
function editorApi(mod) {
  return [mod.editor, mod.api, mod.default].find((o) => o && typeof o.openFile === "function") ?? mod;
}

function panelError(panel, err, retry) {
  const again = h("button", { type: "button", class: "button" }, "Try again");
  again.addEventListener("click", retry);
  return h(
    "div",
    { class: "region-error", role: "alert" },
    icon("error", 20),
    h("p", {}, h("strong", {}, `The ${panel.title} did not load.`), " ", err?.message ?? String(err)),
    again,
  );
}

async function mountPanel(panel, attempt = 0) {
  const el = $(panel.region);
  window.mimi.panels[panel.name] = "loading";
  try {
    const url = `./${panel.name}.js${attempt ? `?attempt=${attempt}` : ""}`;
    const mod = await withTimeout(import(url), MOUNT_TIMEOUT_MS, `loading ${panel.name}.js`);
    if (typeof mod.mount !== "function") throw new Error(`${panel.name}.js exports no mount(container)`);
    await withTimeout(Promise.resolve(mod.mount(el)), MOUNT_TIMEOUT_MS, `starting the ${panel.title}`);
    if (panel.name === "editor") window.mimi.editor = editorApi(mod);
    window.mimi.panels[panel.name] = "ready";
  } catch (err) {
    console.error(`the ${panel.title} panel failed`, err);
    window.mimi.panels[panel.name] = `failed: ${err?.message ?? err}`;
    el.replaceChildren(panelError(panel, err, () => mountPanel(panel, attempt + 1)));
  }
}

function bootError(err) {
  const retry = h("button", { type: "button", class: "button button-primary" }, "Try again");
  retry.addEventListener("click", () => location.reload());
  $("boot").replaceChildren(
    h("div", { class: "boot-mark", "aria-hidden": "true" }),
    h("p", { class: "boot-error", role: "alert" }, `Mimiverse could not start: ${err?.message ?? err}`),
    retry,
  );
}

async function boot() {
  installToasts($("toasts"));
  const auth = await api("/api/auth/status");
  state.auth = auth.auth;
  state.user = auth.user;
  state.csrf = auth.user?.csrf ?? "";
  if (auth.auth === "accounts" && !auth.user) {
    $("boot").hidden = true;
    await showLogin($("login-view"), { setupRequired: auth.setup_required });
    $("boot").hidden = false;
  }
  watchSession($("login-view"));

  const prefs = await loadPrefs();
  state.mode = prefs.mode;
  state.theme = prefs.theme;
  state.layout = prefs.layout;
  document.body.dataset.theme = prefs.theme;
  document.body.dataset.mode = prefs.mode;

  await projects.initProjects();
  projects.mount($("project-slot"));
  mountUser($("user-slot"));

  metrics.mount($("metrics-view"));
  status.mount($("statusbar"));
  search.mount($("region-search"));
  const tree = files.mount($("region-files"));
  $("boot").hidden = true;
  $("app").hidden = false;
  initShell();

  await Promise.allSettled([tree, ...PANELS.map((panel) => mountPanel(panel))]);
  bus.emit("layout:changed", {});
  document.body.dataset.ready = "true";
}

boot().catch((err) => {
  console.error("boot failed", err);
  bootError(err);
});

// The project picker: the caller's projects (GET /api/projects), switching, and creating one
// (POST /api/projects) in their own root or a team's.

import { api } from "./api.js";
import { bus } from "./bus.js";
import { formDialog } from "./dialog.js";
import { h, icon, trapFocus } from "./dom.js";
import { commands, state } from "./state.js";
import { toastError } from "./toasts.js";

const KEY = "mimi.project";
let projects = [];
let button = null;
let popover = null;

function remembered() {
  try {
    return localStorage.getItem(KEY) ?? "";
  } catch {
    return "";
  }
}

function remember(ref) {
  try {
    localStorage.setItem(KEY, ref);
  } catch {
    // storage off: the choice lasts for this page
  }
}

async function fetchProjects() {
  const body = await api("/api/projects");
  projects = body.projects ?? [];
  return projects;
}

/** Load the caller's projects and pick the current one (the last used, else the first). */
export async function initProjects() {
  try {
    await fetchProjects();
  } catch (err) {
    toastError("Cannot list your projects", err);
    projects = [];
  }
  const saved = remembered();
  const pick = projects.find((p) => p.ref === saved) ?? projects[0];
  state.project = pick?.ref ?? "";
  return state.project;
}

function current() {
  return projects.find((p) => p.ref === state.project) ?? null;
}

function describe(project) {
  if (!project) return { name: "default project", owner: "" };
  const owner = project.shared ? project.owner.replace(/^team:/, "team ") : project.owner;
  return { name: project.name, owner };
}

function showButton() {
  const d = describe(current());
  button.replaceChildren(icon("repo", 14), h("span", { class: "project-name" }, d.name), d.owner ? h("span", { class: "project-owner" }, d.owner) : null, icon("chevron-down", 12));
  button.setAttribute("aria-label", `Project: ${d.name}${d.owner ? ` (${d.owner})` : ""}. Switch project`);
  document.title = `${d.name} — Mimiverse`;
}

/** Make `ref` the current project and tell every panel. */
export function switchProject(ref) {
  if (ref === state.project) return;
  state.project = ref;
  remember(ref);
  showButton();
  bus.emit("project:changed", { project: ref });
}

async function createProject() {
  if (state.auth === "local") {
    bus.emit("toast", {
      kind: "info",
      text: "auth=local serves one project (MIMI_PROJECT_ROOT); run with MIMI_AUTH=accounts for per-user projects.",
      timeoutMs: 8000,
    });
    return;
  }
  const teams = state.user?.teams ?? [];
  const fields = [{ name: "name", label: "Project name", placeholder: "my-app", pattern: "[A-Za-z0-9][A-Za-z0-9_.\\-]{0,31}" }];
  if (teams.length) {
    fields.push({ name: "team", label: "Owner", options: [{ value: "", label: `${state.user.username} (you)` }, ...teams.map((t) => ({ value: t, label: `team ${t}` }))] });
  }
  const made = await formDialog({
    title: "New project",
    fields,
    confirm: "Create",
    note: "1–32 letters, digits, '_', '.' or '-'. The project starts empty.",
    submit: async ({ name, team }) => {
      if (!name) throw new Error("type a name for the project");
      return api("/api/projects", { method: "POST", json: team ? { name, team } : { name } });
    },
  });
  if (!made) return;
  await fetchProjects().catch(() => projects.push(made));
  switchProject(made.ref);
  bus.emit("toast", { kind: "success", text: `Created project ${made.ref}` });
}

function closePicker({ focus = true } = {}) {
  if (!popover) return;
  const gone = popover;
  popover = null; // first: removing the focused item fires focusout, which closes too
  gone.release();
  gone.el.remove();
  button.setAttribute("aria-expanded", "false");
  if (focus) button.focus();
}

async function openPicker() {
  if (popover) {
    closePicker();
    return;
  }
  try {
    await fetchProjects();
  } catch (err) {
    toastError("Cannot list your projects", err);
  }
  const options = projects.map((p) => {
    const d = describe(p);
    const el = h(
      "button",
      { type: "button", class: "picker-item", role: "menuitemradio", "aria-checked": String(p.ref === state.project), dataset: { ref: p.ref }, tabindex: "-1" },
      icon(p.ref === state.project ? "check" : "repo", 14),
      h("span", { class: "picker-name" }, d.name),
      h("span", { class: "picker-owner" }, d.owner),
    );
    el.addEventListener("click", () => {
      closePicker();
      switchProject(p.ref);
    });
    return el;
  });
  const create = h("button", { type: "button", class: "picker-item picker-create", role: "menuitem", tabindex: "-1" }, icon("new-folder", 14), h("span", { class: "picker-name" }, "New project…"));
  create.addEventListener("click", () => {
    closePicker({ focus: false });
    createProject().catch((err) => toastError("Cannot create the project", err));
  });
  const items = [...options, create];
  const el = h(
    "div",
    { class: "menu picker", role: "menu", "aria-label": "Projects" },
    h("div", { class: "picker-head", role: "presentation" }, "Projects"),
    options.length ? options : h("p", { class: "picker-empty muted" }, "No projects yet."),
    h("div", { class: "menu-sep", role: "separator" }),
    create,
  );
  el.addEventListener("keydown", (event) => {
    const i = items.indexOf(document.activeElement);
    const step = { ArrowDown: 1, ArrowUp: -1 }[event.key];
    if (step) {
      event.preventDefault();
      items[(i + step + items.length) % items.length].focus();
    } else if (event.key === "Home" || event.key === "End") {
      event.preventDefault();
      items[event.key === "Home" ? 0 : items.length - 1].focus();
    } else if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      closePicker();
    } else if (event.key === "Tab") {
      closePicker({ focus: false });
    }
  });
  el.addEventListener("focusout", (event) => {
    if (popover && !el.contains(event.relatedTarget) && event.relatedTarget !== button) closePicker({ focus: false });
  });
  document.getElementById("overlay-root").append(el);
  const box = button.getBoundingClientRect();
  el.style.left = `${box.left}px`;
  el.style.top = `${box.bottom + 4}px`;
  popover = { el, release: trapFocus(el) };
  button.setAttribute("aria-expanded", "true");
  (items.find((b) => b.getAttribute("aria-checked") === "true") ?? items[0]).focus();
}

/** The picker button in the title bar. */
export function mount(slot) {
  button = h("button", { id: "project-button", type: "button", class: "project-button", "aria-haspopup": "menu", "aria-expanded": "false" });
  button.addEventListener("click", openPicker);
  button.addEventListener("keydown", (event) => {
    if (event.key === "ArrowDown") {
      event.preventDefault();
      if (!popover) openPicker();
    }
  });
  slot.replaceChildren(button);
  showButton();
  commands.registerCommand({ id: "projects.switch", title: "Projects: Switch Project…", run: openPicker });
  commands.registerCommand({ id: "projects.create", title: "Projects: New Project…", run: () => createProject() });
}

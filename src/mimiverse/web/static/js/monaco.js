// Loads Monaco's prebuilt AMD build from /vendor/monaco (no bundler, no CDN) once, and maps
// language names to Monaco's. Monaco 0.57's editor.main sets self.MonacoEnvironment itself:
// each worker is a blob: script that importScripts() its same-origin file under vs/assets.

const VS = "/vendor/monaco/vs";
let loading = null;

/** The `monaco` namespace, loading the editor the first time. */
export function loadMonaco() {
  if (loading) return loading;
  loading = new Promise((resolve, reject) => {
    const boot = () => {
      window.require.config({ paths: { vs: VS } });
      window.require(
        ["vs/editor/editor.main"],
        (main) => resolve(window.monaco || main),
        (err) => reject(new Error(`the editor failed to load: ${err?.message || err}`)),
      );
    };
    if (window.require && typeof window.require.config === "function") {
      boot();
      return;
    }
    const script = document.createElement("script");
    script.src = `${VS}/loader.js`;
    script.onload = boot;
    script.onerror = () =>
      reject(new Error("the editor's files are missing: run bash scripts/setup (npm ci in src/mimiverse/web)"));
    document.head.appendChild(script);
  });
  loading.catch(() => {
    loading = null; // a later call tries again
  });
  return loading;
}

/** Defines and sets Monaco's theme for the IDE's theme ("dark" | "light"), its background
 * taken from the shell's --bg-editor; returns the theme's name. Monaco themes are global. */
export function applyTheme(monaco, theme) {
  const light = theme === "light";
  const name = light ? "mimi-light" : "mimi-dark";
  const background = getComputedStyle(document.body).getPropertyValue("--bg-editor").trim();
  const colors = /^#[0-9a-f]{6}$/i.test(background) ? { "editor.background": background } : {};
  monaco.editor.defineTheme(name, { base: light ? "vs" : "vs-dark", inherit: true, rules: [], colors });
  monaco.editor.setTheme(name);
  return name;
}

const ALIASES = {
  tsx: "typescript",
  typescriptreact: "typescript",
  jsx: "javascript",
  javascriptreact: "javascript",
  c_sharp: "csharp",
  "c#": "csharp",
  "c++": "cpp",
  bash: "shell",
  sh: "shell",
  zsh: "shell",
  golang: "go",
  yml: "yaml",
  md: "markdown",
  text: "plaintext",
  toml: "ini",
};

/** Monaco's language id for a server language name, else from the file name. */
export function languageFor(monaco, language, path) {
  const known = monaco.languages.getLanguages();
  const ids = new Set(known.map((l) => l.id));
  const name = String(language || "").toLowerCase();
  for (const candidate of [name, ALIASES[name]]) {
    if (candidate && ids.has(candidate)) return candidate;
  }
  const base = String(path || "").split("/").pop().toLowerCase();
  const dot = base.lastIndexOf(".");
  const ext = dot > 0 ? base.slice(dot) : "";
  for (const lang of known) {
    if ((lang.filenames || []).some((f) => f.toLowerCase() === base)) return lang.id;
  }
  if (ext) {
    for (const lang of known) {
      if ((lang.extensions || []).some((e) => e.toLowerCase() === ext)) return lang.id;
    }
  }
  return "plaintext";
}

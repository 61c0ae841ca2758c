"""Codebase search and index status."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from mimiverse.errors import BadRequest, MimiError
from mimiverse.index.languages import LANGUAGES
from mimiverse.index.service import IndexService
from mimiverse.index.stores.base import Filters

router = APIRouter(prefix="/api/codebase")
MAX_QUERY_CHARS = 2000


class FiltersBody(BaseModel):
    """Optional narrowing of a search."""

    model_config = ConfigDict(extra="forbid")
    path: str = Field(default="", description="Glob relative to the project root, e.g. src/**/*.py")
    language: str = ""
    kind: str = ""

    @field_validator("path")
    @classmethod
    def _inside(cls, value: str) -> str:
        if value.startswith(("/", "\\")) or ".." in value.replace("\\", "/").split("/"):
            raise ValueError(
                f"path filter '{value}' leaves the project: use a glob relative to the "
                "project root, e.g. 'src/**/*.py'"
            )
        return value

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

    model_config = ConfigDict(extra="forbid")
    query: str
    limit: int = Field(default=10, ge=1, le=200)
    mode: Literal["hybrid", "lexical", "semantic"] = "hybrid"
    filters: FiltersBody = Field(default_factory=FiltersBody)
    rerank: bool | None = Field(
        default=None,
        description="Reorder the best hits with the gateway's rerank task (default: when one "
        "is configured).",
    )


def service_of(request: Request) -> IndexService:
    """The app's index service; a clear error when indexing is off."""
    service: IndexService | None = getattr(request.app.state, "index", None)
    if service is None:
        err = MimiError(
            "the codebase index is off: start the server with MIMI_INDEX_ON_START=true "
            "and MIMI_PROJECT_ROOT=/path/to/project"
        )
        err.status, err.code = 503, "index_off"
        raise err
    return service


@router.post("/search")
async def search(body: SearchBody, request: Request) -> dict[str, Any]:
    """Ranked chunks for a query: path, lines, symbol, snippet, and each method's rank."""
    query = body.query.strip()
    if not query:
        raise BadRequest("query is empty: send words or an identifier to search for")
    if len(query) > MAX_QUERY_CHARS:
        raise BadRequest(
            f"query is {len(query)} characters; the limit is {MAX_QUERY_CHARS}: "
            "search for a shorter description or an identifier"
        )
    service = service_of(request)
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
        "status": result.status,
    }


@router.get("/status")
async def status(request: Request) -> dict[str, Any]:
    """Files, chunks, embedding progress, last sync, skipped files."""
    service = service_of(request)
    info = service.indexer.status()
    info["ready"] = service.ready.is_set()
    info["skipped_files"] = service.indexer.skipped[:200]
    return info


def _tag(tag: Any) -> dict[str, Any]:
    return {"path": tag.path, "line": tag.line, "name": tag.name, "kind": tag.kind,
            "signature": tag.signature}  # fmt: skip


def _name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 200:
        raise BadRequest("name must be 1–200 characters: send a symbol such as MyClass.method")
    return name


@router.get("/definitions")
async def definitions(name: str, request: Request) -> dict[str, Any]:
    """Where a symbol is defined."""
    symbols = await asyncio.to_thread(service_of(request).indexer.symbol_map)
    return {"name": name, "definitions": [_tag(t) for t in symbols.definitions(_name(name))]}


@router.get("/references")
async def references(name: str, request: Request) -> dict[str, Any]:
    """Where a symbol is used."""
    symbols = await asyncio.to_thread(service_of(request).indexer.symbol_map)
    return {"name": name, "references": [_tag(t) for t in symbols.references(_name(name))]}


@router.get("/repomap")
async def repomap(request: Request, budget: int = 1024, focus: str = "") -> dict[str, Any]:
    """The most important definitions within ``budget`` tokens (PageRank, focus files first)."""
    if not 64 <= budget <= 32_768:
        raise BadRequest("budget must be between 64 and 32768 tokens")
    symbols = await asyncio.to_thread(service_of(request).indexer.symbol_map)
    files = [f for f in focus.split(",") if f]
    text = await asyncio.to_thread(symbols.repo_map, budget, files)
    return {"budget": budget, "focus": files, "map": text}

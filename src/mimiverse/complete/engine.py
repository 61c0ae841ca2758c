"""The completion engine: context → template (in the gateway) → stop rules → suggestion.

``Completer.complete`` serves one editor request; ``session`` explains the per-editor
reuse (anchor, typed ahead, same prompt, cancel). A new generation waits for the one it
replaces to let go of the model's slot, so the new prompt lands on the slot whose KV
cache holds its start. Exact repeats come from the gateway's response cache; a stream
our stop rules cut short is stored there by us (the gateway only stores finished ones).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from mimiverse.complete import postprocess
from mimiverse.complete.context import Budget, chars_for, prefix_window, suffix_window
from mimiverse.complete.feedback import FeedbackStore, Record
from mimiverse.complete.languages import Language, language_of
from mimiverse.complete.related import Related, Snippet, fit, header
from mimiverse.complete.session import Anchor, Flight, Last, Outcome, Session, Sessions
from mimiverse.errors import EmptyInput, MimiError
from mimiverse.gateway.base import FimFile, FimRequest
from mimiverse.gateway.service import Gateway, StreamInfo

log = logging.getLogger("mimiverse.complete")

Listener = Callable[[str], None]


@dataclass
class CompletionRequest:
    """One editor request: the text around the cursor and where it is."""

    prefix: str
    suffix: str = ""
    path: str = ""
    language: str = ""
    session: str | None = None
    """Editor id; None: a one-off request (no reuse, no cancelling of others)."""
    model: str | None = None
    temperature: float = 0.0
    max_tokens: int | None = None
    """None: the engine's budget for a line or a block."""
    stop: list[str] = field(default_factory=list)
    files: list[FimFile] = field(default_factory=list)
    """Extra context from the editor (open tabs), used before recent files."""
    multiline: bool | None = None
    """Force single- (False) or multi-line (True); None: decided from the cursor position."""
    context: bool = True
    """False: prefix and suffix windows only (no related snippets)."""


@dataclass
class Suggestion:
    """What the editor shows."""

    id: str
    text: str
    source: str
    """``model``, ``cache``, ``typed`` (rest of the last suggestion) or ``inflight``."""
    latency_ms: float
    model: str = ""
    endpoint: str = ""
    multiline: bool = False
    finish_reason: str = "stop"
    cancelled: bool = False

    def as_dict(self) -> dict[str, Any]:
        """JSON for the API."""
        body = asdict(self)
        body["latency_ms"] = round(self.latency_ms, 2)
        body["cached"] = self.source in ("cache", "typed", "inflight")
        return body


@dataclass
class _Plan:
    """A prepared generation: the model request, the rules that end it, its identity."""

    fim: FimRequest
    shape: postprocess.Shape
    key: str


class Completer:
    """Inline completions on top of the gateway."""

    def __init__(
        self,
        gateway: Gateway,
        *,
        budget: Budget | None = None,
        related: Related | None = None,
        feedback: FeedbackStore | None = None,
        recent_files: int = 4,
        repo: str = "",
    ) -> None:
        self.gateway = gateway
        self.budget = budget or Budget()
        self.related = related or Related()
        self.feedback = feedback
        self.repo = repo
        self.sessions = Sessions(recent_files)
        self._background: set[asyncio.Task[None]] = set()

    # --- the request path -------------------------------------------------------------

    async def complete(
        self, request: CompletionRequest, listener: Listener | None = None
    ) -> Suggestion:
        """The suggestion for ``request`` (empty text when there is none)."""
        began = time.perf_counter()
        if not request.prefix and not request.suffix:
            raise EmptyInput(
                "prefix and suffix are both empty: send the text before and after the cursor"
            )
        language = language_of(request.language, request.path)
        session = self.sessions.get(request.session)
        async with session.lock:
            session.recent.note(request.path, request.prefix, request.suffix)
            if session.last is not None:
                rest = session.last.remainder(request.path, request.prefix, request.suffix)
                if rest is not None:
                    outcome = session.last.outcome
                    return await self._suggest(
                        session, request, language, rest, "typed", outcome, began
                    )
            plan = await self._plan(session, request, language)
            flight, typed = session.flight, ""
            source = "inflight"
            if flight is not None and flight.key == plan.key and not _failed(flight):
                pass  # the same prompt again (a repeated request): share its generation
            elif (
                flight is not None
                and flight.running
                and (
                    (since := flight.typed_since(request.path, request.prefix, request.suffix))
                    is not None
                    and flight.agrees_with(since)
                )
            ):
                typed = since  # the user typed what the running generation writes: wait
            else:
                if flight is not None and flight.running:
                    await flight.cancel()
                flight = self._start(session, request, plan)
                source = "model"
                if listener is not None:
                    flight.listeners.append(listener)
        outcome = await asyncio.shield(flight.future)
        if outcome.error is not None:
            raise outcome.error
        if outcome.cancelled:
            return Suggestion(_new_id(), "", source, _ms(began), cancelled=True)
        if outcome.cached and source == "model":
            source = "cache"
        text = outcome.after(typed) if typed else outcome.text
        if text is None:
            return await self.complete(request, listener)  # it wrote something else: afresh
        return await self._suggest(session, request, language, text, source, outcome, began)

    async def _suggest(
        self,
        session: Session,
        request: CompletionRequest,
        language: Language,
        text: str,
        source: str,
        outcome: Outcome,
        began: float,
    ) -> Suggestion:
        suggestion = Suggestion(
            _new_id(),
            text,
            source,
            _ms(began),
            model=outcome.model,
            endpoint=outcome.endpoint,
            multiline=outcome.multiline,
            finish_reason=outcome.finish_reason,
        )
        if not text:
            return suggestion
        if source != "typed":
            session.last = Last(request.path, request.prefix, request.suffix, text, outcome)
        if self.feedback is not None:
            record = Record(
                suggestion.id,
                outcome.model,
                outcome.endpoint,
                language.name if language.name != "default" else request.language,
                source,
                len(text),
                text.count("\n") + 1,
                suggestion.latency_ms,
            )
            try:  # awaited (one insert on a worker thread) so feedback may follow at once
                await self.feedback.add(record)
            except Exception as exc:  # feedback is bookkeeping: never fail a suggestion on it
                log.warning("could not store suggestion %s: %s", record.id, exc)
        return suggestion

    # --- planning ----------------------------------------------------------------------

    def _anchor(self, session: Session, request: CompletionRequest) -> Anchor:
        """The session's anchor if the user still types there, else one at the cursor."""
        max_middle = chars_for(self.budget.middle_tokens())
        anchor = session.anchor
        if anchor is not None and anchor.holds(
            request.path, request.prefix, request.suffix, max_middle
        ):
            return anchor
        # At the cursor: the first request at a place is a plain prefix-suffix-middle
        # prompt (the format the model was trained on); typing then extends the middle.
        anchor = Anchor(request.path, request.suffix, request.prefix)
        session.anchor = anchor
        return anchor

    async def _plan(
        self, session: Session, request: CompletionRequest, language: Language
    ) -> _Plan:
        anchor = self._anchor(session, request)
        middle = request.prefix[len(anchor.head) :]
        head, _ = prefix_window(anchor.head, chars_for(self.budget.prefix_tokens))
        suffix = suffix_window(request.suffix, chars_for(self.budget.suffix_tokens))
        shape = postprocess.shape(head + middle, suffix, language)
        if request.multiline is not None and request.multiline != shape.multiline:
            shape = replace(shape, multiline=request.multiline)
        files = await self._files(session, request, language, anchor.head, suffix)
        max_tokens = request.max_tokens or (
            self.budget.block_tokens if shape.multiline else self.budget.line_tokens
        )
        stop = list(request.stop)
        if not shape.multiline and "\n" not in stop:
            stop.append("\n")  # the model stops itself at the line end: no wasted token
        fim = FimRequest(
            prefix=head,
            suffix=suffix,
            middle=middle,
            max_tokens=max_tokens,
            temperature=request.temperature,
            stop=stop,
            language=language.name,
            path=request.path,
            files=files,
            repo=self.repo if files else "",
            n_indent=shape.block_indent if shape.multiline else 0,
        )
        identity = {
            "model": request.model,
            "prefix": head,
            "middle": middle,
            "suffix": suffix,
            "files": [(f.path, f.text) for f in files],
            "max_tokens": max_tokens,
            "temperature": request.temperature,
            "stop": stop,
            "multiline": shape.multiline,
            "path": request.path,
        }
        text = json.dumps(identity, sort_keys=True, ensure_ascii=False)
        key = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        return _Plan(fim, shape, key)

    async def _files(
        self,
        session: Session,
        request: CompletionRequest,
        language: Language,
        head: str,
        suffix: str,
    ) -> list[FimFile]:
        budget = chars_for(self.budget.context_tokens)
        if budget <= 0 or not request.context:
            return []
        given = [Snippet(f.path, f.text, kind="editor") for f in request.files]
        try:
            # Names near the anchor, not the cursor: the set (and the prompt's start)
            # then stays the same while the user types.
            defs = await asyncio.to_thread(
                self.related.definitions, request.path, head, suffix, budget
            )
        except Exception as exc:  # related snippets are a bonus: never fail on them
            log.debug("related definitions failed: %s", exc)
            defs = []
        recent = session.recent.others(request.path)
        # Most relevant last (nearest the cursor): recent files, editor files, definitions.
        chosen = {id(s) for s in fit([*defs, *given, *reversed(recent)], budget)}
        ordered = [s for s in [*recent, *given, *defs] if id(s) in chosen]
        return [FimFile(s.path, s.text, header(language, s.path)) for s in ordered]

    # --- generation --------------------------------------------------------------------

    def _start(self, session: Session, request: CompletionRequest, plan: _Plan) -> Flight:
        flight = Flight(plan.key, request.path, request.prefix, request.suffix)
        flight.task = asyncio.create_task(self._generate(flight, request, plan), name="mimi-fim")
        session.flight = flight
        return flight

    async def _generate(self, flight: Flight, request: CompletionRequest, plan: _Plan) -> None:
        info = StreamInfo()
        raw = ""
        shown = 0
        finish_reason = "stop"
        cut_at: int | None = None
        outcome = Outcome(multiline=plan.shape.multiline)
        try:
            stream = self.gateway.fim_stream(plan.fim, request.model, info)
            async with contextlib.aclosing(stream):  # type: ignore[type-var]
                async for delta in stream:
                    if delta.finish_reason:
                        finish_reason = delta.finish_reason
                    if not delta.text:
                        continue
                    flight.pieces.append(delta.text)
                    raw += delta.text
                    end = postprocess.cut(raw, plan.shape)
                    visible = raw if end is None else raw[:end]
                    if len(visible) > shown:
                        for listener in flight.listeners:
                            listener(visible[shown:])
                        shown = len(visible)
                    if end is not None:
                        cut_at = end
                        break  # closing the stream stops generation in the model
            complete = cut_at is not None or finish_reason != "length"
            outcome.text = postprocess.finish(raw, plan.shape, complete=complete)
            outcome.raw = raw
            outcome.finish_reason = "stop" if cut_at is not None else finish_reason
            outcome.cached = info.cached
            endpoint = info.attempt.endpoint
            if endpoint is not None:
                outcome.model, outcome.endpoint = endpoint.backend.model, endpoint.name
            if cut_at is not None and plan.fim.temperature == 0:
                self._store_cut(plan, request.model, raw[:cut_at])
        except asyncio.CancelledError:
            if not flight.future.done():
                flight.future.set_result(Outcome(cancelled=True, raw=raw))
            raise
        except Exception as exc:  # surfaced to the waiting requests, not lost in a task
            outcome.error = exc
        if not flight.future.done():
            flight.future.set_result(outcome)

    def _store_cut(self, plan: _Plan, model: str | None, raw: str) -> None:
        """Cache a stream we ended early, under the gateway's own key for its request."""
        try:
            key = self.gateway.fim_cache_key(plan.fim, model)
        except MimiError:
            return
        value = {"text": raw, "finish_reason": "stop", "tool_calls": None}
        self._in_background(self.gateway.cache.set("fim", key, value))

    # --- housekeeping ------------------------------------------------------------------

    def _in_background(self, work: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("completion bookkeeping failed: %s", task.exception())

    async def close(self) -> None:
        """Cancel running generations and finish bookkeeping."""
        await self.sessions.close()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if self.feedback is not None:
            await self.feedback.close()


def _failed(flight: Flight) -> bool:
    """Whether a finished flight cannot be reused (cancelled or failed)."""
    if flight.running:
        return False
    outcome = flight.future.result()
    return outcome.cancelled or outcome.error is not None


def _new_id() -> str:
    return "cmpl-" + uuid.uuid4().hex[:24]


def _ms(began: float) -> float:
    return (time.perf_counter() - began) * 1000

"""The agent loop: plan → tool calls → observations → answer, within budgets.

One ``AgentRuntime`` drives one run of a session (a user message until an answer, a
stop or a budget). It asks the model for one step at a time through the gateway (native
tool calls or schema-constrained JSON, see ``protocol``), runs the tools from the shared
registry, and emits every step as an event. Edits collect in a draft changeset; before a
command runs, and when the model finishes, the draft is proposed and the run waits for
the user's per-hunk decision (or applies it at once in an auto-approve session). After
an apply the project's tests run; failures go back to the model for up to
``agent_fix_rounds`` rounds, then the run stops as ``stuck`` and says why.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mimiverse.agent.context import ContextBuilder, estimate_tokens
from mimiverse.agent.openfiles import open_files
from mimiverse.agent.prompts import fill, prompt
from mimiverse.agent.protocol import FINISH, MalformedReply, Mode, Step, ToolCall, ToolProtocol
from mimiverse.errors import MimiError, ModelError

if TYPE_CHECKING:
    from mimiverse.agent.changes import Changeset
    from mimiverse.agent.session import AgentSession, Status
    from mimiverse.agent.store import AgentStore
    from mimiverse.agent.tools.base import Registry, ToolResult
    from mimiverse.gateway.service import Gateway
    from mimiverse.settings import Settings

log = logging.getLogger("mimiverse.agent")

NEEDS_APPLIED_TREE = frozenset({"run_command", "run_tests", "git_commit", "git_diff", "git_status"})
"""Tools that read the disk as commands see it: a pending draft is proposed first."""
EVENT_TEXT_LIMIT = 4000
MAX_MALFORMED = 3
MAX_REPEATS = 3
SAFETY_TOKENS = 256


@dataclass
class Outcome:
    """How a run ended."""

    status: Status
    answer: str
    steps: int
    usage: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class Probe:
    """One model step, parsed but not executed (for the tool-call benchmark)."""

    wellformed: bool
    reason: str = ""
    calls: list[ToolCall] = field(default_factory=list)
    text: str = ""
    seconds: float = 0.0


class Stop(Exception):
    """Ends a run with a status and a plain-words explanation."""

    def __init__(self, status: Status, answer: str) -> None:
        super().__init__(answer)
        self.status: Status = status
        self.answer = answer


class AgentRuntime:
    """Runs one session's turns against a gateway and a tool registry."""

    def __init__(
        self,
        session: AgentSession,
        *,
        gateway: Gateway,
        registry: Registry,
        settings: Settings,
        store: AgentStore | None = None,
        facts: str = "",
        on_applied: Callable[[str, Changeset], None] | None = None,
    ) -> None:
        self.session = session
        self.gateway = gateway
        self.registry = registry
        self.settings = settings
        self.store = store
        self.facts = facts
        self.on_applied = on_applied
        self.mode: Mode = self._mode()
        self.protocol = ToolProtocol(self.mode, registry)
        window = self._context_length()
        self.step_tokens = min(settings.agent_step_tokens, max(window // 4, 128))
        self.builder = ContextBuilder(window - self.step_tokens - SAFETY_TOKENS)
        self._wall = 0.0
        self._malformed = 0
        self._last_calls: list[tuple[str, str, bool]] = []
        self._seen: dict[str, int] = {}
        self._fix_round = 0
        self._untested = False  # a changeset was applied and no test run has seen it yet

    # --- set-up -------------------------------------------------------------------------

    def _endpoint_capabilities(self) -> Any:
        route = self.gateway.router.routes.get("chat") or []
        return route[0].backend.capabilities if route else None

    def _mode(self) -> Mode:
        wanted = self.settings.agent_tool_mode
        if wanted != "auto":
            return wanted
        caps = self._endpoint_capabilities()
        return "native" if caps is not None and caps.tools else "json"

    def _context_length(self) -> int:
        caps = self._endpoint_capabilities()
        return int(caps.context_length) if caps is not None and caps.context_length else 8192

    def system_prompt(self) -> str:
        """The system message: how to work, the tools, facts about the project."""
        text = fill(
            "system",
            root=self.session.root.name or str(self.session.root),
            tools=self.protocol.tool_guide(),
            facts=self.facts,
        )
        if self.mode == "json":
            text += "\n" + prompt("json_format")
        return text

    # --- the loop -----------------------------------------------------------------------

    async def run(self, message: str) -> Outcome:
        """Work on ``message`` until an answer, a stop, or a budget runs out."""
        session = self.session
        began = time.monotonic()
        session.log.reopen()
        first = not any(e.pinned for e in session.history.entries)
        session.history.add({"role": "user", "content": message}, pinned=True)
        opened = open_files(message, session.ctx.workspace, session.changes)
        if opened:
            session.history.add(
                {"role": "user", "content": opened},
                step=0,
                note="(files the task named were shown)",
            )
        self._set_status("running")
        session.log.emit(
            "session_started",
            message=message,
            mode=self.mode,
            max_steps=self.settings.agent_max_steps,
            max_tokens=self.settings.agent_max_tokens,
            auto_approve=session.auto_approve,
        )
        steps_before = session.usage.steps
        try:
            answer = await self._loop(first_step=first)
            status: Status = "done"
        except Stop as stop:
            status, answer = stop.status, stop.answer
            session.log.emit("error", message=answer, status=status)
        except asyncio.CancelledError:
            status, answer = "cancelled", "The run was cancelled; nothing more was done."
            session.log.emit("error", message=answer)
            self._finish(status, answer, began, steps_before)
            raise
        except ModelError as exc:
            status, answer = "failed", f"The model could not answer: {exc.message}"
            session.log.emit("error", message=answer)
        return self._finish(status, answer, began, steps_before)

    def _finish(self, status: Status, answer: str, began: float, steps_before: int) -> Outcome:
        session = self.session
        session.history.add(
            {"role": "assistant", "content": answer}, note=f"answer: {answer[:200]}"
        )
        self._set_status(status)
        session.log.emit("answer", text=answer, status=status)
        outcome = Outcome(
            status=status,
            answer=answer,
            steps=session.usage.steps - steps_before,
            usage=session.usage.as_dict(),
            seconds=round(time.monotonic() - began, 2),
        )
        session.log.emit(
            "session_finished",
            status=status,
            steps=outcome.steps,
            usage=outcome.usage,
            seconds=outcome.seconds,
        )
        session.save(self.store)
        return outcome

    async def _loop(self, *, first_step: bool) -> str:
        settings = self.settings
        step_no = 0
        while True:
            step_no += 1
            self._check_budgets(step_no)
            session = self.session
            session.usage.steps += 1
            session.log.emit(
                "step_started",
                step=step_no,
                max_steps=settings.agent_max_steps,
                progress=round((step_no - 1) / settings.agent_max_steps, 3),
            )
            t0 = time.monotonic()
            step = await self._ask(first_step=first_step and step_no == 1, step_no=step_no)
            if step is None:
                self._wall += time.monotonic() - t0
                continue
            if step.plan:
                session.log.emit("plan", steps=step.plan)
            if step.thought:
                session.log.emit("model_text", text=step.thought)
            answer: str | None = None
            for call in step.calls:
                if call.name == FINISH:
                    answer = str(call.arguments.get("answer", ""))
                    break
                await self._call(call, step_no)
            self._wall += time.monotonic() - t0
            session.log.emit(
                "step_finished",
                step=step_no,
                tokens=session.usage.total_tokens,
                elapsed_s=round(self._wall, 2),
            )
            session.save(self.store)
            if answer is not None:
                done = await self._on_finish(answer, step_no)
                if done is not None:
                    return done

    def _check_budgets(self, step_no: int) -> None:
        settings, usage = self.settings, self.session.usage
        if step_no > settings.agent_max_steps:
            raise Stop(
                "budget",
                f"Stopped after {settings.agent_max_steps} steps (agent_max_steps) without "
                "finishing. " + self._progress_note(),
            )
        if usage.total_tokens >= settings.agent_max_tokens:
            raise Stop(
                "budget",
                f"Stopped: {usage.total_tokens} tokens used, the budget is "
                f"{settings.agent_max_tokens} (agent_max_tokens). " + self._progress_note(),
            )
        if self._wall >= settings.agent_max_wall_s:
            raise Stop(
                "budget",
                f"Stopped after {self._wall:.0f} s of work (agent_max_wall_s = "
                f"{settings.agent_max_wall_s:.0f}). " + self._progress_note(),
            )

    def _progress_note(self) -> str:
        applied = [
            c.id
            for c in self.session.changes.list()
            if c.status in ("applied", "partially_applied")
        ]
        pending = self.session.changes.has_draft()
        parts = []
        if applied:
            parts.append(f"Applied changesets: {', '.join(applied)}.")
        if pending:
            parts.append("Unproposed edits remain in the draft.")
        return " ".join(parts) or "No changes were made."

    # --- one model step -----------------------------------------------------------------

    async def _ask(self, *, first_step: bool, step_no: int) -> Step | None:
        session = self.session
        window = self.builder.build(self.system_prompt(), session.history)
        if window.folded or window.cut:
            session.log.emit(
                "context_summarised",
                folded_steps=window.folded,
                cut_messages=window.cut,
                tokens=window.tokens,
            )
        request = self.protocol.request(
            window.messages, max_tokens=self.step_tokens, first_step=first_step
        )
        t0 = time.monotonic()
        completion = await self.gateway.chat(request)
        session.usage.model_ms += (time.monotonic() - t0) * 1000
        usage = completion.usage
        session.usage.prompt_tokens += usage.prompt_tokens or window.tokens
        session.usage.completion_tokens += usage.completion_tokens or estimate_tokens(
            completion.text
        )
        try:
            step = self.protocol.parse(completion.text, completion.tool_calls)
        except MalformedReply as exc:
            self._malformed += 1
            session.log.emit(
                "error",
                message=f"The model's reply was not a usable tool call: {exc.message}",
                raw=completion.text[:EVENT_TEXT_LIMIT],
            )
            session.history.add(
                {"role": "assistant", "content": completion.text}, step=step_no,
                note=f"step {step_no}: (unusable reply)",
            )  # fmt: skip
            session.history.add(
                {"role": "user", "content": fill("malformed", reason=exc.message)},
                step=step_no,
            )
            if self._malformed >= MAX_MALFORMED:
                raise Stop(
                    "failed",
                    f"The model gave {MAX_MALFORMED} unusable replies in a row ({exc.message}). "
                    "Try a larger model (routes.chat) or agent_tool_mode=json.",
                ) from None
            return None
        self._malformed = 0
        self._record_assistant(step, completion.tool_calls, step_no)
        return step

    def _record_assistant(self, step: Step, native: list[dict[str, Any]], step_no: int) -> None:
        calls = ", ".join(f"{c.name}({_brief(c.arguments)})" for c in step.calls)
        note = f"step {step_no}: {calls}"
        if self.mode == "native" and native:
            message: dict[str, Any] = {
                "role": "assistant",
                "content": step.thought or None,
                "tool_calls": [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.name, "arguments": json.dumps(c.arguments)},
                    }
                    for c in step.calls
                ],
            }
        else:
            body: dict[str, Any] = {"thought": step.thought}
            call = step.calls[0] if step.calls else ToolCall(FINISH, {"answer": step.answer or ""})
            body["action"] = {"tool": call.name, "args": call.arguments}
            message = {"role": "assistant", "content": json.dumps(body, ensure_ascii=False)}
            del step.calls[1:]  # json mode: one call per step
        self.session.history.add(message, step=step_no, note=note)

    def _observe(self, call: ToolCall, result: ToolResult, step_no: int) -> None:
        text = result.observation()
        if self.mode == "native":
            message = {"role": "tool", "tool_call_id": call.id, "content": text}
        else:
            verdict = "ok" if result.ok else "failed"
            message = {"role": "user", "content": f"Result of {call.name} ({verdict}):\n{text}"}
        first = text.strip().splitlines()[0][:160] if text.strip() else ""
        self.session.history.add(
            message, step=step_no, note=f"  → {'ok' if result.ok else 'error'}: {first}"
        )

    # --- tools --------------------------------------------------------------------------

    async def _call(self, call: ToolCall, step_no: int) -> ToolResult:
        session = self.session
        session.log.emit("tool_call", id=call.id, name=call.name, arguments=call.arguments)
        if call.name in NEEDS_APPLIED_TREE and session.changes.has_draft():
            note = await self._settle_draft()
            if note:
                from mimiverse.agent.tools.base import ToolResult

                result = ToolResult(text=note, ok=False)
                self._emit_observation(call, result)
                self._observe(call, result, step_no)
                return result
        seen_at = self._seen_before(call, step_no)
        result = await self.registry.call(call.name, call.arguments, session.ctx)
        if seen_at and result.ok:
            result.text = (
                f"(You made this same call in step {seen_at}; the result is the same. Use it: "
                "read another file, edit, run the tests, or finish.)\n" + result.text
            )
        self._emit_observation(call, result)
        self._observe(call, result, step_no)
        if call.name == "run_tests" and result.data:
            session.log.emit("test_result", **_test_summary(result))
            self._untested = False
        self._watch_repeats(call, result)
        return result

    def _emit_observation(self, call: ToolCall, result: ToolResult) -> None:
        text = result.text
        self.session.log.emit(
            "observation",
            id=call.id,
            name=call.name,
            ok=result.ok,
            text=text[:EVENT_TEXT_LIMIT],
            truncated=len(text) > EVENT_TEXT_LIMIT,
            changeset_id=result.changeset_id,
        )

    def _seen_before(self, call: ToolCall, step_no: int) -> int:
        """The step that already made this read-only call (0 if none): small models loop."""
        if call.name not in self.registry or self.registry.get(call.name).mutates:
            return 0
        key = f"{call.name}:{json.dumps(call.arguments, sort_keys=True)}"
        first = self._seen.setdefault(key, step_no)
        return first if first != step_no else 0

    def _watch_repeats(self, call: ToolCall, result: ToolResult) -> None:
        key = (call.name, json.dumps(call.arguments, sort_keys=True), result.ok)
        self._last_calls.append(key)
        recent = self._last_calls[-MAX_REPEATS:]
        if len(recent) == MAX_REPEATS and len(set(recent)) == 1 and not result.ok:
            raise Stop(
                "stuck",
                f"Stopped: the model called {call.name} with the same arguments "
                f"{MAX_REPEATS} times and it failed each time: {result.text[:300]}",
            )

    # --- changesets ---------------------------------------------------------------------

    async def _settle_draft(self) -> str:
        """Propose the draft, wait for the decision, apply. Returns a note when nothing applied."""
        changes = self.session.changes
        changeset = changes.propose()
        if changeset is None:
            return ""
        changeset = await self.await_decision(changeset)
        approved = [h for f in changeset.files for h in f.hunks if h.status == "approved"]
        if not approved:
            rejected = fill("rejected", hunks="", comment="")
            return rejected.strip()
        try:
            applied = changes.apply(changeset.id)
        except MimiError as exc:
            self.session.log.emit("error", message=f"Could not apply {changeset.id}: {exc.message}")
            return f"Your changes could not be applied: {exc.message}"
        self.session.log.emit(
            "changeset_applied",
            id=applied.id,
            status=applied.status,
            files=[f.path for f in applied.files],
            hunks=len(approved),
        )
        self._untested = True
        if self.on_applied is not None:
            self.on_applied(self.session.id, applied)
        return ""

    async def await_decision(self, changeset: Changeset) -> Changeset:
        """Emit the proposal and wait until every hunk is decided (at once when trusted)."""
        session, changes = self.session, self.session.changes
        session.log.emit(
            "proposed_diff",
            id=changeset.id,
            title=changeset.title,
            files=[f.path for f in changeset.files],
            hunks=[
                {"id": h.id, "path": h.path, "header": h.header, "lines": h.lines}
                for f in changeset.files
                for h in f.hunks
            ],
            diff=changeset.diff(),
        )
        if session.auto_approve:
            decided = changes.decide(changeset.id, all=True)
            session.log.emit(
                "changeset_decided", id=changeset.id, approved="all", by="auto-approve"
            )
            return decided
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        session.decisions[changeset.id] = future
        self._set_status("waiting_approval")
        try:
            await future
        finally:
            session.decisions.pop(changeset.id, None)
            self._set_status("running")
        return changes.get(changeset.id)

    async def _on_finish(self, answer: str, step_no: int) -> str | None:
        """The model says it is done: settle edits, test, and maybe send it back to work."""
        session = self.session
        if session.changes.has_draft():
            note = await self._settle_draft()
            if note:
                session.history.add(
                    {"role": "user", "content": note}, step=step_no, note="  → changes rejected"
                )
                return None if self._fix_round < self.settings.agent_fix_rounds else answer
        if not self._untested:
            return answer  # nothing applied since the last test run
        verdict = await self._test_after_apply(step_no)
        if verdict is None:
            return answer
        self._fix_round += 1
        if self._fix_round > self.settings.agent_fix_rounds:
            raise Stop(
                "stuck",
                f"Tests still fail after {self.settings.agent_fix_rounds} auto-fix rounds. "
                f"Last failures:\n{verdict[:1500]}\nThe applied changes stay; undo them from "
                "the changeset list if they are wrong.",
            )
        session.history.add(
            {
                "role": "user",
                "content": fill(
                    "fix_round",
                    round=self._fix_round,
                    rounds=self.settings.agent_fix_rounds,
                    failures=verdict,
                ),
            },
            pinned=False,
            step=step_no,
            note=f"  → tests failed after apply (fix round {self._fix_round})",
        )
        return None

    async def _test_after_apply(self, step_no: int) -> str | None:
        """Run the project's tests; the failure text, or None when they pass or cannot run."""
        if "run_tests" not in self.registry or self.settings.agent_fix_rounds == 0:
            return None
        call = ToolCall("run_tests", {})
        self.session.log.emit("tool_call", id=call.id, name=call.name, arguments={}, auto=True)
        result = await self.registry.call("run_tests", {}, self.session.ctx)
        self._untested = False
        self._emit_observation(call, result)
        if not result.data or "passed" not in result.data:
            return None  # no runner detected: nothing to check
        self.session.log.emit("test_result", **_test_summary(result))
        return None if result.data.get("passed") else result.observation(6000)

    # --- probing (benchmarks) -----------------------------------------------------------

    async def probe(self, message: str) -> Probe:
        """Ask for the first step of ``message`` and parse it, running nothing."""
        from mimiverse.agent.context import History

        history = History()
        history.add({"role": "user", "content": message}, pinned=True)
        window = self.builder.build(self.system_prompt(), history)
        request = self.protocol.request(
            window.messages, max_tokens=self.step_tokens, first_step=True
        )
        t0 = time.monotonic()
        completion = await self.gateway.chat(request)
        seconds = time.monotonic() - t0
        try:
            step = self.protocol.parse(completion.text, completion.tool_calls)
        except MalformedReply as exc:
            return Probe(False, exc.message, text=completion.text, seconds=seconds)
        if not step.calls:
            return Probe(False, "no tool call and no finish", text=completion.text, seconds=seconds)
        return Probe(True, calls=step.calls, text=completion.text, seconds=seconds)

    def _set_status(self, status: Status) -> None:
        self.session.status = status


def _brief(arguments: dict[str, Any], limit: int = 120) -> str:
    text = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in arguments.items())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _test_summary(result: ToolResult) -> dict[str, Any]:
    data = result.data
    return {
        "command": data.get("command", ""),
        "passed": bool(data.get("passed")),
        "exit_code": data.get("exit_code"),
        "counts": data.get("counts", {}),
        "failures": data.get("failures", [])[:20],
        "killed": data.get("killed"),
    }

"""``WS /api/terminal/ws``: a shell on a pseudo-terminal, in the sandbox, over a WebSocket.

Query: ``project`` (a reference; none: the caller's default, resolved like every other
route, so another user's project is "not found"), ``cols`` and ``rows`` (1..1000; 80x24).

Frames are JSON text. Client → server::

    {"type": "input", "data": "ls\\r"}          keystrokes (at most MAX_INPUT_CHARS)
    {"type": "resize", "cols": 120, "rows": 30}

Server → client::

    {"type": "output", "data": "..."}          UTF-8, decoded incrementally
    {"type": "error", "error": {"message", "type", "code"}}   the message names the fix
    {"type": "exit", "code": 0}                then the socket closes (1000)

A bad frame gets an error frame and is otherwise ignored; so does input beyond
INPUT_QUEUE_FRAMES frames that the shell has not read yet (429). A terminal that cannot start
(unknown project, too many terminals, no bubblewrap) gets an error frame and the close
code ``4000 + status`` (4404, 4429, 4500) with the message (cut short) as the reason. Closing the socket kills the shell and
everything it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from mimiverse.errors import BadRequest, MimiError, RateLimited
from mimiverse.server.auth import principal_of
from mimiverse.server.routes.projects import resolve_project
from mimiverse.workspace.pty import MAX_SIZE, PtySession, Terminals, check_size

router = APIRouter(prefix="/api/terminal", tags=["terminal"])
MAX_INPUT_CHARS = 65_536
"""Characters one input frame may carry (a large paste is sent in several)."""
MAX_FRAME_CHARS = MAX_INPUT_CHARS + 1_024
CLOSE_REASON_BYTES = 123
INPUT_QUEUE_FRAMES = 16
"""Input frames waiting for the shell to read them; more are refused (429), not queued."""


def terminals_of(websocket: WebSocket) -> Terminals:
    """The app's open-terminal counts, made on first use."""
    state = websocket.app.state
    terminals: Terminals | None = getattr(state, "terminals", None)
    if terminals is None:
        terminals = state.terminals = Terminals(state.settings.terminal_max_sessions)
    return terminals


@router.websocket("/ws")
async def terminal_ws(websocket: WebSocket) -> None:
    """A shell in the project; see the module docstring for the frames."""
    await websocket.accept()
    try:
        project, cols, rows = _handshake(websocket)
        with terminals_of(websocket).slot(principal_of(websocket).user_id):
            settings = websocket.app.state.settings
            session = await PtySession.start(settings, project, cols, rows)
            try:
                await _serve(websocket, session)
            finally:
                await session.close()
    except MimiError as exc:
        await _refuse(websocket, exc)
    except WebSocketDisconnect:
        return


def _handshake(websocket: WebSocket) -> tuple[Any, int, int]:
    """The project root and the initial size, from the query string."""
    query = websocket.query_params
    cols = _whole(query.get("cols", "80"), "cols")
    rows = _whole(query.get("rows", "24"), "rows")
    check_size(cols, rows)
    ref = query.get("project")
    if ref is not None and len(ref) > 200:
        raise BadRequest("project must be a reference of at most 200 characters")
    return resolve_project(websocket, ref).root, cols, rows


def _whole(text: str, name: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 4:
        raise BadRequest(f"{name} must be a whole number from 1 to {MAX_SIZE}, not {text!r}")
    return int(text)


async def _serve(websocket: WebSocket, session: PtySession) -> None:
    """Pump output to the client and frames to the shell until either side ends.

    Input waits in a bounded queue for the shell to read it, so a shell that stops
    reading neither blocks the socket (a disconnect is still seen) nor grows memory.
    """
    inputs: asyncio.Queue[bytes] = asyncio.Queue(INPUT_QUEUE_FRAMES)
    tasks = {
        asyncio.create_task(_pump_output(websocket, session)),
        asyncio.create_task(_pump_frames(websocket, session, inputs)),
        asyncio.create_task(_pump_input(session, inputs)),
    }
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        exc = None if task.cancelled() else task.exception()
        if exc is not None and not isinstance(exc, WebSocketDisconnect | OSError | RuntimeError):
            raise exc  # a bug: let the server log it (the socket is done either way)


async def _pump_output(websocket: WebSocket, session: PtySession) -> None:
    async for chunk in session:
        await websocket.send_json({"type": "output", "data": chunk})
    code = await session.wait()
    if session.reason:
        await websocket.send_json({"type": "output", "data": f"\r\n[{session.reason}]\r\n"})
    await websocket.send_json({"type": "exit", "code": code})
    await websocket.close(code=1000)


async def _pump_frames(
    websocket: WebSocket, session: PtySession, inputs: asyncio.Queue[bytes]
) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        try:
            _apply(session, inputs, message)
        except (BadRequest, RateLimited) as exc:
            await websocket.send_json({"type": "error", **exc.to_dict()})


async def _pump_input(session: PtySession, inputs: asyncio.Queue[bytes]) -> None:
    while True:
        await session.write(await inputs.get())


def _apply(session: PtySession, inputs: asyncio.Queue[bytes], message: Mapping[str, Any]) -> None:
    """Carry out one client frame; BadRequest says what is wrong with it."""
    text = message.get("text")
    if text is None:
        raise BadRequest('send JSON text frames: {"type": "input", "data": "..."}')
    if len(text) > MAX_FRAME_CHARS:
        raise BadRequest(f"frame too large: send input in pieces of at most {MAX_INPUT_CHARS}")
    try:
        frame = json.loads(text)
    except ValueError:
        raise BadRequest("a frame must be a JSON object") from None
    kind = frame.get("type") if isinstance(frame, dict) else None
    if kind == "input":
        data = frame.get("data")
        if not isinstance(data, str) or set(frame) != {"type", "data"}:
            raise BadRequest('an input frame is {"type": "input", "data": "<text>"}')
        if len(data) > MAX_INPUT_CHARS:
            raise BadRequest(f"input too large: send at most {MAX_INPUT_CHARS} characters a frame")
        try:
            inputs.put_nowait(data.encode("utf-8", errors="replace"))
        except asyncio.QueueFull:
            raise RateLimited(
                "the shell is not reading its input: this input was dropped (wait for the "
                "running command, or press Ctrl-C)",
                retry_after=1,
            ) from None
    elif kind == "resize":
        if set(frame) != {"type", "cols", "rows"}:
            raise BadRequest('a resize frame is {"type": "resize", "cols": <n>, "rows": <n>}')
        session.resize(frame["cols"], frame["rows"])
    else:
        raise BadRequest(f"unknown frame type {kind!r}: send 'input' or 'resize'")


async def _refuse(websocket: WebSocket, exc: MimiError) -> None:
    """An error frame, then the close code 4000 + status."""
    if websocket.application_state != WebSocketState.CONNECTED:
        return
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
        await websocket.send_json({"type": "error", **exc.to_dict()})
        await websocket.close(code=4000 + exc.status, reason=close_reason(exc.message))


def close_reason(message: str) -> str:
    """``message`` cut to the 123 bytes of UTF-8 a close frame's reason may hold."""
    raw = message.encode()
    if len(raw) <= CLOSE_REASON_BYTES:
        return message
    return raw[: CLOSE_REASON_BYTES - 3].decode(errors="ignore") + "..."

"""One exception tree for Mimiverse.

Every error that can reach HTTP carries a status code and a message that names the fix.
::

    MimiError (500)
    ├── ConfigError (500)              a setting is wrong; names the setting
    ├── WeightsError (500)             an embedded model file is missing or corrupt
    ├── BadRequest (400)               the caller sent something we cannot use
    │   ├── InvalidJSON (400)
    │   ├── EmptyInput (422)
    │   ├── ContextLengthExceeded (400)
    │   ├── UnknownModel (404)         lists the known models
    │   ├── NotFound (404)             a session, changeset or file that does not exist
    │   ├── Conflict (409)             the thing changed since it was read (stale changeset)
    │   ├── Unauthorized (401)         no usable credentials; says how to authenticate
    │   ├── Forbidden (403)            credentials that may not do this (scope, role, CSRF)
    │   ├── RateLimited (429)          too many requests or quota spent; carries retry_after
    │   └── ToolError (400)            a tool call the model can fix: bad args, no match, …
    │       ├── PathOutsideWorkspace (400)  a path escapes the project (.., symlink, absolute)
    │       └── EditMismatch (400)     an edit's search block is not in the file
    ├── SandboxError (500)             commands cannot run safely; names the install or setting
    ├── CacheError (500)               a cache store failed (never reaches a caller: we degrade)
    └── ModelError (502)               the model side failed
        ├── NoModelForTask (503)       nothing is configured for a task
        ├── BackendUnavailable (503)   every endpoint for a task is down or failed
        ├── UpstreamError (502)        one endpoint answered with an error
        └── StreamInterrupted (502)    an endpoint died after tokens were sent
"""

from __future__ import annotations

from typing import Any


class MimiError(Exception):
    """Base of every Mimiverse error."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """The JSON body an HTTP client receives (OpenAI-style ``error`` object)."""
        body: dict[str, Any] = {"message": self.message, "type": self.code, "code": self.status}
        body.update(self.details)
        return {"error": body}


class ConfigError(MimiError):
    """A setting is missing or invalid."""

    code = "config_error"


class WeightsError(MimiError):
    """An embedded model's weights are missing, incomplete or corrupt."""

    code = "weights_error"


class BadRequest(MimiError):
    """The request cannot be served as sent."""

    status = 400
    code = "invalid_request_error"


class Unauthorized(BadRequest):
    """No usable credentials: the message says how to authenticate."""

    status = 401
    code = "unauthorized"


class Forbidden(BadRequest):
    """The caller is known but may not do this."""

    status = 403
    code = "forbidden"


class RateLimited(BadRequest):
    """Too many requests, or the month's quota is spent; retry after ``retry_after`` s."""

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, **details: object) -> None:
        super().__init__(message, retry_after=retry_after, **details)
        self.retry_after = max(1, int(retry_after))


class InvalidJSON(BadRequest):
    """The body is not valid JSON or does not match the schema."""

    code = "invalid_json"


class EmptyInput(BadRequest):
    """The request has nothing to work on."""

    status = 422
    code = "empty_input"


class ContextLengthExceeded(BadRequest):
    """The prompt does not fit the model's context window."""

    code = "context_length_exceeded"


class UnknownModel(BadRequest):
    """The requested model is not served here."""

    status = 404
    code = "model_not_found"


class NotFound(BadRequest):
    """A named session, changeset, file or tool does not exist."""

    status = 404
    code = "not_found"


class Conflict(BadRequest):
    """The target changed since it was read; nothing was written."""

    status = 409
    code = "conflict"


class ToolError(BadRequest):
    """A tool call failed in a way the model (or user) can fix; its message says how.

    The agent turns these into observations instead of failing the session.
    """

    code = "tool_error"


class PathOutsideWorkspace(ToolError):
    """A path resolves outside the project root (``..``, absolute, or a symlink out)."""

    code = "path_outside_workspace"


class EditMismatch(ToolError):
    """An edit's search text is not in the file (or is there more than once)."""

    code = "edit_mismatch"


class SandboxError(MimiError):
    """Commands cannot be run safely here; the message names the install or setting."""

    code = "sandbox_unavailable"


class CacheError(MimiError):
    """A cache store failed; callers degrade instead of failing the request."""

    code = "cache_error"


class ModelError(MimiError):
    """The model side failed."""

    status = 502
    code = "model_error"


class NoModelForTask(ModelError):
    """No endpoint is configured for a task."""

    status = 503
    code = "no_model_for_task"


class BackendUnavailable(ModelError):
    """Every endpoint for a task is unhealthy or failed."""

    status = 503
    code = "backend_unavailable"


class UpstreamError(ModelError):
    """One endpoint answered with an error or could not be reached."""

    code = "upstream_error"

    def __init__(self, message: str, *, retryable: bool = True, **details: Any) -> None:
        super().__init__(message, **details)
        self.retryable = retryable


class StreamInterrupted(ModelError):
    """An endpoint failed after tokens had been streamed; the output is incomplete."""

    code = "stream_interrupted"

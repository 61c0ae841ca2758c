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
    │   └── UnknownModel (404)         lists the known models
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

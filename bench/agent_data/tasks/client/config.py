"""Options of the HTTP client."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass
class ClientConfig:
    """Connection options. Defaults: localhost:8080, 30 s timeout, 3 retries."""

    host: str = "localhost"
    port: int = 8080
    timeout_s: float = 30.0
    retries: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClientConfig:
        """Options from a dict; unknown keys are ignored, missing ones take the defaults."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def base_url(self) -> str:
        """``http://host:port``."""
        return f"http://{self.host}:{self.port}"

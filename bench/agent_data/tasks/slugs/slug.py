"""URL slugs for page titles."""

from __future__ import annotations

import re
import unicodedata


def slugify(title: str) -> str:
    """A URL slug: lowercase ASCII words joined by single hyphens, no hyphen at either end."""
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_title.lower())
    return slug


def unique_slug(title: str, taken: set[str]) -> str:
    """``slugify(title)``, with -2, -3 … appended until it is not in ``taken``."""
    base = slugify(title)
    slug, n = base, 2
    while slug in taken:
        slug, n = f"{base}-{n}", n + 1
    return slug

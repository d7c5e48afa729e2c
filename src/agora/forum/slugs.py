"""Slugs: URL-safe, lower-case ASCII names of posts, derived from their titles."""

from __future__ import annotations

import re
import unicodedata

from agora.models.forum import SLUG_MAX

# Room is left for a "-<n>" suffix within the column's SLUG_MAX characters.
SLUG_BASE_MAX = SLUG_MAX - 12
SLUG_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
FALLBACK = "post"  # titles with no Latin letter or digit (e.g. only emoji or CJK)


def slugify(title: str) -> str:
    """`"Héllo, World!"` -> `"hello-world"`: accents dropped, words joined with hyphens."""
    ascii_text = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    words = re.findall(r"[a-z0-9]+", ascii_text.lower())
    slug = "-".join(words)[:SLUG_BASE_MAX].strip("-")
    return slug or FALLBACK


def with_suffix(base: str, n: int) -> str:
    """The n-th slug for `base`: `base` itself, then `base-2`, `base-3`, ..."""
    return base if n <= 1 else f"{base}-{n}"


def suffix_of(slug: str, base: str) -> int | None:
    """1 for `base`, n for `base-<n>`, None for anything else."""
    if slug == base:
        return 1
    rest = slug[len(base) + 1 :] if slug.startswith(base + "-") else ""
    return int(rest) if rest.isascii() and rest.isdigit() and len(rest) < 10 else None

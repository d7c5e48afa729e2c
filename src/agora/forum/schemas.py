"""Forum's request and response bodies.

Inputs forbid unknown fields (no `author_id`, `slug` on creation, `version`, ...), reject NUL
characters and bound every string. Tags are given by name, normalized to lower case.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    StringConstraints,
    field_validator,
)

from agora.forum.slugs import SLUG_PATTERN
from agora.models.forum import CONTENT_MAX, SLUG_MAX, TAG_MAX, TITLE_MAX
from agora.schemas import Input, NoNul, Output, PartialUpdate

MAX_ID = 2**31 - 1  # integer primary keys
MAX_TAGS = 10
SEARCH_MAX = 200
TAG_PATTERN = r"^[a-z0-9_+#.-]+$"


def _normalize_tag(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


Title = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=TITLE_MAX), NoNul
]
Content = Annotated[str, StringConstraints(max_length=CONTENT_MAX), NoNul]
TagName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=TAG_MAX, pattern=TAG_PATTERN),
    BeforeValidator(_normalize_tag),  # runs first: " Python " is "python"
]
Tags = Annotated[list[TagName], Field(max_length=MAX_TAGS), AfterValidator(_unique)]
Slug = Annotated[str, StringConstraints(min_length=1, max_length=SLUG_MAX, pattern=SLUG_PATTERN)]


class PostCreate(Input):
    title: Title
    content: Content = ""
    is_published: bool = True
    tags: Tags = []


class PostUpdate(PartialUpdate):
    """Every field optional; only those sent change. The slug changes only when sent."""

    title: Title | None = None
    content: Content | None = None
    is_published: bool | None = None
    tags: Tags | None = None
    slug: Slug | None = None


class PostOrder(StrEnum):
    """Listing orders; newest first by default. Unpublished posts (no `published_at`) come
    first in `-published_at` and last in `published_at`."""

    published_at_desc = "-published_at"
    published_at = "published_at"
    created_at_desc = "-created_at"
    created_at = "created_at"


class AuthorRead(Output):
    id: int
    username: str
    full_name: str


class PostRead(Output):
    id: int
    title: str
    slug: str
    content: str
    is_published: bool
    published_at: datetime | None
    author_id: int
    author: AuthorRead | None = Field(description="null when the author's account is deleted")
    tags: list[str]
    version: int
    created_at: datetime
    updated_at: datetime

    @field_validator("tags", mode="before")
    @classmethod
    def _tag_names(cls, value: Any) -> Any:
        return [getattr(tag, "name", tag) for tag in value]


class TagRead(BaseModel):
    name: str
    post_count: int = Field(description="Published, undeleted posts carrying the tag")

"""Forum's domain errors. Each renders as `{"error": "<ClassName>", "detail": ...}`."""

from __future__ import annotations

from agora.db.errors import (
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    PreconditionFailed,
    on_constraint,
)


class PostNotFound(NotFound):
    """Absent, deleted, or unpublished and not the viewer's (drafts are not revealed)."""

    default_detail = "No such post"


class NotPostAuthor(Forbidden):
    default_detail = "Only the author of a post or a superuser may change it"


class SlugTaken(Conflict):
    default_detail = "Another post already has this slug"


class VersionMismatch(PreconditionFailed):
    default_detail = "If-Match does not name the current version of the post; reload it"


class SearchIsOffsetPaged(Invalid):
    default_detail = "Search results (q) are ordered by relevance and paged with offset, not cursor"


class OffsetAndCursor(Invalid):
    default_detail = "Give either offset or cursor, not both"


# Two posts racing for one slug: the unique constraint decides, and the loser sees SlugTaken
# (agora.forum.service retries the generated ones with the next suffix).
on_constraint("uq_post_slug", SlugTaken)

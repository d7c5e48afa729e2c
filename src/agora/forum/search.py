"""Full-text search of posts: one behaviour, two implementations (see migration 0003).

The query text is parsed once by `agora.db.websearch` (quoted phrases, `-excluded`, `or`),
then:

* PostgreSQL: `post.search_vector @@ websearch_to_tsquery('simple', <canonical text>)`,
  ranked by `ts_rank` (title weight A = 1.0 beats content weight B = 0.4), with the GIN
  index `ix_post_search_vector`;
* SQLite: `post_fts MATCH <FTS5 expression, every term quoted>`, joined on the rowid and
  ranked by `bm25(post_fts, 10, 1)` (a title match weighs ten times a content match; bm25
  is "lower is better").

Configuration 'simple' (lower-casing, no stemming, no stop words) is used on PostgreSQL
because it is what FTS5's unicode61 tokenizer does: "running" does not find "run" on either
database, and "the" is a word like any other. Ties in relevance fall back to the newest id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, literal_column, table
from sqlalchemy.dialects.postgresql import TSVECTOR
from sqlalchemy.sql.elements import ColumnElement

from agora.db.websearch import SearchQuery, to_fts5, to_websearch
from agora.models.forum import FTS_TABLE, SEARCH_VECTOR, Post

CONFIG = "simple"
TITLE_WEIGHT, CONTENT_WEIGHT = 10.0, 1.0  # bm25 column weights on SQLite

_fts = table(FTS_TABLE, literal_column("rowid"))


@dataclass(frozen=True, slots=True)
class Ranked:
    """A search applied to a statement, and the ORDER BY that ranks its rows, best first."""

    stmt: Select[Any]
    order_by: tuple[ColumnElement[Any], ...]


def apply_search(stmt: Select[Any], query: SearchQuery, *, dialect: str) -> Ranked:
    """`stmt` (a select of `Post`) restricted to posts matching `query`, with its ranking."""
    if dialect == "postgresql":
        return _postgresql(stmt, query)
    if dialect == "sqlite":
        return _sqlite(stmt, query)
    raise NotImplementedError(f"no full-text search for the {dialect!r} dialect")


def _postgresql(stmt: Select[Any], query: SearchQuery) -> Ranked:
    vector = literal_column(f"{Post.__tablename__}.{SEARCH_VECTOR}", TSVECTOR)
    tsquery = func.websearch_to_tsquery(
        literal_column(f"'{CONFIG}'::regconfig"), to_websearch(query)
    )
    rank = func.ts_rank(vector, tsquery)
    return Ranked(stmt.where(vector.bool_op("@@")(tsquery)), (rank.desc(), Post.id.desc()))


def _sqlite(stmt: Select[Any], query: SearchQuery) -> Ranked:
    # The MATCH operand and bm25's first argument must be the FTS table itself (its hidden
    # column of the same name), hence the literal table name.
    fts: ColumnElement[Any] = literal_column(FTS_TABLE)
    matched = stmt.join(_fts, _fts.c.rowid == Post.id).where(fts.op("MATCH")(to_fts5(query)))
    rank = func.bm25(fts, literal_column(str(TITLE_WEIGHT)), literal_column(str(CONTENT_WEIGHT)))
    return Ranked(matched, (rank.asc(), Post.id.desc()))

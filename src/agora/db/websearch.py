"""Web-search query syntax, parsed once and rendered for PostgreSQL and for SQLite FTS5.

The syntax is PostgreSQL's `websearch_to_tsquery`'s: words are ANDed, `"quoted words"` are a
phrase, `-word` / `-"a phrase"` excludes, and a standalone `or` separates alternatives (AND
binds tighter than OR). Anything else is ignored, so no input is ever a syntax error.

Parsing in Python (instead of handing the raw text to each database) gives one behaviour on
both:

* `to_websearch(query)` re-renders the parsed query in a canonical websearch form (every term
  quoted), for `websearch_to_tsquery` on PostgreSQL;
* `to_fts5(query)` renders it as an FTS5 MATCH expression in which every term is a quoted
  string, so user input can never be FTS5 syntax (https://www.sqlite.org/fts5.html#full_text_query_syntax).

A term is split into words of letters and digits (as FTS5's `unicode61` tokenizer does;
PostgreSQL's parser mostly agrees): `foo-bar` and `"foo bar"` are both the phrase foo, bar.
An alternative made only of exclusions matches nothing on either database (FTS5 has no
unary NOT; PostgreSQL would match almost every row), so it is dropped; a query with no
positive word left is `None`: the caller returns no rows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = re.compile(r'(-?)"([^"]*)"?|(\S+)')
_WORD = re.compile(r"[^\W_]+")
MAX_TERMS = 32  # bound the work one request can ask of the full-text index


@dataclass(frozen=True, slots=True)
class Term:
    words: tuple[str, ...]  # lower-case; more than one: a phrase
    excluded: bool = False


Alternative = tuple[Term, ...]  # ANDed terms, at least one not excluded


@dataclass(frozen=True, slots=True)
class SearchQuery:
    alternatives: tuple[Alternative, ...]  # ORed


def _words(text: str) -> tuple[str, ...]:
    return tuple(word.lower() for word in _WORD.findall(text))


def parse(text: str, *, max_terms: int = MAX_TERMS) -> SearchQuery | None:
    """The query in `text`, or None when it holds no word to look for."""
    alternatives: list[Alternative] = []
    current: list[Term] = []
    count = 0
    for match in _TOKEN.finditer(text):
        negated, quoted, bare = match.group(1), match.group(2), match.group(3)
        if bare is not None and bare.lower() == "or":
            alternatives.append(tuple(current))
            current = []
            continue
        if bare is not None:
            excluded = bare.startswith("-")
            words = _words(bare.lstrip("-"))
        else:
            excluded, words = bool(negated), _words(quoted)
        if words and count < max_terms:
            current.append(Term(words, excluded))
            count += 1
    alternatives.append(tuple(current))
    kept = tuple(alt for alt in alternatives if any(not t.excluded for t in alt))
    return SearchQuery(kept) if kept else None


def _quoted(term: Term) -> str:
    # Words hold letters and digits only: no quote can appear inside.
    return '"' + " ".join(term.words) + '"'


def to_websearch(query: SearchQuery) -> str:
    """Canonical `websearch_to_tsquery` text: `"a" -"b c" or "d"`."""
    return " or ".join(
        " ".join(("-" if t.excluded else "") + _quoted(t) for t in alt)
        for alt in query.alternatives
    )


def to_fts5(query: SearchQuery) -> str:
    """An FTS5 MATCH expression: `("a" AND "b c") NOT "d" OR ("e")`."""
    rendered = []
    for alt in query.alternatives:
        wanted = " AND ".join(_quoted(t) for t in alt if not t.excluded)
        unwanted = "".join(f" NOT {_quoted(t)}" for t in alt if t.excluded)
        rendered.append(f"(({wanted}){unwanted})")
    return " OR ".join(rendered)

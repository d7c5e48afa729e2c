"""Pagination as part of the repository: soft-deleted rows never show, cursors walk all."""

from __future__ import annotations

from sqlalchemy.orm import selectinload

from agora.db.pagination import PaginationConfig
from agora.db.repository import Repository
from agora.db.uow import UnitOfWork
from tests.db.models import Article, Author

CONFIG = PaginationConfig(secret="test-secret")


class ArticleRepository(Repository[Article]):
    model = Article


async def _articles(uow: UnitOfWork) -> list[Article]:
    author = Author(name="Pat", email="pat@example.com")
    uow.session.add(author)
    await uow.flush()
    repo = uow.repo(ArticleRepository)
    rows = await repo.add_many(
        [{"title": f"t{i:02}", "score": i % 3, "author_id": author.id} for i in range(12)]
    )
    await repo.delete(rows[4])  # soft
    await uow.flush()
    return rows


async def test_offset_page_hides_deleted_rows_from_items_and_total(tk_uow: UnitOfWork) -> None:
    rows = await _articles(tk_uow)
    page = await tk_uow.repo(ArticleRepository).page(
        CONFIG.page_params(limit=5, offset=0),
        order_by=(Article.id,),
        load=(selectinload(Article.author),),
    )
    assert page.total == 11
    assert page.has_more
    assert [a.id for a in page.items] == [r.id for r in rows[:6] if r is not rows[4]][:5]
    assert {a.author.name for a in page.items} == {"Pat"}  # loaded, no lazy load


async def test_cursor_pages_walk_every_live_row_once(tk_uow: UnitOfWork) -> None:
    rows = await _articles(tk_uow)
    repo = tk_uow.repo(ArticleRepository)
    order = (Article.score.desc(), Article.title)
    seen: list[int] = []
    token: str | None = None
    while True:
        page = await repo.cursor_page(CONFIG.cursor_params(limit=4, cursor=token), order_by=order)
        seen += [a.id for a in page.items]
        if page.next_cursor is None:
            break
        token = page.next_cursor
    live = [r for r in rows if r is not rows[4]]
    expected = [r.id for r in sorted(live, key=lambda r: (-r.score, r.title))]
    assert seen == expected

"""Data builders for the market tests: plain async functions."""

from __future__ import annotations

import itertools

from sqlalchemy import func, select

from agora.db.uow import UnitOfWork
from agora.models.market import CreditTransfer, Product
from agora.models.user import User

_seq = itertools.count(1)


async def make_product(
    uow: UnitOfWork,
    *,
    seller: User | int,
    name: str | None = None,
    price: int = 1000,
    stock: int = 10,
    category: str = "tools",
    is_active: bool = True,
    description: str = "",
) -> Product:
    product = Product(
        seller_id=seller if isinstance(seller, int) else seller.id,
        name=name or f"product {next(_seq)}",
        price=price,
        stock=stock,
        category=category,
        is_active=is_active,
        description=description,
    )
    uow.session.add(product)
    await uow.commit()
    return product


async def balance(uow: UnitOfWork, user: User | int) -> int:
    user_id = user if isinstance(user, int) else user.id
    result = await uow.session.execute(select(User.credits).where(User.id == user_id))
    return int(result.scalar_one())


async def stock(uow: UnitOfWork, product: Product | int) -> int:
    product_id = product if isinstance(product, int) else product.id
    stmt = select(Product.stock).where(Product.id == product_id)
    result = await uow.session.execute(stmt.execution_options(include_deleted=True))
    return int(result.scalar_one())


async def ledger_count(uow: UnitOfWork) -> int:
    result = await uow.session.execute(select(func.count(CreditTransfer.id)))
    return int(result.scalar_one())

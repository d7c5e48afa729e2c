"""Every ORM model of Agora, imported here so `Base.metadata` is complete for Alembic."""

from agora.db.base import Base
from agora.db.errors import register_metadata
from agora.models.forum import Post, Tag, post_tag
from agora.models.market import (
    CreditTransfer,
    IdempotencyKey,
    Order,
    OrderItem,
    OrderStatus,
    Product,
    TransferKind,
)
from agora.models.user import User, UserProfile, UserStatus

# SQLite reports a unique violation by column; this lets agora.db.errors find its name.
register_metadata(Base.metadata)

__all__ = [
    "Base",
    "CreditTransfer",
    "IdempotencyKey",
    "Order",
    "OrderItem",
    "OrderStatus",
    "Post",
    "Product",
    "Tag",
    "TransferKind",
    "User",
    "UserProfile",
    "UserStatus",
    "post_tag",
]

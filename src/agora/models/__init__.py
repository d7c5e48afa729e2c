"""Every ORM model of Agora, imported here so `Base.metadata` is complete for Alembic."""

from agora.db.base import Base

__all__ = ["Base"]

"""Members: `User` and its one `UserProfile`."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Enum,
    ForeignKey,
    Integer,
    String,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from agora.db.base import Base, IdMixin, SoftDeleteMixin, TimestampMixin, relationship

USERNAME_MIN, USERNAME_MAX = 3, 30
EMAIL_MAX = 254  # RFC 5321 path limit
FULL_NAME_MAX = 100
BIO_MAX, AVATAR_URL_MAX, LOCATION_MAX = 2000, 500, 100


class UserStatus(StrEnum):
    active = "active"
    inactive = "inactive"
    suspended = "suspended"


_STATUS_VALUES = ", ".join(f"'{s.value}'" for s in UserStatus)


class User(IdMixin, TimestampMixin, SoftDeleteMixin, Base):
    __tablename__ = "user"

    email: Mapped[str] = mapped_column(String(EMAIL_MAX), unique=True)  # stored lower-case
    username: Mapped[str] = mapped_column(String(USERNAME_MAX), unique=True)
    full_name: Mapped[str] = mapped_column(String(FULL_NAME_MAX), default="", server_default="")
    hashed_password: Mapped[str] = mapped_column(String(255))
    # A VARCHAR plus a named CHECK (below) rather than a native enum: the same on SQLite and
    # PostgreSQL, and a new status is a one-line migration instead of an ALTER TYPE.
    status: Mapped[UserStatus] = mapped_column(
        Enum(
            UserStatus,
            native_enum=False,
            create_constraint=False,
            length=20,
            values_callable=lambda e: [m.value for m in e],
        ),
        default=UserStatus.active,
        server_default=UserStatus.active.value,
    )
    is_superuser: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Money is integer cents (see agora.money); never negative.
    credits: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # Carried by every access token (claim `ver`) and compared on every authenticated
    # request; a password change bumps it, so the tokens issued before stop working.
    token_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    profile: Mapped[UserProfile | None] = relationship(
        back_populates="user", uselist=False, cascade="all, delete-orphan"
    )

    __table_args__ = (
        CheckConstraint(f"status IN ({_STATUS_VALUES})", name="status_valid"),
        CheckConstraint("credits >= 0", name="credits_nonnegative"),
        CheckConstraint(
            f"length(username) BETWEEN {USERNAME_MIN} AND {USERNAME_MAX}", name="username_length"
        ),
    )

    @property
    def is_active(self) -> bool:
        return self.status is UserStatus.active and self.deleted_at is None


class UserProfile(IdMixin, TimestampMixin, Base):
    __tablename__ = "user_profile"

    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), unique=True)
    bio: Mapped[str | None] = mapped_column(String(BIO_MAX), default=None)
    avatar_url: Mapped[str | None] = mapped_column(String(AVATAR_URL_MAX), default=None)
    location: Mapped[str | None] = mapped_column(String(LOCATION_MAX), default=None)

    user: Mapped[User] = relationship(back_populates="profile")

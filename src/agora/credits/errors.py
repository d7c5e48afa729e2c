"""Credits' domain errors."""

from __future__ import annotations

from agora.db.errors import Conflict, Forbidden, Invalid, NotFound, on_constraint


class InsufficientCredits(Conflict):
    default_detail = "Not enough credits"


class BalanceTooLarge(Conflict):
    default_detail = "The balance would exceed the largest amount an account may hold"


class TransferToSelf(Invalid):
    default_detail = "Credits cannot be sent to oneself"


class RecipientNotFound(NotFound):
    default_detail = "No such recipient"


class BalanceOwnerNotFound(NotFound):
    default_detail = "No such user"


class GrantNotAllowed(Forbidden):
    default_detail = "Only a superuser may grant credits"


# The CHECK constraint is the backstop behind the guarded UPDATEs: never a 500, never < 0.
on_constraint("ck_user_credits_nonnegative", InsufficientCredits)
on_constraint("ck_credit_transfer_not_to_oneself", TransferToSelf)

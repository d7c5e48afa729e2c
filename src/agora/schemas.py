"""Base classes and validators shared by every domain's API schemas.

* `Input`: request bodies forbid unknown fields, so a caller cannot mass-assign `id`,
  `credits` or anything else the schema does not list (422).
* `PartialUpdate`: PATCH bodies. A field left out means "leave as is"; an explicit null would
  mean "clear", which none of our columns allow, so it is a 422 naming the fields.
* `Output`: responses read from ORM objects.
* `NoNul`: strings must not hold NUL characters (PostgreSQL refuses them in text: a 422 here
  instead of a driver error later).
"""

from __future__ import annotations

from typing import Self

from pydantic import AfterValidator, BaseModel, ConfigDict, model_validator


def no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


NoNul = AfterValidator(no_nul)


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PartialUpdate(Input):
    @model_validator(mode="after")
    def _no_nulls(self) -> Self:
        nulls = sorted(f for f in self.model_fields_set if getattr(self, f) is None)
        if nulls:
            raise ValueError(f"cannot be null: {', '.join(nulls)}")
        return self


class Output(BaseModel):
    model_config = ConfigDict(from_attributes=True)

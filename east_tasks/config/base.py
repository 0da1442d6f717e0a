"""The base of every config section: unknown fields are refused (a misspelt field is an error, not a default) and
values are frozen (a config is shared by every step of a run)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A config section: strict and immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)

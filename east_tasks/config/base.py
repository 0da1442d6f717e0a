"""The base of every config section: unknown fields are refused (a misspelt field is an error, not a default) and
values are frozen (a config is shared by every step of a run)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A config section: strict and immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# Fields renamed since configs were first recorded, per section: (old name, new name). Config files, recorded
# configs and deployments' parameters written before a rename still load; what east writes uses the new name.
RENAMED: dict[str, tuple[str, str]] = {"eval": ("k", "n"), "backend": ("backend", "engine")}


def read_old_name(section: str, data: object) -> object:
    """A section's input with its renamed field under the new name; both names with other values is an error."""
    old, new = RENAMED[section]
    if not isinstance(data, dict) or old not in data:
        return data
    data = dict(data)
    value = data.pop(old)
    if data.setdefault(new, value) != value:
        raise ValueError(f"{section}.{old} {value!r} and {section}.{new} {data[new]!r} disagree: {section}.{old} is "
                         f"the old name of {section}.{new}; give {section}.{new} only")
    return data


def new_names(fields: dict) -> dict:
    """A partial config (a file's, an override's) with each renamed field under its new name where only the old
    one is given, so that a later layer's old name overrides an earlier layer's new one."""
    out = dict(fields)
    for section, (old, new) in RENAMED.items():
        values = out.get(section)
        if isinstance(values, dict) and old in values and new not in values:
            out[section] = {(new if key == old else key): v for key, v in values.items()}
    return out

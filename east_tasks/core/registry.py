"""Variants registered by name and defined once (as verl registers its advantage estimators): the config's allowed
values, its reference page and the error for an unknown name all read the registry. A user's own variant plugs in
as a `module:function` import path or an entry point of the registry's group, the way answer styles do."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import entry_points
from importlib.util import find_spec
from pathlib import Path
from typing import Any

IMPORT_PATH = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")


@dataclass(frozen=True)
class Entry:
    name: str
    fn: Callable[..., Any]
    description: str
    needs: tuple[str, ...] = ()  # inputs beyond the statistics frame (e.g. "logprobs")


class Registry:
    """Named functions of one kind. `field` names the config field that selects among them (for messages);
    `group`, when set, is the entry-point group users register their own under."""

    def __init__(self, field: str, group: str | None = None) -> None:
        self.field, self.group = field, group
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, description: str, needs: tuple[str, ...] = ()) -> Callable:
        def add(fn: Callable) -> Callable:
            if name in self._entries:
                raise ValueError(f"{self.field}: {name!r} is registered twice")
            self._entries[name] = Entry(name, fn, description, needs)
            return fn
        return add

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def describe(self) -> str:
        """'name: description; ...' for a field's description and the reference page."""
        return "; ".join(f"{e.name}: {e.description}" for e in self._entries.values())

    def plugins(self) -> list[str]:
        """Names installed packages register under the group (their metadata is read; nothing is imported)."""
        return sorted(ep.name for ep in entry_points(group=self.group)) if self.group else []

    def allowed(self) -> str:
        extra = (f", a 'module:function' import path, or an entry point of group {self.group}" if self.group else "")
        return f"allowed: {', '.join(self._entries)}{extra}"

    def check_name(self, name: str) -> str:
        """The form of a value: a built-in, an installed plugin's name or an import path (importing is `get`'s)."""
        if name in self._entries or (self.group and (IMPORT_PATH.fullmatch(name) or name in self.plugins())):
            return name
        raise ValueError(f"unknown {self.field.rpartition('.')[2]} {name!r}; {self.allowed()}")

    def get(self, name: str) -> Entry:
        """The entry for a built-in name, an import path or a plugin, imported now; ValueError names what is allowed."""
        if name in self._entries:
            return self._entries[name]
        self.check_name(name)
        try:
            if ":" in name:
                module, _, attr = name.partition(":")
                obj: Any = import_module(module)
                for part in attr.split("."):
                    obj = getattr(obj, part)
            else:
                obj = next(ep for ep in entry_points(group=self.group) if ep.name == name).load()
        except Exception as err:  # the user's module failed to import or lacks the name: say which, in one line
            why = f"{type(err).__name__}: {(str(err).splitlines() or [''])[0]}"
            raise ValueError(f"{self.field}: cannot import {name!r} ({why}); {self.allowed()}") from err
        if not callable(obj):
            raise ValueError(f"{self.field}: {name!r} is not a function")
        return Entry(name, obj, getattr(obj, "__doc__", None) or name, tuple(getattr(obj, "needs", ())))

    def version(self, name: str) -> str | None:
        """What a key records of a user's variant: its `version` attribute, else a hash of its module's file, so an
        edited function computes again; None for a built-in (whose keys never carried one)."""
        if name in self._entries:
            return None
        fn = self.get(name).fn
        if getattr(fn, "version", None) is not None:
            return str(fn.version)
        spec = find_spec(fn.__module__)
        origin = Path(spec.origin) if spec is not None and spec.origin else None
        return hashlib.sha256(origin.read_bytes()).hexdigest()[:16] if origin and origin.is_file() else ""

"""One name registry for every kind of pluggable part: query strategies, task models,
segmentation models and datasets are each a `Registry` of their own.

A registry maps a name to an entry (a class, a builder, a registration record). A name is
registered once; looking up an unknown name raises one error, of the caller's type, that says
what was asked for and lists every known name, so a wrong config value is answered with the
valid ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries of one `kind` ("method", "task model", ...) by name.

    `unknown` builds the exception an unknown name raises from its message (a `ConfigError` for
    a config value, a `DatasetError` for a dataset); registering a name twice is a programming
    error and raises `ValueError`.
    """

    def __init__(self, kind: str, unknown: Callable[[str], Exception]) -> None:
        self.kind = kind
        self._unknown = unknown
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T, *, replace: bool = False) -> T:
        """Make `entry` known as `name`; `replace` allows replacing an earlier entry."""
        if name in self._entries and not replace:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry
        return entry

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of `add`: ``@models.register("resnet18")`` above a builder."""
        return lambda entry: self.add(name, entry)

    def get(self, name: str) -> T:
        """The entry of `name`; an unknown name raises the registry's error listing the known."""
        try:
            return self._entries[name]
        except KeyError:
            raise self._unknown(
                f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}"
            ) from None

    def find(self, name: str) -> T | None:
        """The entry of `name`, or None when it is not registered."""
        return self._entries.get(name)

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def items(self) -> Iterator[tuple[str, T]]:
        """(name, entry) pairs, sorted by name."""
        return iter(sorted(self._entries.items()))

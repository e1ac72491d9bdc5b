"""Name -> object registries filled by decorators (models, datasets, losses, defenses, ...)."""
from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from fastleak.errors import InvalidValueError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named collection filled with ``@registry.register("name")``.

    ``kind`` is what the entries are ("model", "dataset", ...); it appears in error messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        if not isinstance(name, str) or not name:
            raise InvalidValueError(f"{self.kind} name must be a non-empty string, got {name!r}")

        def decorator(obj: T) -> T:
            if name in self._entries:
                raise InvalidValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise InvalidValueError(f"unknown {self.kind} {name!r}; valid names: {', '.join(self.names())}") from None

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._entries))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

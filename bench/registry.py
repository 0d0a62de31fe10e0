"""A small generic registry (timm's `@register_model` idea) for methods and datasets; duplicates raise."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Generic, TypeVar

from bench.errors import UnknownNameError

if TYPE_CHECKING:
    from bench.api import DatasetInfo, MethodInfo

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> entry. Entries are registered at import of their module; a duplicate name is an error."""

    def __init__(self, kind: str, loader: Callable[[], None] | None = None):
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._loader = loader
        self._loaded = False

    def _ensure_loaded(self) -> None:
        if not self._loaded and self._loader is not None:
            self._loaded = True
            self._loader()

    def add(self, name: str, entry: T) -> T:
        if name in self._entries:
            raise ValueError(f"{self.kind} '{name}' is registered twice")
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> T:
        self._ensure_loaded()
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self._entries) from None

    def get_registered(self, name: str) -> T:
        """An entry registered already, without importing the plug-ins (for registrations that refer to one)."""
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self._entries) from None

    def names(self, pattern: str = "*") -> list[str]:
        self._ensure_loaded()
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def __contains__(self, name: str) -> bool:
        self._ensure_loaded()
        return name in self._entries

    def __iter__(self) -> Iterator[T]:
        self._ensure_loaded()
        return iter(self._entries[n] for n in sorted(self._entries))

    def __len__(self) -> int:
        self._ensure_loaded()
        return len(self._entries)


def _load_methods() -> None:
    import bench.methods  # noqa: F401  (registers at import)


def _load_datasets() -> None:
    import bench.datasets  # noqa: F401


METHODS: Registry[MethodInfo] = Registry("method", _load_methods)
DATASETS: Registry[DatasetInfo] = Registry("dataset", _load_datasets)

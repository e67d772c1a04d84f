"""One registry type for every extension point: backbones, tasks, data sources, strategies,
evaluators and figures.

A component is found, in this order, among

1. the registered built-ins: every module of the registry's package is imported on first use
   (so a new built-in is its own file, and no base module imports its subclasses);
2. objects registered with the decorator (``@REGISTRY.register("name")``), e.g. from a test;
3. installed plug-ins of the registry's entry-point group (installing is the user's permission);
4. ``package.module:attr``, imported only under the trust model (:mod:`acla_nas.core.trust`).

Conformance tests are parametrized over :meth:`Registry.names`, so a plug-in registered in a
test meets the same contract as a built-in.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from acla_nas.core.aliases import modern_path
from acla_nas.core.errors import UserError
from acla_nas.core.trust import entry_points, import_object, qualified_name

T = TypeVar("T")


class Registry(Generic[T]):
    """Named components of one kind (``kind`` words the messages, ``field`` names the YAML field)."""

    def __init__(
        self,
        kind: str,
        group: str,
        field: str,
        *,
        package: str | None = None,
        check: Callable[[Any], bool] | None = None,
        expected: str = "",
        import_form: str = "package.module:name",
    ) -> None:
        self.kind = kind
        self.group = group
        self.field = field
        self.package = package
        self.check = check
        self.expected = expected or kind
        self.import_form = import_form
        self._items: dict[str, T] = {}
        self._discovered = package is None
        self.unavailable: dict[str, str] = {}  # built-in module -> why it could not be imported

    # -- registering -----------------------------------------------------------------------------
    def register(self, name: str | T | None = None) -> Any:
        """Decorator: ``@R.register("name")``, or ``@R.register`` for a class with a ``name``."""
        if name is not None and not isinstance(name, str):  # bare decorator on a class
            obj = name
            self.add(str(obj.name), obj)  # type: ignore[attr-defined]
            return obj

        def deco(obj: T) -> T:
            self.add(name if isinstance(name, str) else str(obj.name), obj)  # type: ignore[attr-defined]
            return obj

        return deco

    def add(self, name: str, obj: T) -> None:
        self._items[name] = obj

    def remove(self, name: str) -> None:
        """Forget a registration (tests that register a plug-in clean up with this)."""
        self._items.pop(name, None)

    # -- built-ins -------------------------------------------------------------------------------
    def discover(self) -> None:
        """Import every module of the package once; a module whose third-party dependency is
        missing is skipped (and named if someone asks for a component it would have held)."""
        if self._discovered:
            return
        self._discovered = True
        pkg = importlib.import_module(self.package or "")
        for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
            if info.name.startswith("_"):
                continue
            name = f"{pkg.__name__}.{info.name}"
            try:
                importlib.import_module(name)
            except ModuleNotFoundError as exc:
                if (exc.name or "").split(".")[0] == "acla_nas":
                    raise
                self.unavailable[name] = f"needs {exc.name}"

    # -- looking up ------------------------------------------------------------------------------
    def items(self) -> dict[str, T]:
        """Registered components (built-ins and decorator registrations; plug-ins once loaded)."""
        self.discover()
        return dict(self._items)

    def names(self) -> list[str]:
        """Registered names and installed plug-ins."""
        return sorted(set(self.items()) | set(entry_points(self.group)))

    def trusted(self) -> dict[str, T]:
        """``module:qualname`` of every registered object: a file may name these freely."""
        return {qualified_name(o): o for o in self.items().values()}

    def get(self, name: str, file: str | None = None, field: str | None = None) -> T:
        """The component called ``name`` (see the module docstring for the order)."""
        field = field or self.field
        name = modern_path(name)  # a file written before the package moved
        items = self.items()
        if name in items:
            return items[name]
        obj = self._plugin(name, file, field)
        if obj is None:
            if ":" not in name:
                hint = "".join(f"; {m} {why}" for m, why in self.unavailable.items())
                raise UserError(
                    f"unknown {self.kind} {name!r} (expected one of {', '.join(self.names())}, or "
                    f"{self.import_form}{hint})",
                    file=file,
                    field=field,
                )
            obj = import_object(name, kind=self.expected, field=field, file=file, trusted=self.trusted())
        if self.check is not None and not self.check(obj):
            raise UserError(f"{name!r} is not a {self.expected}", file=file, field=field)
        return obj

    def _plugin(self, name: str, file: str | None, field: str) -> T | None:
        """An installed plug-in by entry-point name or by its import path (registered on load)."""
        for ep_name, ep in entry_points(self.group).items():
            if name in (ep_name, ep.value.replace(" ", "")):
                try:
                    obj = ep.load()
                except Exception as exc:  # noqa: BLE001 - a broken installed plug-in: one line
                    raise UserError(
                        f"the installed {self.kind} plug-in {ep_name!r} ({ep.value}) failed to load: "
                        f"{type(exc).__name__}: {exc}",
                        file=file,
                        field=field,
                    ) from None
                self._items.setdefault(ep_name, obj)
                return obj
        return None


__all__ = ["Registry"]

"""Plugin registry for methods and data sets, in the spirit of timm's register/create/list.

Built-ins, the top-level ``baselines`` package and third-party packages all register through
the same Python entry-point groups (``wslbench.methods``, ``wslbench.datasets``): an entry
point ``name = package.module:Object`` makes ``Object`` available as ``name``. Modules may also
use the ``register_method`` / ``register_dataset`` decorators directly.
"""
from __future__ import annotations

import difflib
import inspect
import re
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Callable

from wslbench.errors import WslbenchError

METHOD_GROUP = "wslbench.methods"
DATASET_GROUP = "wslbench.datasets"


@dataclass
class Entry:
    name: str
    obj: Any  # a class or factory callable
    description: str
    source: str  # "entry point <value>" or the defining module

    @property
    def package(self) -> dict | None:
        """The installed distribution that provides the object: {"name", "version"}, None when its
        module belongs to none (a script's own registration). env.json records it: a plugin's
        method changes with its package's version, not with wslbench's commit."""
        from importlib.metadata import PackageNotFoundError, packages_distributions, version

        top = (getattr(self.obj, "__module__", "") or "").split(".")[0]
        for dist in packages_distributions().get(top, []):
            try:
                return {"name": dist, "version": version(dist)}
            except PackageNotFoundError:
                continue
        return None


class _Registry:
    def __init__(self, kind: str, group: str):
        self.kind = kind
        self.group = group
        self._entries: dict[str, Entry] = {}
        self._discovered = False
        self._broken: dict[str, str] = {}

    def register(self, name: str, obj: Any, description: str | None = None, source: str = "") -> Any:
        if name in self._entries and self._entries[name].obj is not obj:
            raise WslbenchError(
                f"{self.kind} {name!r} is registered twice: by {self._entries[name].source} "
                f"and by {source or getattr(obj, '__module__', '?')}"
            )
        desc = description or first_sentence(getattr(obj, "__doc__", None))
        self._entries[name] = Entry(name, obj, desc, source or getattr(obj, "__module__", "?"))
        try:
            obj.registry_name = name  # let an object know the name it was registered under
        except (AttributeError, TypeError):
            pass
        return obj

    def discover(self, force: bool = False) -> None:
        """Load every entry point of the group once (importing the modules registers them)."""
        if self._discovered and not force:
            return
        self._discovered = True
        for ep in entry_points(group=self.group):
            if ep.name in self._entries and not force:
                continue
            try:
                obj = ep.load()
            except Exception as exc:  # a broken plugin must not break the whole tool
                self._broken[ep.name] = f"{ep.value}: {type(exc).__name__}: {exc}"
                continue
            self._broken.pop(ep.name, None)
            if ep.name not in self._entries:
                self.register(ep.name, obj, source=f"entry point {ep.value}")

    def names(self) -> list[str]:
        self.discover()
        return sorted(self._entries)

    def broken(self) -> dict[str, str]:
        """Entry points of the group that failed to load: name -> "value: ErrorType: message"."""
        self.discover()
        return dict(sorted(self._broken.items()))

    def get(self, name: str) -> Entry:
        self.discover()
        if name in self._entries:
            return self._entries[name]
        if name in self._broken:
            raise WslbenchError(f"{self.kind} {name!r} failed to load: {self._broken[name]}")
        known = sorted(self._entries)
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise WslbenchError(
            f"unknown {self.kind} {name!r}.{hint} Known {self.kind}s: {', '.join(known) or '(none)'}"
        )

    def create(self, name: str, **config: Any) -> Any:
        return self.get(name).obj(**config)


#: words whose trailing period ends no sentence ("Zhou et al. 2016", "e.g. a ResNet")
_ABBREVIATIONS = {"al", "e.g", "i.e", "cf", "vs", "approx", "fig", "figs", "eq", "eqs", "ref", "refs", "resp",
                  "incl", "sec", "ch", "vol", "pp", "dr", "mr", "ms", "prof", "st"}


def first_sentence(doc: str | None) -> str:
    """The first sentence of a docstring, on one line: up to the first period followed by a space
    or the end, across line breaks, within the first paragraph (the whole paragraph when it has no
    such period). A period after an abbreviation (``et al.``, ``e.g.``), an initial, or followed by
    a lower-case word or a digit ends no sentence."""
    if not doc or not doc.strip():
        return ""
    text = " ".join(re.split(r"\n\s*\n", inspect.cleandoc(doc), maxsplit=1)[0].split())
    for m in re.finditer(r"\.(?=\s|$)", text):
        word = text[: m.start()].rsplit(" ", 1)[-1].lstrip("([\"'`").lower()
        after = text[m.end():].lstrip()[:1]
        if word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha()) or after.islower() or after.isdigit():
            continue
        return text[: m.end()]
    return text


METHODS = _Registry("method", METHOD_GROUP)
DATASETS = _Registry("dataset", DATASET_GROUP)


def register_method(name: str, description: str | None = None) -> Callable[[Any], Any]:
    """Decorator: ``@register_method("cam-avg")`` on a Method subclass."""
    return lambda obj: METHODS.register(name, obj, description)


def register_dataset(name: str, description: str | None = None) -> Callable[[Any], Any]:
    """Decorator: ``@register_dataset("glas")`` on a WSLDataset subclass."""
    return lambda obj: DATASETS.register(name, obj, description)


def create_method(name: str, **config: Any):
    """Build a method by registered name; ``config`` goes to its constructor."""
    return METHODS.create(name, **config)


def create_dataset(name: str, **config: Any):
    """Build a data set split by registered name; ``config`` goes to its constructor."""
    return DATASETS.create(name, **config)


def list_methods() -> list[str]:
    return METHODS.names()


def list_datasets() -> list[str]:
    return DATASETS.names()


def method_entry(name: str) -> Entry:
    return METHODS.get(name)


def dataset_entry(name: str) -> Entry:
    return DATASETS.get(name)


def refresh() -> None:
    """Look at the installed entry points again (after pip-installing a plugin in this process)."""
    for reg in (METHODS, DATASETS):
        reg.discover(force=True)

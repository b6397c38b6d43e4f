"""Typed, ranged options: what a method or data set declares in its ``__init__`` signature, and
the checks the config layer runs on it before anything is built.

A plugin declares each keyword option with a type and, where it has one, a range next to it::

    def __init__(self, num_classes, kmax: Annotated[float, Field(gt=0, lt=1)] = 0.2, **config)

:func:`options_of` reads the signatures of the class and of the bases its ``**kwargs`` reach
(``inspect.signature`` + ``typing.get_type_hints(include_extras=True)``); each option's value is
checked by a pydantic ``TypeAdapter`` of its annotation, and :func:`describe` turns the same
annotation into the words of the error message (``model.kmax: expected a number in (0, 1), got
'abc'``). An option without an annotation accepts any value.

Values come from YAML, so they are checked in pydantic's strict mode (``'abc'`` or ``true`` is
not a number, ``1`` is a float), except that a YAML list may fill a tuple and a string a Path.
"""
from __future__ import annotations

import difflib
import inspect
import types
import typing
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import annotated_types as at
from pydantic import Field, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from wslbench.errors import ConfigError

NO_DEFAULT = inspect.Parameter.empty

# --- reusable annotations (plugins import these) ------------------------------------------------
PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
UnitInterval = Annotated[float, Field(ge=0, le=1)]
#: a dropout probability: 1 would zero every activation
DropoutRate = Annotated[float, Field(ge=0, lt=1)]
#: Wildcat's kmax (pooling.k_locations): a fraction of the locations below 1, or a count
TopK = Annotated[
    Union[Annotated[float, Field(gt=0, lt=1)], Annotated[int, Field(ge=1)]],
    Field(description="a fraction in (0, 1) or an integer count >= 1"),
]
#: Wildcat's kmin: as kmax, or 0 (no lowest activations), or null (= kmax)
BottomK = Annotated[
    Union[Annotated[float, Field(ge=0, lt=1)], Annotated[int, Field(ge=0)], None],
    Field(description="0, a fraction in (0, 1), an integer count >= 1, or null (= kmax)"),
]
Backbone = Annotated[str, Field(min_length=1, description="a timm model name (see timm.list_models())")]
Pretrained = Annotated[Union[bool, str], Field(description="true, false or the path of a weights file")]
#: dilated trunks (timm ``output_stride``); null keeps the trunk's own stride (32 for ResNets)
OutputStride = Literal[8, 16, 32, None]


# --- describing an annotation in words ----------------------------------------------------------
def _fmt(x) -> str:
    return repr(x) if isinstance(x, str) else str(x)


def _constraints(meta) -> tuple[list, str | None]:
    """annotated_types constraints and a description from Annotated metadata (Field(...) or bare)."""
    out, description = [], None
    for m in meta:
        if isinstance(m, FieldInfo):
            description = description or m.description
            out += list(m.metadata)
        elif isinstance(m, at.Interval):
            out += list(m)
        else:
            out.append(m)
    return out, description


def _range(constraints: list) -> str:
    lo = hi = None
    other = []
    for c in constraints:
        if isinstance(c, at.Gt):
            lo = ("(", c.gt)
        elif isinstance(c, at.Ge):
            lo = ("[", c.ge)
        elif isinstance(c, at.Lt):
            hi = (")", c.lt)
        elif isinstance(c, at.Le):
            hi = ("]", c.le)
        elif isinstance(c, at.MinLen) and c.min_length == 1:
            other.append("non-empty")
        elif isinstance(c, at.MinLen):
            other.append(f"of length >= {c.min_length}")
        elif isinstance(c, at.MaxLen):
            other.append(f"of length <= {c.max_length}")
        elif getattr(c, "pattern", None):
            other.append(f"matching {c.pattern}")
    words = []
    if lo and hi:
        words.append(f"in {lo[0]}{_fmt(lo[1])}, {_fmt(hi[1])}{hi[0]}")
    elif lo:
        words.append(f"{'>' if lo[0] == '(' else '>='} {_fmt(lo[1])}")
    elif hi:
        words.append(f"{'<' if hi[0] == ')' else '<='} {_fmt(hi[1])}")
    return " ".join(words + other)


_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", Path: "a path",
          dict: "a mapping", list: "a list", tuple: "a list", type(None): "null"}


def describe(tp) -> str:
    """An annotation in words: ``Annotated[float, Field(gt=0, le=1)]`` -> ``a number in (0, 1]``."""
    if tp is Any or tp is NO_DEFAULT:
        return "any value"
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Annotated:
        constraints, description = _constraints(tp.__metadata__)
        if description:
            return description
        base = describe(args[0])
        rng = _range(constraints)
        if rng.startswith("non-empty") and base.startswith("a "):
            return f"a non-empty {base[2:]}{rng[len('non-empty'):]}"
        return f"{base} {rng}" if rng else base
    if origin in (Union, types.UnionType):
        parts = [describe(a) for a in args if a is not type(None)]
        text = " or ".join(parts)
        return f"{text} or null" if type(None) in args else text
    if origin is Literal:
        values = [_fmt(a) if a is not None else "null" for a in args]
        return values[0] if len(values) == 1 else "one of " + ", ".join(values)
    if origin in (tuple,):
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_plural(args[0])}"
        if args and all(a == args[0] for a in args):
            return f"a list of {len(args)} {_plural(args[0])}"
        return f"a list ({', '.join(describe(a) for a in args)})"
    if origin in (list, set, frozenset, typing.Sequence):
        return f"a list of {_plural(args[0])}" if args else "a list"
    if origin in (dict, typing.Mapping):
        return f"a mapping of {_plural(args[0])} to {_plural(args[1])}" if args else "a mapping"
    if isinstance(tp, type) and issubclass(tp, Path):
        return "a path"
    return _NAMES.get(tp, getattr(tp, "__name__", str(tp)))


def _plural(tp) -> str:
    words = describe(tp)
    for a, many in (("an integer", "integers"), ("a number", "numbers"), ("a string", "strings"), ("a path", "paths")):
        if words.startswith(a):
            return many + words[len(a):]
    return words


# --- checking values ----------------------------------------------------------------------------
@dataclass
class Option:
    """One keyword option: its annotation (``Any`` when undeclared), default and declaring code."""

    name: str
    annotation: Any = Any
    default: Any = NO_DEFAULT
    owner: str = ""

    @cached_property
    def _adapter(self) -> TypeAdapter | None:
        return None if self.annotation is Any else TypeAdapter(self.annotation)

    @property
    def allowed(self) -> str:
        return describe(self.annotation)

    def accepts(self, value) -> bool:
        """Strict check, with a YAML list standing for a tuple and a string for a Path."""
        try:
            adapter = self._adapter
        except Exception:  # a type pydantic cannot build a validator for: trust the value
            return True
        if adapter is None:
            return True
        tries = [value]
        if isinstance(value, list):
            tries.append(tuple(value))
        if isinstance(value, str):
            tries.append(Path(value))
        for v in tries:
            try:
                adapter.validate_python(v, strict=True)
                return True
            except ValidationError:
                continue
            except Exception:  # an annotation pydantic cannot validate: trust the value
                return True
        return False

    def problem(self, key: str, value) -> str | None:
        """``None`` when ``value`` is allowed, else the one-line message naming key, value and range."""
        return None if self.accepts(value) else f"{key}: expected {self.allowed}, got {value!r}"


@dataclass
class OptionSet:
    """The options of one class or function, by name."""

    owner: str
    options: dict[str, Option] = field(default_factory=dict)

    def __contains__(self, name) -> bool:
        return name in self.options

    def problems(self, values: dict, prefix: str) -> list[str]:
        """Messages for the values that break their option's type or range (unknown keys are left
        to the caller: see unknown_message)."""
        found = (self.options[k].problem(f"{prefix}.{k}", v) for k, v in values.items() if k in self.options)
        return [p for p in found if p]

    def missing(self, values: dict, prefix: str) -> list[str]:
        return [f"{prefix}.{k}: required by {self.owner} ({o.allowed}), not set"
                for k, o in self.options.items() if o.default is NO_DEFAULT and k not in values]

    def unknown_message(self, key: str, prefix: str, what: str) -> str:
        known = sorted(self.options)
        close = difflib.get_close_matches(key, known, n=1)
        hint = f" Did you mean {prefix}.{close[0]}?" if close else ""
        return f"{prefix}.{key}: not an option of {what}.{hint} Known: {', '.join(known) or '(none)'}"


def _hints(fn) -> dict:
    try:
        return typing.get_type_hints(fn, include_extras=True)
    except Exception:  # an unresolvable annotation: read the others one by one
        out = {}
        ns = getattr(fn, "__globals__", {})
        for name, ann in getattr(fn, "__annotations__", {}).items():
            try:
                out[name] = eval(ann, ns) if isinstance(ann, str) else ann  # noqa: S307 (the plugin's own code)
            except Exception:
                out[name] = Any
        return out


def _signature_options(fn, owner: str, skip: tuple[str, ...]) -> tuple[dict[str, Option], bool]:
    """Keyword options of one callable and whether it takes ``**kwargs``."""
    sig = inspect.signature(fn)
    hints = _hints(fn)
    out, var_kw = {}, False
    for p in sig.parameters.values():
        if p.kind is p.VAR_KEYWORD:
            var_kw = True
        elif p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in ("self", *skip):
            out[p.name] = Option(p.name, hints.get(p.name, Any), p.default, owner)
    return out, var_kw


_CACHE: dict[tuple, OptionSet] = {}


def options_of(obj, base: type | None = None, skip: tuple[str, ...] = ()) -> OptionSet:
    """The keyword options of a class (its ``__init__`` and, while that takes ``**kwargs``, the
    ``__init__`` of the bases it forwards to, down to ``base``) or of a factory function. A class
    may also declare options it reads from its ``**kwargs`` in ``extra_options`` (name ->
    annotation). The subclass's declaration of a name wins."""
    key = (obj, base, skip)
    if key in _CACHE:
        return _CACHE[key]
    found = OptionSet(getattr(obj, "__qualname__", str(obj)))
    if inspect.isclass(obj):
        for cls in obj.__mro__:
            if "__init__" not in cls.__dict__:
                continue
            opts, var_kw = _signature_options(cls.__dict__["__init__"], cls.__qualname__, skip)
            for name, opt in opts.items():
                found.options.setdefault(name, opt)
            if not var_kw or cls is base or cls is object:
                break
        for cls in obj.__mro__:
            for name, ann in (cls.__dict__.get("extra_options") or {}).items():
                found.options.setdefault(name, Option(name, ann, None, cls.__qualname__))
    else:
        found.options.update(_signature_options(obj, found.owner, skip)[0])
    _CACHE[key] = found
    return found


def check_options(obj, values: dict, prefix: str, base: type | None = None, skip: tuple[str, ...] = ()) -> None:
    """Raise ConfigError naming every value of ``values`` that breaks its declared type or range."""
    raise_problems(options_of(obj, base, skip).problems(values, prefix))


def raise_problems(problems: list[str], context: str = "") -> None:
    if not problems:
        return
    if len(problems) == 1:
        raise ConfigError(f"{context}{problems[0]}")
    raise ConfigError(f"{context}{len(problems)} bad config values:\n  " + "\n  ".join(problems))


__all__ = [
    "Option", "OptionSet", "options_of", "check_options", "describe", "raise_problems",
    "PositiveInt", "NonNegativeInt", "PositiveFloat", "NonNegativeFloat", "UnitInterval", "DropoutRate",
    "TopK", "BottomK", "Backbone", "Pretrained", "OutputStride", "Field", "Annotated", "Literal",
]

"""What a table row is, as its method declares it (``display_name``, ``family``, ``contender``,
``tag_names``, ``row_order`` on the Method class): tables and figures ask here, so a method from a
third-party plugin gets a proper row without an edit to the suite.

A row is a *variant*: a registered method, ``<method>+<tag>`` for a tagged variant, or min-max
without erasing (``wslbench.runs.NOERASE``). A method that is not installed where the tables are
built (a record from another machine) is shown by its registry name, as a contender.
"""
from __future__ import annotations

from dataclasses import dataclass

from wslbench.runs import NOERASE

#: the families a method may declare, in words (the results summary groups rows by them)
FAMILIES = {
    "paper": "the min-max paper's baselines",
    "wsol": "WSOL methods (as clovaai/wsolevaluation trains them)",
    "post-hoc": "post-hoc maps of the Grad-CAM classifier",
    "ours": "min-max entropy",
    "reference": "references (a constant map; full supervision)",
    "other": "other methods",
}


@dataclass(frozen=True)
class RowInfo:
    variant: str
    method: str
    tag: str | None
    name: str  # as tables and figures show it
    family: str
    contender: bool  # may be bold
    classifies: bool  # has a classification error (else 'n/a')
    crf: bool  # its maps take dense-CRF post-processing
    order: tuple  # sort key of the row


def split_variant(variant: str) -> tuple[str, str | None]:
    """(method, tag) of a row: ``cam-max+big`` -> (cam-max, big); NOERASE -> (minmax, noerase)."""
    if variant == NOERASE:
        return "minmax", "noerase"
    method, _, tag = variant.partition("+")
    return method, tag or None


def _method_class(method: str):
    from wslbench.errors import WslbenchError
    from wslbench.registry import method_entry

    try:
        obj = method_entry(method).obj
    except WslbenchError:
        return None
    return obj if isinstance(obj, type) else None


def row_info(variant: str) -> RowInfo:
    method, tag = split_variant(variant)
    cls = _method_class(method)
    if cls is None:  # not installed here: its registry name, a contender
        name = f"{method} ({tag})" if tag else method
        return RowInfo(variant, method, tag, name, "other", True, True, True, (500, method, tag or ""))
    base = vars(cls).get("display_name") or method  # own declaration only: a subclass is another row
    tags = getattr(cls, "tag_names", {}) or {}
    name = (tags.get(tag) or f"{base} ({tag})") if tag else base
    contender = bool(getattr(cls, "contender", True)) and not bool(getattr(cls, "uses_pixel_labels", False))
    return RowInfo(variant, method, tag, name, str(getattr(cls, "family", "other")), contender,
                   bool(getattr(cls, "classifies", True)), bool(getattr(cls, "crf_applicable", True)),
                   (int(getattr(cls, "row_order", 500)), method, tag or ""))


def display_name(variant: str) -> str:
    """How tables and figures name a row (``cam-max+big`` -> "CAM-Max (big)")."""
    return row_info(variant).name


def ordered(variants) -> list[str]:
    """Rows in table order: by the methods' declared order, a tagged variant after its method."""
    return sorted(set(variants), key=lambda v: row_info(v).order)

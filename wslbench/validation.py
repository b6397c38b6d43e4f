"""One validation step between "configuration resolved" and "anything built or written".

Every section (``seed``, ``tag``, ``data``, ``model``, ``optim``, ``train``, ``eval``) is checked
for type and range before a data set, a model or a run folder exists, and every problem is
reported at once, each as ``key: expected <what is allowed>, got <value>``. Where the types
come from:

- ``model``: the registered method's ``__init__`` signature (:func:`wslbench.options.options_of`);
- ``data``: the loader keys (``config.LOADER_TYPES``) and the registered data set's ``__init__``
  signature, including the :class:`~wslbench.data.base.WSLDataset` keyword arguments;
- ``optim`` / ``train``: the annotated fields of ``config.OptimConfig`` / ``config.TrainConfig``;
- ``eval``: ``config.EVAL_TYPES``, and ``eval.crf_params`` the signature of ``wslbench.crf.refine``.

A ``model`` (or ``data``) key that this method (data set) does not declare is an error, except
when it comes from a layer shared by every method (a data set's ``dataset.yaml``, a sweep's
grid-wide ``set``) and another registered method (data set) declares it: ``model.backbone`` in
``experiments/synthetic/dataset.yaml`` is then simply not passed to All-ones.
"""
from __future__ import annotations

import dataclasses
import typing
from functools import lru_cache
from typing import Any

from wslbench.config import (DEFAULT_SOURCE, DEFAULTS, EVAL_TYPES, LOADER_TYPES, SECTIONS, TOP_TYPES, OptimConfig,
                             RunConfig, Source, TrainConfig, _build, layered)
from wslbench.errors import WslbenchError
from wslbench.options import NO_DEFAULT, Option, OptionSet, options_of, raise_problems

METHOD_SKIP = ("num_classes",)  # given by the trainer from the data set
DATASET_SKIP = ("split", "root", "augment")  # given by the trainer (root: the loader key data.root)


def _table(types: dict[str, Any], defaults: dict, owner: str) -> OptionSet:
    return OptionSet(owner, {k: Option(k, t, defaults.get(k, NO_DEFAULT), owner) for k, t in types.items()})


@lru_cache(maxsize=None)
def _static() -> dict[str, OptionSet]:
    """The sections whose types do not depend on the method or data set."""
    def from_dataclass(cls) -> OptionSet:
        hints = typing.get_type_hints(cls, include_extras=True)
        return OptionSet(cls.__name__, {f.name: Option(f.name, hints.get(f.name, Any), f.default, cls.__name__)
                                        for f in dataclasses.fields(cls)})

    from wslbench.crf import refine

    eval_types = {k: EVAL_TYPES.get(k, Any) for k in {**DEFAULTS["eval"], **EVAL_TYPES}}
    return {
        "": _table(TOP_TYPES, DEFAULTS, "run"),
        "loader": _table(LOADER_TYPES, DEFAULTS["data"], "loader"),
        "optim": from_dataclass(OptimConfig),
        "train": from_dataclass(TrainConfig),
        "eval": _table(eval_types, {"figures": True, **DEFAULTS["eval"]}, "eval"),  # figures: the trainer's default
        "eval.crf_params": options_of(refine, skip=("image", "prob")),
    }


def method_options(name: str) -> OptionSet:
    """The declared options of a registered method (its ``__init__`` and those its ``**config`` reaches)."""
    from wslbench.methods.base import Method
    from wslbench.registry import method_entry

    return options_of(method_entry(name).obj, base=Method, skip=METHOD_SKIP)


def dataset_options(name: str) -> OptionSet:
    """The declared options of a registered data set, the WSLDataset keyword arguments included."""
    from wslbench.data.base import WSLDataset
    from wslbench.registry import dataset_entry

    return options_of(dataset_entry(name).obj, base=WSLDataset, skip=DATASET_SKIP)


def schema(method: str, dataset: str) -> dict[str, OptionSet]:
    """Section -> its options, for one (method, data set)."""
    static = _static()
    ds = dataset_options(dataset)
    data = OptionSet(f"{ds.owner} + loader", {**ds.options, **static["loader"].options})
    return {**static, "data": data, "model": method_options(method)}


def _declared_elsewhere(section: str, key: str, own: str) -> bool:
    from wslbench.registry import DATASETS, METHODS

    reg, opts = (METHODS, method_options) if section == "model" else (DATASETS, dataset_options)
    for name in reg.names():
        if name == own:
            continue
        try:
            if key in opts(name):
                return True
        except WslbenchError:
            continue
    return False


def _shared(sources: dict[str, Source] | None, key: str) -> bool:
    """The key was set by a layer that serves every method (unknown origin counts as shared)."""
    if sources is None:
        return True
    return sources.get(key, DEFAULT_SOURCE).shared


def check_config(cfg: dict, sources: dict[str, Source] | None = None) -> dict:
    """Check a resolved configuration (a plain dict with ``method`` and ``dataset``); raise one
    ConfigError listing every bad value, or return the dict without the shared keys this method
    or data set does not take. ``sources`` (from ``config.layered``) says which layer set each
    key; without it (a run folder's config.yaml) every layer counts as shared."""
    method, dataset = cfg["method"], cfg["dataset"]
    from wslbench.registry import dataset_entry, method_entry

    method_cls = method_entry(method).obj  # an unknown name: its own message, with the known names
    dataset_entry(dataset)
    sch = schema(method, dataset)
    problems: list[str] = []
    out = {k: v for k, v in cfg.items() if k not in SECTIONS}
    for key in TOP_TYPES:
        if key in cfg:
            _add(problems, sch[""].options[key].problem(key, cfg[key]))
    what = {"data": f"data set {dataset} or the loader", "model": f"method {method}", "optim": "optim",
            "train": "train", "eval": "eval"}
    for section in SECTIONS:
        values = cfg.get(section)
        if values is None:
            values = {}
        if not isinstance(values, dict):
            problems.append(f"{section}: expected a mapping of options, got {values!r}")
            continue
        opts, kept = sch[section], {}
        for key, value in values.items():
            if key in opts:
                kept[key] = value
                if not (section == "train" and key == "epochs"):  # its range depends on the method: see _cross_problems
                    _add(problems, opts.options[key].problem(f"{section}.{key}", value))
            elif section in ("model", "data") and _shared(sources, f"{section}.{key}") \
                    and _declared_elsewhere(section, key, method if section == "model" else dataset):
                continue  # a shared layer's key for other methods (data sets): not passed to this one
            else:
                problems.append(opts.unknown_message(key, section, what[section]))
        if section in ("model", "data"):
            problems += opts.missing(values, section)
        out[section] = kept
    problems += _crf_problems(out.get("eval", {}), sch["eval.crf_params"])
    problems += _cross_problems(out, method, method_cls)
    raise_problems(problems)
    return out


def _crf_problems(ev: dict, opts: OptionSet) -> list[str]:
    params = ev.get("crf_params")
    if not isinstance(params, dict):
        return []
    problems = opts.problems(params, "eval.crf_params")
    return problems + [opts.unknown_message(k, "eval.crf_params", "wslbench.crf.refine") for k in params if k not in opts]


def _add(problems: list[str], message: str | None) -> None:
    if message:
        problems.append(message)


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _cross_problems(cfg: dict, method: str, method_cls) -> list[str]:
    """Rules that involve two keys or the method's nature."""
    problems = []
    train, optim = cfg.get("train", {}), cfg.get("optim", {})
    trainable = getattr(method_cls, "trainable", True)
    epochs = train.get("epochs", TrainConfig.epochs)
    if trainable and not (_is_int(epochs) and epochs >= 1):
        problems.append(f"train.epochs: expected an integer >= 1 ({method} is trained), got {epochs!r}")
    elif not trainable:
        _add(problems, _static()["train"].options["epochs"].problem("train.epochs", epochs))
    momentum, nesterov = optim.get("momentum", OptimConfig.momentum), optim.get("nesterov", OptimConfig.nesterov)
    if nesterov is True and momentum == 0:
        problems.append("optim.nesterov: true needs optim.momentum > 0 (Nesterov momentum), got momentum 0")
    device = train.get("device", TrainConfig.device)
    if isinstance(device, str) and device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            problems.append(f"train.device: {device!r} was asked for but no CUDA device is available (use cpu or auto)")
    return problems


def check_maps_config(cfg: dict, sources: dict[str, Source] | None = None) -> dict:
    """``eval --maps``: the sections a scoring reads (top-level keys, ``data``, ``eval``) checked as
    ``run`` checks them. The maps name no registered method, so the check stands in one that
    trains nothing; ``model``, ``optim`` and ``train`` are recorded as given, unread."""
    checked = check_config({**cfg, "method": "all-ones", "model": {}, "optim": {}, "train": {}}, sources)
    return {**cfg, **{k: v for k, v in checked.items() if k not in ("method", "model", "optim", "train")}}


def check_eval_overrides(overrides: dict) -> dict:
    """``eval RUN --set``: only ``eval.*`` settings change how a finished run is evaluated (the rest
    is what the run was); each value is checked against its declared type and range."""
    static = _static()
    problems = []
    for key, value in overrides.items():
        parts = key.split(".")
        if parts[0] != "eval" or len(parts) < 2:
            problems.append(f"{key}: eval RUN_DIR changes only eval.* settings (and --data-root); the rest is the "
                            "run's record (train another run to change it)")
        elif parts[1] == "crf_params" and len(parts) == 3:
            crf = static["eval.crf_params"]
            _add(problems, crf.options[parts[2]].problem(key, value) if parts[2] in crf
                 else crf.unknown_message(parts[2], "eval.crf_params", "wslbench.crf.refine"))
        elif parts[1] == "protocol" and len(parts) >= 2:
            continue  # wslbench.protocols checks it with its own messages
        elif len(parts) != 2 or parts[1] not in static["eval"]:
            problems.append(static["eval"].unknown_message(".".join(parts[1:]), "eval", "eval"))
        elif parts[1] in ("from_run", "maps", "classes"):
            problems.append(f"{key}: recorded by the command that made the run, not an evaluation setting")
        else:
            _add(problems, static["eval"].options[parts[1]].problem(key, value))
    raise_problems(problems)
    return overrides


def validate(cfg: RunConfig) -> RunConfig:
    """The same checks on a built RunConfig (the trainer runs them before building anything)."""
    return _build(check_config(cfg.to_dict()))


def _plain(v):
    """A default as YAML can write it (tuples as lists); None for what YAML cannot hold."""
    if isinstance(v, (tuple, list)):
        items = [_plain(x) for x in v]
        return None if any(x is None and y is not None for x, y in zip(items, v)) else items
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return None


def with_declared_defaults(cfg: RunConfig) -> RunConfig:
    """``cfg`` with every option of its method and data set that the config layers leave out set
    to the value the code declares (its signature default), and ``data.mean``/``data.std`` to
    what the run normalises with: what config.yaml records, so that a run rebuilt from its record
    uses the values it ran with even after a default changes."""
    from wslbench.methods.backbone import normalization_for

    from wslbench.registry import dataset_entry, method_entry

    d = cfg.to_dict()
    for section, opts, obj in (("model", method_options(cfg.method), method_entry(cfg.method).obj),
                               ("data", dataset_options(cfg.dataset), dataset_entry(cfg.dataset).obj)):
        # options a class reads from its **kwargs (``extra_options``) declare no default of their own
        undeclared = {k for c in getattr(obj, "__mro__", ()) for k in (c.__dict__.get("extra_options") or {})}
        for name, opt in opts.options.items():
            if name in d[section] or opt.default is NO_DEFAULT or name in ("mean", "std") or name in undeclared:
                continue
            value = _plain(opt.default)
            if value is not None or opt.default is None:
                d[section][name] = value
    mean, std = normalization_for(cfg)
    d["data"]["mean"], d["data"]["std"] = list(mean), list(std)
    return _build(d)


# --- `wslbench config show` -----------------------------------------------------------------------
def _shown_value(v) -> str:
    import yaml

    if isinstance(v, tuple):
        v = list(v)
    if v is NO_DEFAULT:
        return "(required)"
    text = yaml.safe_dump(v, default_flow_style=True, width=10_000).strip()
    return text[:-4].strip() if text.endswith("\n...") else text


def explain(method: str, dataset: str, **layers) -> list[tuple[str, str, str, str]]:
    """(key, value, allowed, source) of every key the run reads, including declared options left
    at their default; ``layers`` are ``config.layered``'s keyword arguments."""
    raw, sources = layered(method, dataset, **layers)
    checked = check_config(raw, sources)
    sch = schema(method, dataset)
    rows = []
    for key in TOP_TYPES:
        rows.append((key, _shown_value(checked.get(key)), sch[""].options[key].allowed,
                     sources.get(key, DEFAULT_SOURCE).label))
    for section in SECTIONS:
        values, opts = checked.get(section, {}), sch[section]
        for key in [*opts.options, *[k for k in values if k not in opts]]:
            name = f"{section}.{key}"
            opt = opts.options.get(key, Option(key))
            if key in values:
                source = sources.get(name, DEFAULT_SOURCE).label
                value = values[key]
            else:
                source, value = f"default ({opt.owner})", opt.default
            if section == "eval" and key == "crf_params" and isinstance(value, dict):
                crf = sch["eval.crf_params"]
                for ck, copt in crf.options.items():
                    cname = f"{name}.{ck}"
                    cv = value.get(ck, copt.default)
                    rows.append((cname, _shown_value(cv), copt.allowed,
                                 sources.get(cname, DEFAULT_SOURCE).label if ck in value else f"default ({copt.owner})"))
                continue
            rows.append((name, _shown_value(value), opt.allowed, source))
        for key in (raw.get(section) or {}):
            if key not in values:
                rows.append((f"{section}.{key}", _shown_value(raw[section][key]),
                             f"ignored: not an option of {method if section == 'model' else dataset}",
                             sources.get(f"{section}.{key}", DEFAULT_SOURCE).label))
    return rows


__all__ = ["check_config", "check_maps_config", "check_eval_overrides", "validate", "schema", "method_options", "dataset_options", "explain"]

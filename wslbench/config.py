"""Configuration: YAML layers + command-line overrides -> one frozen RunConfig.

Resolution order, later wins:
  1. built-in defaults (``DEFAULTS`` below)
  2. ``experiments/<dataset>/dataset.yaml``   (data-set-wide: transforms, CRF parameters)
  3. ``experiments/<dataset>/<method>.yaml``  (the paper's setup of that method on that data set)
  4. ``--config FILE`` (any number, in order)
  5. ``--set key=value`` overrides (dotted keys; a bare key is looked up in the sections)
  6. explicit CLI options (``--seed``, ``--epochs``, ``--device``, ``--data-root``)
"""
from __future__ import annotations

import copy
import difflib
import functools
import os
import re
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

import yaml

from wslbench.errors import ConfigError
from wslbench.options import Field, NonNegativeFloat, NonNegativeInt, PositiveInt, UnitInterval

#: train.device: what resolve_device understands
Device = Annotated[str, Field(pattern=r"^(auto|cpu|mps|cuda(:[0-9]+)?)$", description="auto, cpu, cuda or cuda:N")]

SECTIONS = ("data", "model", "optim", "train", "eval")


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads 1e-3 (no dot) as a float, as YAML 1.2 and every user expects."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+|[0-9][0-9_]*\.[0-9_]*|\.[0-9_]+|\.inf|\.nan)$", re.X),
    list("-+0123456789."),
)


#: nodes a YAML text may hold once its aliases are expanded: a real config holds a few hundred, an
#: alias chain ("billion laughs") billions, which no message or deep copy should try to spell out
MAX_YAML_NODES = 100_000


def yaml_load(text: str, source: str = "YAML"):
    """Parse with :class:`_Loader`; a document whose aliases expand beyond MAX_YAML_NODES nodes,
    or nested too deeply to parse, is a ConfigError naming ``source``."""
    try:
        data = yaml.load(text, Loader=_Loader)
        _expanded_size(data, {}, set())
    except RecursionError as exc:
        raise ConfigError(f"{source}: nested too deeply (or an alias refers to itself)") from exc
    except _TooLarge as exc:
        raise ConfigError(f"{source}: its aliases expand to more than {MAX_YAML_NODES} values (refused: "
                          "a config never needs that many)") from exc
    return data


class _TooLarge(Exception):
    pass


def _expanded_size(obj, memo: dict, active: set) -> int:
    """Node count with aliases expanded, each shared node counted once per use (memoised, so a
    chain of aliases is measured without expanding it)."""
    if not isinstance(obj, (dict, list)):
        return 1
    key = id(obj)
    if key in memo:
        return memo[key]
    if key in active:  # a recursive alias: infinite once expanded
        raise _TooLarge
    active.add(key)
    items = [*obj.keys(), *obj.values()] if isinstance(obj, dict) else obj
    n = 1
    for item in items:
        n += _expanded_size(item, memo, active)
        if n > MAX_YAML_NODES:
            raise _TooLarge
    active.discard(key)
    memo[key] = n
    return n


@dataclass(frozen=True)
class OptimConfig:
    """SGD with momentum/Nesterov and step decay of the learning rate with a floor."""

    lr: NonNegativeFloat = 0.01  # 0 freezes the weights (a test device); the floor below is then 0
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    nesterov: bool = True  # needs momentum > 0 (checked in validate)
    weight_decay: NonNegativeFloat = 1e-4
    step_size: PositiveInt = 40  # epochs between two decays
    gamma: Annotated[float, Field(gt=0, le=1)] = 0.1  # decay factor
    min_lr: NonNegativeFloat = 1e-7  # floor of the learning rate


@dataclass(frozen=True)
class TrainConfig:
    epochs: Annotated[int, Field(ge=0, description="an integer >= 1 (>= 0 for an untrained method)")] = 10
    patience: PositiveInt | None = None  # early stopping: epochs without improvement; None = never stop early
    # a non-finite training loss: stop (the run fails; last.pt keeps the last good epoch) or evaluate
    # (training ends there and the checkpoint the selection rule kept is scored, as if the
    # diverged epochs had run on and never been selected; eval.json says where it diverged)
    on_nonfinite: Literal["stop", "evaluate"] = "stop"
    device: Device = "auto"  # auto | cpu | cuda | cuda:N
    deterministic: bool = False  # torch.use_deterministic_algorithms(True)
    # auto | true | false (wslbench.train.fastpath; env.json records the effective choice and why).
    # amp: bf16 autocast; auto = on CUDA, and on a CPU with native bf16 only if CPU_AUTO_BF16.
    amp: bool | Literal["auto"] = "auto"
    channels_last: bool | Literal["auto"] = "auto"  # auto = on CUDA and on CPU (measured faster there)
    # glibc malloc keeps freed blocks up to 1 GiB for reuse instead of unmapping them; auto = on a
    # CPU device. Speed and memory held only, never results.
    keep_freed_memory: bool | Literal["auto"] = "auto"
    num_threads: PositiveInt | None = None  # torch.set_num_threads for the run; None: torch's default (all cores)
    sync_batchnorm: bool = False  # under torchrun on CUDA
    progress: bool = True  # tqdm bar per epoch
    max_steps_per_epoch: PositiveInt | None = None  # cap for smoke tests


def run_name(method: str, tag: str | None) -> str:
    """A run's folder name and a sweep's row: ``<method>`` or ``<method>+<tag>`` for a tagged variant."""
    return f"{method}+{tag}" if tag else method


@dataclass(frozen=True)
class RunConfig:
    method: str
    dataset: str
    seed: int = 0
    tag: str | None = None  # distinguishes ablations of one method in the run folder name
    experiment: str | None = None  # the experiment the run belongs to (wslbench.runs): a folder level above <dataset>
    data: dict = field(default_factory=dict)  # loader keys + keyword arguments of the data set
    model: dict = field(default_factory=dict)  # keyword arguments of the method
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def run_name(self) -> str:
        return run_name(self.method, self.tag)

    def run_dir(self, out: str | Path = "results/runs") -> Path:
        """``<out>/[<experiment>/]<dataset>/<method>[+tag]/seed<k>``: an experiment is one more folder level."""
        base = Path(out) / self.experiment if self.experiment else Path(out)
        return base / self.dataset / self.run_name / f"seed{self.seed}"


DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "tag": None,
    "experiment": None,
    "data": {
        "root": None,  # default: $WSLBENCH_DATA/<dataset>
        "batch_size": 16,
        "eval_batch_size": 1,  # full images of different sizes
        # "auto": only cores the training leaves free (none on a 2-core CPU), wslbench.train.workers
        "num_workers": "auto",
        "persistent_workers": True,  # workers (if any) stay alive across epochs: no fork per epoch
    },
    "model": {},
    "optim": asdict(OptimConfig()),
    "train": asdict(TrainConfig()),
    "eval": {
        "threshold": 0.5, "crf": False, "crf_params": {}, "save_masks": True,
        "pad_multiple": 0,  # reflect-pad test images to a multiple of this (0 = off; paper configs 32, authors loader.py)
        # the validation images too (checkpoint selection, a pixel budget's tau, stored validation maps),
        # as the authors pad both; false: the geometry of records made before 2026-12-07
        "pad_validation": True,
        "save_maps": False,  # also write maps/<id>.npy (float32 in [0, 1]; `wslbench eval --maps` reads them)
        # maps-test.npz / maps-val.npz: every image's native map + its recipe, so that `wslbench rescore`
        # recomputes every score without a checkpoint (wslbench.stored_maps)
        "store_maps": True,
        "curve_interval": 0.001,  # threshold grid of PxAP and F1(t): wsolevaluation's cam_curve_interval
        # checkpoint and threshold selection (wslbench.protocols); ties: later = the authors'
        # train_deepmil.py keeps the latest epoch with the lowest validation error (<=)
        "protocol": {"name": "paper", "ties": "later"},
    },
}

#: data keys consumed by the loader, not passed to the data set
LOADER_KEYS = ("root", "batch_size", "eval_batch_size", "num_workers", "persistent_workers")

#: types and ranges of the keys that are neither optim/train fields nor a plugin's options
#: (wslbench.validation checks them; an ``eval`` key of DEFAULTS missing here accepts any value)
TOP_TYPES: dict[str, Any] = {
    "seed": NonNegativeInt,
    "tag": Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$", description="a name of letters, digits, '_', '.', '-'")] | None,
    "experiment": Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)*$",
                                       description="an experiment name of folder name(s): letters, digits, '_', '.', '-', '/' between levels")] | None,
}
LOADER_TYPES: dict[str, Any] = {
    "root": Annotated[str, Field(min_length=1)] | None,
    "batch_size": PositiveInt,
    "eval_batch_size": PositiveInt,
    "num_workers": NonNegativeInt | Literal["auto"],
    "persistent_workers": bool,
}
EVAL_TYPES: dict[str, Any] = {
    "threshold": UnitInterval,  # maps are in [0, 1]; a pixel is foreground when its map value >= threshold
    "crf": bool,
    "crf_params": dict,  # keyword arguments of wslbench.crf.refine, each checked against its annotation
    "save_masks": bool,
    "figures": bool,
    "save_maps": bool,
    "store_maps": bool,
    "curve_interval": Annotated[float, Field(gt=0, le=0.5)],
    "pad_multiple": NonNegativeInt,  # 0 = off; 32 in the paper configs (authors' loader.py force_div_32)
    "pad_validation": bool,
    "protocol": dict | str,  # checked by wslbench.protocols (its own one-line messages)
    "from_run": str | None,  # `run --from RUN_DIR`: the finished run whose classifier a post-hoc method reads
    "maps": str | None,  # `eval --maps DIR`: where the scored maps came from (recorded, not read again)
    "classes": str | None,  # `eval --maps ... --classes CSV`
}


EXPERIMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)*")


def check_experiment(name) -> str | None:
    """An experiment name becomes folder(s) under the output root: letters, digits, ``_.-``,
    ``/`` between levels (``ablations/erasing``); None means no experiment level."""
    if name is None:
        return None
    if not isinstance(name, str) or not EXPERIMENT_NAME.fullmatch(name):
        raise ConfigError(f"experiment name {name!r}: use letters, digits, '_', '.', '-' (and '/' between levels), "
                          "e.g. cpu_scratch or glas_lite0")
    return name


def dataset_options(data: dict, drop: tuple[str, ...] = ()) -> dict:
    """The ``data:`` keys that are data-set keyword arguments (not the loader's), minus ``drop``."""
    return {k: v for k, v in data.items() if k not in LOADER_KEYS and k not in drop}


def data_root(dataset: str, root=None):
    """The data folder of ``dataset``: ``root`` when given, else $WSLBENCH_DATA/<dataset> when
    that is set, else None (the data set's own error then says how to get the data)."""
    if root is None and os.environ.get("WSLBENCH_DATA"):
        root = str(Path(os.environ["WSLBENCH_DATA"]) / dataset)
    return root


def experiments_dir() -> Path:
    """Where the YAML setups live: $WSLBENCH_EXPERIMENTS, the repository's experiments/, or ./experiments."""
    env = os.environ.get("WSLBENCH_EXPERIMENTS")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parent.parent / "experiments"
    if repo.is_dir():
        return repo
    return Path.cwd() / "experiments"


_WARNED: set[str] = set()


def _warn_without_experiments(folder: Path) -> None:
    """Say once (stderr) that no experiments/ folder was found: the data sets' and methods' paper
    settings (experiments/<dataset>/*.yaml) are then not applied, and a run silently uses the
    built-in defaults (e.g. resnet18 without pretraining) unless told."""
    if folder.is_dir() or str(folder) in _WARNED:
        return
    _WARNED.add(str(folder))
    print(f"warning: no experiments folder at {folder}: the paper's per-data-set and per-method settings "
          "(experiments/<dataset>/*.yaml) are not applied, only the built-in defaults and your --config/--set; "
          "run from the repository, or set WSLBENCH_EXPERIMENTS to its experiments/ folder", file=sys.stderr)


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    st = path.stat()
    return copy.deepcopy(_parse_yaml_file(str(path.resolve()), st.st_mtime_ns, st.st_size))


@functools.lru_cache(maxsize=256)
def _parse_yaml_file(path: str, mtime_ns: int, size: int) -> dict:
    """Parsed once per file version: a sweep resolves the same few files for every job."""
    try:
        data = yaml_load(Path(path).read_text(encoding="utf-8"), source=path) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def parse_override(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like key=value (e.g. optim.lr=0.01)")
    key, raw = item.split("=", 1)
    try:
        value = yaml_load(raw) if raw != "" else None
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def apply_override(cfg: dict, key: str, value: Any) -> str:
    """Set a dotted key (returned). A bare key that is not top-level is looked up in the sections."""
    parts = key.split(".")
    if len(parts) == 1 and key not in cfg:
        owners = [s for s in SECTIONS if isinstance(cfg.get(s), dict) and key in cfg[s]]
        if len(owners) == 1:
            parts = [owners[0], key]
        elif len(owners) > 1:
            raise ConfigError(f"override {key!r} is ambiguous: it exists in {', '.join(owners)}; write e.g. {owners[0]}.{key}")
        else:
            known = sorted({*cfg} | {f"{s}.{k}" for s in SECTIONS for k in cfg.get(s, {})})
            close = difflib.get_close_matches(key, known + [k.split('.')[-1] for k in known], n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"unknown config key {key!r}.{hint} Use a dotted key (model.{key}=...) to add a new method option."
            )
    node = cfg
    for p in parts[:-1]:
        if not isinstance(node.setdefault(p, {}), dict):
            raise ConfigError(f"override {key!r}: {p!r} is not a section")
        node = node[p]
    node[parts[-1]] = value
    return ".".join(parts)


def _typed(cls, section: dict, name: str):
    names = {f.name for f in fields(cls)}
    unknown = set(section) - names
    if unknown:
        bad = sorted(unknown)[0]
        close = difflib.get_close_matches(bad, sorted(names), n=1)
        hint = f" Did you mean {name}.{close[0]}?" if close else ""
        raise ConfigError(f"unknown key {name}.{bad}.{hint} Known: {', '.join(sorted(names))}")
    return cls(**section)


class Source(NamedTuple):
    """Which layer set a key; ``shared`` layers (a data set's dataset.yaml, a sweep's grid-wide
    ``set``) serve every method, so a model key there that this method lacks is not an error."""

    label: str
    shared: bool = False


DEFAULT_SOURCE = Source("default")


def _record(sources: dict, layer: dict, source: Source, prefix: str = "") -> None:
    for k, v in layer.items():
        key = f"{prefix}{k}"
        sources[key] = source
        if isinstance(v, dict):
            _record(sources, v, source, key + ".")


def layered(
    method: str,
    dataset: str,
    config_files: list[str | Path] = (),
    overrides: list[str] = (),
    cli: dict | None = None,
    use_experiments: bool = True,
    shared_overrides: list[str] = (),
) -> tuple[dict, dict[str, Source]]:
    """The merged configuration as a plain dict, and the layer that set each dotted key."""
    cfg = copy.deepcopy(DEFAULTS)
    sources: dict[str, Source] = {}
    layers = []
    if use_experiments:
        _warn_without_experiments(experiments_dir())
        exp = experiments_dir() / dataset
        for path, shared in ((exp / "dataset.yaml", True), (exp / f"{method}.yaml", False)):
            if path.is_file():
                layers.append((load_yaml(path), Source(_shown(path), shared)))
    for path in config_files:
        layers.append((load_yaml(path), Source(f"--config {path}")))
    for layer, source in layers:
        _check_sections(layer, source.label)
        cfg = deep_merge(cfg, layer)
        _record(sources, layer, source)
    for items, source in ((shared_overrides, Source("sweep set (every method)", True)), (overrides, Source("--set"))):
        for item in items:
            key, value = parse_override(item)
            key = apply_override(cfg, key, value)
            _record(sources, {key: value}, source)
    for key, value in (cli or {}).items():
        if value is not None:
            key = apply_override(cfg, key, value)
            _record(sources, {key: value}, Source("command line"))
    cfg["method"], cfg["dataset"] = method, dataset
    extra = set(cfg) - {"method", "dataset", "seed", "tag", "experiment", *SECTIONS}
    if extra:
        raise ConfigError(f"unknown top-level config key(s): {', '.join(sorted(extra))}")
    return cfg, sources


def _check_sections(layer: dict, label: str) -> None:
    """Each section of a YAML layer is a mapping (an empty one may be left blank): ``data: 5``
    is refused as such, not later as a missing data option."""
    for key in SECTIONS:
        if key in layer and layer[key] is None:
            layer[key] = {}
        elif key in layer and not isinstance(layer[key], dict):
            raise ConfigError(f"{label}: '{key}' must be a mapping of {key} options (indented key: value lines), "
                              f"got {repr(layer[key])[:60]}")


def _shown(path: Path) -> str:
    """A layer file relative to the working folder when it lies below it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def resolve(
    method: str,
    dataset: str,
    config_files: list[str | Path] = (),
    overrides: list[str] = (),
    cli: dict | None = None,
    use_experiments: bool = True,
    shared_overrides: list[str] = (),
    check: bool = True,
) -> RunConfig:
    """Build the RunConfig for (method, dataset) with the layering described in the module doc,
    then (``check``) validate every value against its declared type and range (:func:`validate`)."""
    cfg, sources = layered(method, dataset, config_files, overrides, cli, use_experiments, shared_overrides)
    if check:
        from wslbench.validation import check_config

        cfg = check_config(cfg, sources)
    return _build(cfg)


def _build(cfg: dict) -> RunConfig:
    return RunConfig(
        method=cfg["method"],
        dataset=cfg["dataset"],
        seed=int(cfg.get("seed", 0)),
        tag=cfg.get("tag"),
        experiment=check_experiment(cfg.get("experiment")),
        data=dict(cfg.get("data", {})),
        model=dict(cfg.get("model", {})),
        optim=_typed(OptimConfig, cfg.get("optim", {}), "optim"),
        train=_typed(TrainConfig, cfg.get("train", {}), "train"),
        eval=dict(cfg.get("eval", {})),
    )


def from_dict(d: dict) -> RunConfig:
    """Inverse of RunConfig.to_dict (reads a run directory's config.yaml)."""
    return _build(d)

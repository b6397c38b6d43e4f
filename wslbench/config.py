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
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from wslbench.errors import ConfigError

SECTIONS = ("data", "model", "optim", "train", "eval")


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads 1e-3 (no dot) as a float, as YAML 1.2 and every user expects."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+|[0-9][0-9_]*\.[0-9_]*|\.[0-9_]+|\.inf|\.nan)$", re.X),
    list("-+0123456789."),
)


def yaml_load(text: str):
    return yaml.load(text, Loader=_Loader)


@dataclass(frozen=True)
class OptimConfig:
    """SGD with momentum/Nesterov and step decay of the learning rate with a floor."""

    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    step_size: int = 40  # epochs between two decays
    gamma: float = 0.1  # decay factor
    min_lr: float = 1e-7  # floor of the learning rate


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    patience: int | None = None  # early stopping: epochs without improvement; None = never stop early
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    deterministic: bool = False  # torch.use_deterministic_algorithms(True)
    # auto | true | false (wslbench.train.fastpath; env.json records the effective choice and why).
    # amp: bf16 autocast; auto = on CUDA, and on a CPU with native bf16 only if CPU_AUTO_BF16.
    amp: bool | str = "auto"
    channels_last: bool | str = "auto"  # auto = on CUDA and on CPU (measured faster there)
    num_threads: int | None = None  # torch.set_num_threads for the run; None: torch's default (all cores)
    sync_batchnorm: bool = False  # under torchrun on CUDA
    progress: bool = True  # tqdm bar per epoch
    max_steps_per_epoch: int | None = None  # cap for smoke tests


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
        return f"{self.method}+{self.tag}" if self.tag else self.method

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
        "num_workers": 0,
    },
    "model": {},
    "optim": asdict(OptimConfig()),
    "train": asdict(TrainConfig()),
    "eval": {
        "threshold": 0.5, "crf": False, "crf_params": {}, "save_masks": True,
        "save_maps": False,  # also write maps/<id>.npy (float32 in [0, 1]; `wslbench eval --maps` reads them)
        "curve_interval": 0.001,  # threshold grid of PxAP and F1(t): wsolevaluation's cam_curve_interval
        # checkpoint and threshold selection (wslbench.protocols); ties: later = the authors'
        # train_deepmil.py keeps the latest epoch with the lowest validation error (<=)
        "protocol": {"name": "paper", "ties": "later"},
    },
}

#: data keys consumed by the loader, not passed to the data set
LOADER_KEYS = ("root", "batch_size", "eval_batch_size", "num_workers")


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


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
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


def apply_override(cfg: dict, key: str, value: Any) -> None:
    """Set a dotted key. A bare key that is not top-level is looked up in the sections."""
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


def _typed(cls, section: dict, name: str):
    names = {f.name for f in fields(cls)}
    unknown = set(section) - names
    if unknown:
        bad = sorted(unknown)[0]
        close = difflib.get_close_matches(bad, sorted(names), n=1)
        hint = f" Did you mean {name}.{close[0]}?" if close else ""
        raise ConfigError(f"unknown key {name}.{bad}.{hint} Known: {', '.join(sorted(names))}")
    return cls(**section)


def resolve(
    method: str,
    dataset: str,
    config_files: list[str | Path] = (),
    overrides: list[str] = (),
    cli: dict | None = None,
    use_experiments: bool = True,
) -> RunConfig:
    """Build the RunConfig for (method, dataset) with the layering described in the module doc."""
    cfg = copy.deepcopy(DEFAULTS)
    sources = []
    if use_experiments:
        exp = experiments_dir() / dataset
        for path in (exp / "dataset.yaml", exp / f"{method}.yaml"):
            if path.is_file():
                cfg = deep_merge(cfg, load_yaml(path))
                sources.append(str(path))
    for path in config_files:
        cfg = deep_merge(cfg, load_yaml(path))
        sources.append(str(path))
    for item in overrides:
        apply_override(cfg, *parse_override(item))
    for key, value in (cli or {}).items():
        if value is not None:
            apply_override(cfg, key, value)
    cfg["method"], cfg["dataset"] = method, dataset
    extra = set(cfg) - {"method", "dataset", "seed", "tag", "experiment", *SECTIONS}
    if extra:
        raise ConfigError(f"unknown top-level config key(s): {', '.join(sorted(extra))}")
    return RunConfig(
        method=method,
        dataset=dataset,
        seed=int(cfg["seed"]),
        tag=cfg.get("tag"),
        experiment=check_experiment(cfg.get("experiment")),
        data=dict(cfg["data"]),
        model=dict(cfg["model"]),
        optim=_typed(OptimConfig, cfg["optim"], "optim"),
        train=_typed(TrainConfig, cfg["train"], "train"),
        eval=dict(cfg["eval"]),
    )


def from_dict(d: dict) -> RunConfig:
    """Inverse of RunConfig.to_dict (reads a run directory's config.yaml)."""
    return RunConfig(
        method=d["method"],
        dataset=d["dataset"],
        seed=int(d.get("seed", 0)),
        tag=d.get("tag"),
        experiment=d.get("experiment"),
        data=dict(d.get("data", {})),
        model=dict(d.get("model", {})),
        optim=_typed(OptimConfig, d.get("optim", {}), "optim"),
        train=_typed(TrainConfig, d.get("train", {}), "train"),
        eval=dict(d.get("eval", {})),
    )

"""Finding run folders under a root, whatever their depth, and the experiment each belongs to.

A run folder is recognised by its own files (``config.yaml`` and ``status.json``), not by where
it sits, so ``tables``, ``figures`` and ``sweep`` find every run under the root they are given.
A run's experiment is its config's ``experiment`` key (a sweep file's ``experiment:`` sets it);
a run without one (made before experiments existed, or by ``wslbench run`` without
``--set experiment=NAME``) belongs to the folder that holds its ``<dataset>/<method>[+tag]/seed<k>``,
named by its path below the root (``<root>/cpu_scratch/glas/cam-avg/seed0`` -> ``cpu_scratch``),
or by the root's own name when that folder is the root. Within an experiment a table cell is
(data set, variant, seed): two finished runs claiming one cell are an error, never a silent pick.
"""
from __future__ import annotations

import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from wslbench.config import run_name
from wslbench.errors import DataError
from wslbench.io import SCORE_KEYS, finished_result

RUN_FILES = ("config.yaml", "status.json")
LAYOUT = ("run folders holding config.yaml and status.json, at any depth; written by `wslbench run --out ROOT` "
          "as ROOT/<dataset>/<method>[+tag]/seed<k>/ and by `wslbench sweep` as "
          "ROOT/<experiment>/<dataset>/<method>[+tag]/seed<k>/")
NOERASE = "minmax-noerase"  # the min-max variant without recursive erasing (model.erase_depth = 0)

#: settings that tell experiments apart; runs of one cell (its seeds) must agree on them
DISTINGUISHING = {
    "trunk": ("model", "backbone"),
    "pretrained": ("model", "pretrained"),
    "scale": ("data", "scale"),
    "patch_size": ("data", "patch_size"),
    "image_size": ("data", "image_size"),
    "epochs": ("train", "epochs"),
}


@dataclass
class Run:
    """One run folder as found on disk."""

    path: Path
    config: dict
    experiment: str
    state: str  # status.json's state; "finished" only when eval.json is readable too
    result: dict | None = None  # eval.json of a finished run

    @property
    def dataset(self) -> str:
        return self.config.get("dataset", "?")

    @property
    def method(self) -> str:
        return self.config.get("method", "?")

    @property
    def seed(self) -> int:
        return int(self.config.get("seed", 0))

    @property
    def variant(self) -> str:
        return variant_of(self.config)

    @property
    def trained(self) -> bool:
        """False for methods with nothing to train (All-ones): their epochs say nothing."""
        r = self.result or {}
        return bool(r.get("selection")) or bool(r.get("epochs_run"))

    def setting(self, name: str):
        section, key = DISTINGUISHING[name]
        if name == "epochs" and not self.trained:
            return None
        return (self.config.get(section) or {}).get(key)

    @property
    def protocol(self) -> str:
        """The selection protocol its scores were made under (eval.json; 'paper' before it was recorded)."""
        return str((self.result or {}).get("protocol_label") or "paper")

    @property
    def record(self) -> Path:
        """The run folder: ``path`` itself, or for a rescore (``<run>/rescore/<name>``) the run's."""
        return self.path.parent.parent if self.path.parent.name == RESCORE_FOLDER else self.path

    def env(self) -> dict:
        try:
            return json.loads((self.record / "env.json").read_text())
        except (OSError, ValueError):
            return {}


@dataclass
class Discovery:
    """Every run folder under ``root``: the finished ones, and those skipped with the reason."""

    root: Path
    finished: list[Run] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def experiments(self) -> list[str]:
        return sorted({r.experiment for r in self.finished})

    def select(self, experiment: str | None) -> list[Run]:
        """The finished runs of one experiment (all of them for None); an unknown name is an error."""
        if experiment is None:
            return list(self.finished)
        runs = [r for r in self.finished if r.experiment == experiment]
        if not runs:
            known = ", ".join(self.experiments()) or "none"
            raise DataError(f"no finished runs of experiment {experiment!r} under {self.root}; experiments found: {known}")
        return runs

    def skipped_report(self, limit: int = 10) -> str:
        """``3 runs skipped: not finished`` and the folders, or '' when none was skipped."""
        if not self.skipped:
            return ""
        lines = []
        for reason, n in Counter(reason.split(" (")[0] for _, reason in self.skipped).items():
            lines.append(f"{n} run{'s' if n > 1 else ''} skipped: {reason}")
        lines += [f"  {path}: {reason}" for path, reason in self.skipped[:limit]]
        if len(self.skipped) > limit:
            lines.append(f"  ... and {len(self.skipped) - limit} more")
        return "\n".join(lines)


def variant_of(config: dict) -> str:
    """The table row a run fills: its method, ``<method>+<tag>`` for a tagged variant, and
    ``minmax-noerase`` for min-max with ``model.erase_depth = 0`` (Tables 3-5), tagged or not."""
    method = config.get("method", "?")
    model = config.get("model") or {}
    if method == "minmax" and int(model.get("erase_depth", 4)) == 0:
        return NOERASE
    return run_name(method, config.get("tag"))


def seed_label(run_dir: Path) -> str:
    """What a figure or report calls a run: its seed (``seed3`` -> ``3``), else its folder name."""
    name = Path(run_dir).name
    return name[4:] if name.startswith("seed") else name


def find_run_dirs(root: str | Path) -> list[Path]:
    """Every folder under ``root`` (itself included) holding config.yaml and status.json; a run
    folder's own subfolders (masks/) are not searched; hidden folders are skipped."""
    found = []
    for here, dirs, files in os.walk(root):
        if all(name in files for name in RUN_FILES):
            found.append(Path(here))
            dirs[:] = []
            continue
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
    return sorted(found)


def experiment_of(run_dir: Path, root: Path, config: dict) -> str:
    """The config's ``experiment``; else the path, below ``root``, of the folder that holds the
    run's ``<dataset>/<method>[+tag]/seed<k>`` (the run's own parent when its folders are named
    otherwise), or the root's name when that folder is the root."""
    if config.get("experiment"):
        return str(config["experiment"])
    parts = run_dir.relative_to(root).parts
    standard = len(parts) >= 3 and parts[-3] == config.get("dataset") and parts[-1].startswith("seed")
    holder = parts[:-3] if standard else parts[:-1]
    return "/".join(holder) if holder else (root.resolve().name or "runs")


#: a method, data set or tag as a run folder records it: one folder name, never a path
RECORDED_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


def read_mapping(path: Path) -> dict:
    """A run folder's JSON or YAML file as a mapping; anything else is a DataError naming the file
    (its readers index it, and a list or a bare string would end in a traceback)."""
    from wslbench.config import yaml_load
    from wslbench.errors import ConfigError

    try:
        text = path.read_text(encoding="utf-8")
        data = yaml_load(text, str(path)) if path.suffix == ".yaml" else json.loads(text)  # alias bombs refused
    except ConfigError as exc:
        raise DataError(str(exc)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot be read ({exc.__class__.__name__})") from None
    except (ValueError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise DataError(f"{path}: not valid {'YAML' if path.suffix == '.yaml' else 'JSON'} ({first})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a mapping of keys, got {type(data).__name__}")
    return data


def read_run_config(run_dir: Path) -> dict:
    """A run's config.yaml, checked where its values become folder names, table cells or numbers:
    method, data set and tag one folder name each, seed an integer, experiment a name of folders
    (config.check_experiment), sections mappings. A DataError names the file and the key."""
    from wslbench.config import SECTIONS, check_experiment
    from wslbench.errors import ConfigError

    path = Path(run_dir) / "config.yaml"
    config = read_mapping(path)
    for key in ("method", "dataset"):
        if not isinstance(config.get(key), str) or not RECORDED_NAME.fullmatch(config[key]):
            raise DataError(f"{path}: {key} must be a name (letters, digits, '_.+-'), got {config.get(key)!r}")
    if config.get("tag") is not None and (not isinstance(config["tag"], str) or not RECORDED_NAME.fullmatch(config["tag"])):
        raise DataError(f"{path}: tag must be a name (letters, digits, '_.+-'), got {config['tag']!r}")
    seed = config.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise DataError(f"{path}: seed must be an integer, got {seed!r}")
    try:
        check_experiment(config.get("experiment") or None)
    except ConfigError as exc:  # it becomes a folder under the output: never a path out of it
        raise DataError(f"{path}: {exc}") from None
    for section in SECTIONS:
        if config.get(section) is not None and not isinstance(config[section], dict):
            raise DataError(f"{path}: {section} must be a mapping of options, got {config[section]!r}")
    return config


#: eval.json entries the tables, figures and verdicts read, by the type each must have
NUMBERS = ("f1_pos", "f1_neg", "cls_error", "pxap", "auc_f1_pos", "auc_f1_neg", "crf_f1_pos", "crf_f1_neg", "crf_pxap",
           "crf_auc_f1_pos", "crf_auc_f1_neg", "threshold", "best_val", "train_time_s", "epochs_run", "n_images",
           "curve_interval")
TEXTS = ("method", "dataset", "tag", "protocol", "protocol_label", "selection", "map_normalization")
MAPPINGS = ("n_empty_both", "protocol_config")


def result_problem(result: dict, config: dict) -> str | None:
    """Why an eval.json cannot be a run's result (None: it can): a score that is not a number, a
    label that is not text, or another method, data set or seed than its config.yaml's."""
    def number(v):
        return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))

    for key in SCORE_KEYS:
        if not number(result.get(key)) or result.get(key) is None:
            return f"{key} is not a score ({result.get(key)!r})"
    for key in NUMBERS:
        if not number(result.get(key)):
            return f"{key} is not a number ({result[key]!r})"
    for key in TEXTS:
        if result.get(key) is not None and not isinstance(result[key], str):
            return f"{key} is not text ({result[key]!r})"
    for key in MAPPINGS:
        if result.get(key) is not None and not isinstance(result[key], dict):
            return f"{key} is not a mapping ({result[key]!r})"
    for key in ("method", "dataset", "seed"):
        if key in result and key in config and result[key] != config[key]:
            return f"it is a result of {key} {result[key]!r}, config.yaml says {config[key]!r}"
    return None


def check_status(run_dir: Path) -> None:
    """status.json, when the folder has one, is a mapping with a 'state' name; else whether the run
    finished is unknown, a DataError naming the file."""
    path = Path(run_dir) / "status.json"
    if path.exists() and not isinstance(read_mapping(path).get("state"), str):
        raise DataError(f"{path}: no 'state' (running, interrupted, failed or finished)")


def check_run_files(run_dir: Path) -> dict | None:
    """Every bookkeeping file the run folder has (config.yaml, status.json, eval.json) is what it
    should be, before a command reads or rewrites the folder; else a DataError naming it. Returns
    the checked config.yaml (None when there is none). run.lock is the lock's own business
    (wslbench.train.lock): a writer that wants the folder takes it."""
    run_dir = Path(run_dir)
    config = read_run_config(run_dir) if (run_dir / "config.yaml").exists() else None
    check_status(run_dir)
    if (run_dir / "eval.json").exists():
        result = read_mapping(run_dir / "eval.json")
        why = result_problem(result, config) if config is not None else None
        if why:  # an evaluation would keep its entries, a resume or rescore would report them
            raise DataError(f"{run_dir / 'eval.json'}: {why}; move it away and evaluate again "
                            f"(`wslbench eval {run_dir}`)")
    return config


def inside(out_dir: str | Path, name: str) -> Path:
    """``<out_dir>/<name>`` for an experiment's outputs, refused unless it stays inside ``out_dir``
    (a name read from a shared folder must never send a write elsewhere)."""
    out = Path(out_dir)
    target = out / name
    if Path(name).is_absolute() or ".." in Path(name).parts or not target.resolve().is_relative_to(out.resolve()):
        raise DataError(f"experiment {name!r} is not a folder name under {out}: nothing written there")
    return target


def _state(run_dir: Path) -> str:
    try:
        return str(json.loads((run_dir / "status.json").read_text()).get("state", "unknown"))
    except (OSError, ValueError, AttributeError):
        return "unreadable status.json"


def discover(root: str | Path) -> Discovery:
    """All run folders under ``root``. An error when ``root`` is missing or holds no run folder
    at all (the message names the root and the layout looked for)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"no run folder {root}: train with `wslbench run` or `wslbench sweep` first, or pass "
                        f"--runs; looked for {LAYOUT}")
    dirs = find_run_dirs(root)
    if not dirs:
        raise DataError(f"no runs under {root}: looked for {LAYOUT}")
    found = Discovery(root)
    for run_dir in dirs:
        try:
            config = read_run_config(run_dir)
        except DataError as exc:  # skipped with the reason: never a name read from disk used as a path
            found.skipped.append((run_dir, f"bad config.yaml ({str(exc).removeprefix(f'{run_dir}/config.yaml: ')})"))
            continue
        result = finished_result(run_dir)
        why = result_problem(result, config) if result is not None else None
        if why:
            found.skipped.append((run_dir, f"finished but eval.json unusable ({why})"))
            continue
        state = _state(run_dir)
        run = Run(run_dir, config, experiment_of(run_dir, root, config), "finished" if result else state, result)
        if result is None:
            why = state if state != "finished" else "finished but eval.json unreadable or without scores"
            found.skipped.append((run_dir, f"not finished ({why})"))
        else:
            found.finished.append(run)
            found.finished += rescored_under_other_protocols(run)
    return found


#: where ``wslbench rescore`` puts results under other settings (wslbench.rescore)
RESCORE_FOLDER = "rescore"


def rescored_under_other_protocols(run: Run) -> list[Run]:
    """The run's rescores under another selection protocol (``<run>/rescore/<name>/eval.json``),
    each as a run of its own that tables show in that protocol's column group. Rescores under the
    run's own protocol (another threshold, a CRF pass, lossy maps) are not table rows."""
    out = []
    for ev in sorted((run.path / RESCORE_FOLDER).glob("*/eval.json")):
        try:
            result = json.loads(ev.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(result, dict) or result_problem(result, run.config):
            continue
        other = Run(ev.parent, run.config, run.experiment, "finished", result)
        if other.protocol != run.protocol:
            out.append(other)
    return out


def check_cells(runs: list[Run]) -> None:
    """Two runs in one cell (experiment, data set, variant, seed), or seeds of one (experiment,
    data set, variant) that differ in a distinguishing setting, are an error naming both folders."""
    from wslbench.errors import WslbenchError

    cells: dict[tuple, Run] = {}
    rows: dict[tuple, Run] = {}
    for run in runs:
        key = (run.experiment, run.dataset, run.variant, run.seed, run.protocol)
        if key in cells:
            raise WslbenchError(
                f"two runs claim one cell (experiment {run.experiment}, {run.dataset}, {run.variant}, seed {run.seed}): "
                f"{cells[key].path} and {run.path}; move one away or give it another experiment "
                "(`experiment:` in its sweep file, or --set experiment=NAME)")
        cells[key] = run
        first = rows.setdefault(key[:3], run)
        for name in DISTINGUISHING:
            a, b = first.setting(name), run.setting(name)
            if a != b and first.trained == run.trained:
                raise WslbenchError(
                    f"seeds of one row (experiment {run.experiment}, {run.dataset}, {run.variant}) differ in {name} "
                    f"({a} vs {b}): {first.path} and {run.path}; give them different experiments")

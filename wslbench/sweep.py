"""Sweeps: a YAML grid (methods x data sets x seeds, plus tagged variants) expanded into runs.

    experiment: glas_lite0              # optional; recorded in every run's config.yaml, and its
                                        # runs go to <out>/<experiment>/<dataset>/<method>[+tag]/seed<k>
    methods: [cam-avg, minmax]          # registered names
    datasets: [glas, synthetic]
    seeds: [0, 1, 2]
    out: results/runs                   # optional; the CLI's --out wins
    set: [train.progress=false]         # overrides for every run
    datasets_set: {glas: [data.root=../shared/data/glas]}   # per data set
    methods_set: {minmax: [model.backbone=test_resnet]}      # per method
    variants:                           # extra runs: a method with a tag and overrides
      - {method: minmax, tag: noerase, set: [model.erase_depth=0]}
    extends: glas_lite0.yaml            # optional: start from another sweep file (path relative to
                                        # this one); keys given here replace the base's, except
                                        # ``set``, which is appended (later overrides win); the
                                        # ``experiment`` must differ, or the base's runs would count
    order: seeds                        # optional: seed-major (every method's seed 0 first), so a
                                        # sweep stopped part-way is already a whole one-seed
                                        # comparison; default ``methods`` (all seeds of a method)
    posthoc:                            # optional: post-hoc map methods that train nothing; each
      - from: gradcam                   # evaluates the finished classifier of this row (same data
        methods: [layercam]             # set and seed), as ``wslbench run --from`` does, after
      - {from: gradcam, methods: [scorecam], at: end}   # the trained rows (of its seed with
                                        # ``order: seeds``), or, ``at: end``, after the whole grid

Finished runs are skipped (also when found elsewhere under the output root, at any depth, in
the same cell: experiment, data set, variant, seed), interrupted ones resumed; ``--shard i/n`` keeps the grid entries
whose index is i modulo n, so n machines (or a SLURM array) split the grid without talking.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from wslbench.config import check_experiment, load_yaml, resolve, run_name
from wslbench.errors import ConfigError, WslbenchError

KEYS = {"extends", "experiment", "methods", "datasets", "seeds", "out", "set", "datasets_set", "methods_set", "variants",
        "description", "order", "posthoc"}
ORDERS = ("methods", "seeds")


@dataclass(frozen=True)
class Job:
    method: str
    dataset: str
    seed: int
    tag: str | None = None
    overrides: tuple[str, ...] = field(default=())
    experiment: str | None = None
    n_shared: int = 0  # the first n_shared overrides are grid-wide (set, datasets_set): every method gets them
    source: str | None = None  # post-hoc job: the row (method[+tag]) whose finished classifier it evaluates

    @property
    def row(self) -> str:
        return run_name(self.method, self.tag)

    @property
    def name(self) -> str:
        cell = f"{self.dataset}/{self.row}/seed{self.seed}"
        return f"{self.experiment}/{cell}" if self.experiment else cell


def expand(spec: dict) -> list[Job]:
    """The grid in a fixed order: data sets, then methods (variants after their method), then seeds;
    with ``order: seeds``, data sets, then seeds, then methods."""
    unknown = set(spec) - KEYS
    if unknown:
        raise ConfigError(f"sweep: unknown key(s) {sorted(unknown)}; known: {sorted(KEYS)}")
    check_types(spec)
    experiment = check_experiment(spec.get("experiment"))
    order = spec.get("order", "methods")
    if order not in ORDERS:
        raise ConfigError(f"sweep: order must be one of {list(ORDERS)}, got {order!r}")
    common = list(spec.get("set") or [])
    variants = spec.get("variants") or []
    tagged = [(v["method"], v["tag"], tuple(v.get("set") or ()), None) for v in variants]
    rows = []  # (method, tag, overrides, source): each method, then its variants; variants of unlisted methods last
    for m in spec["methods"]:
        rows += [(m, None, (), None)] + [row for row in tagged if row[0] == m]
    rows += [row for row in tagged if row[0] not in spec["methods"]]
    per_seed, at_end = posthoc_rows(spec, [run_name(m, t) for m, t, _, _ in rows])
    check_distinct(spec)
    seeds = list(spec["seeds"])
    if order == "methods":
        cells = [(row, k) for row in rows + per_seed for k in seeds]
    else:
        cells = [(row, k) for k in seeds for row in rows + per_seed]
    cells += [(row, k) for row in at_end for k in seeds]
    jobs = []
    for ds in spec["datasets"]:
        ds_set = list((spec.get("datasets_set") or {}).get(ds, []))
        for (method, tag, extra, source), seed in cells:
            m_set = list((spec.get("methods_set") or {}).get(method, []))
            jobs.append(Job(method, ds, seed, tag, tuple(common + ds_set + m_set + list(extra)), experiment,
                            len(common + ds_set), source))
    return jobs


POSTHOC_AT = ("seed", "end")


def _names(spec: dict, key: str) -> None:
    value = spec.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(x, str) and x for x in value):
        raise ConfigError(f"sweep: '{key}' must be a non-empty list of names, got {value!r}")


def _overrides(value, where: str) -> None:
    if value is not None and (not isinstance(value, list) or not all(isinstance(x, str) for x in value)):
        raise ConfigError(f"sweep: {where} must be a list of KEY=VALUE strings, got {value!r}")


def check_types(spec: dict) -> None:
    """Each key's type, before the grid is built: one message naming the key, not a traceback
    (or, worse, a string read as a list of one-letter overrides)."""
    _names(spec, "methods")
    _names(spec, "datasets")
    seeds = spec.get("seeds")
    if not isinstance(seeds, list) or not seeds or not all(type(k) is int and k >= 0 for k in seeds):
        # bool is an int to Python, and int() would turn true into seed 1 and 1.7 into seed 1
        raise ConfigError(f"sweep: 'seeds' must be a non-empty list of integers >= 0, got {seeds!r}")
    _overrides(spec.get("set"), "'set'")
    for key in ("datasets_set", "methods_set"):
        per = spec.get(key)
        if per is None:
            continue
        if not isinstance(per, dict):
            raise ConfigError(f"sweep: '{key}' must map a name to a list of KEY=VALUE strings, got {per!r}")
        for name, value in per.items():
            _overrides(value, f"'{key}' of {name!r}")
    variants = spec.get("variants")
    if variants is not None and not isinstance(variants, list):
        raise ConfigError(f"sweep: 'variants' must be a list of {{method, tag, set}} mappings, got {variants!r}")
    for i, v in enumerate(variants or []):
        if not isinstance(v, dict) or not {"method", "tag"} <= set(v) or not set(v) <= {"method", "tag", "set"} \
                or not isinstance(v["method"], str):
            raise ConfigError(f"sweep: variants[{i}] must be a mapping with 'method', 'tag' and optionally 'set', "
                              f"got {v!r}")
        _overrides(v.get("set"), f"variants[{i}] 'set'")


def check_distinct(spec: dict) -> None:
    """Two entries that make the same cell (data set, row, seed) would share one run folder: the
    second would be reported finished with a config that never ran. Refused, naming both."""
    for key in ("datasets", "seeds"):
        first: dict = {}
        for i, x in enumerate(spec[key]):
            if x in first:
                raise ConfigError(f"sweep: {key}[{first[x]}] and {key}[{i}] are both {x!r}")
            first[x] = i
    seen: dict[str, str] = {}
    entries = [(f"methods[{i}]", run_name(m, None)) for i, m in enumerate(spec["methods"])]
    entries += [(f"variants[{i}] {v!r}", run_name(v["method"], v["tag"])) for i, v in enumerate(spec.get("variants") or [])]
    blocks = spec.get("posthoc") or []
    for b, block in enumerate([blocks] if isinstance(blocks, dict) else blocks):
        entries += [(f"posthoc[{b}] methods[{i}]", run_name(m, None)) for i, m in enumerate(block["methods"])]
    for where, row in entries:
        if row in seen:
            raise ConfigError(f"sweep: {seen[row]} and {where} both make the row {row!r} (the same run folders); "
                              "list each method once and give each variant a tag of its own")
        seen[row] = where


def posthoc_rows(spec: dict, row_names: list[str]) -> tuple[list[tuple], list[tuple]]:
    """The ``posthoc:`` block(s) as grid rows (method, None, (), source), split into those that run
    after their seed's trained rows (``at: seed``, the default) and those that run after the
    whole grid (``at: end``: a slow method that should not hold up the next seed)."""
    blocks = spec.get("posthoc") or []
    blocks = [blocks] if isinstance(blocks, dict) else blocks
    per_seed, at_end = [], []
    for block in blocks:
        if (not isinstance(block, dict) or not {"from", "methods"} <= set(block) <= {"from", "methods", "at"}
                or not block["methods"] or not isinstance(block["methods"], list)
                or not all(isinstance(m, str) for m in block["methods"]) or block.get("at", "seed") not in POSTHOC_AT):
            raise ConfigError("sweep: each 'posthoc' block needs 'from' (a row, e.g. gradcam), a non-empty "
                              f"'methods' list and optionally 'at' ({' or '.join(POSTHOC_AT)}), got {block!r}")
        if block["from"] not in row_names:
            raise ConfigError(f"sweep: posthoc 'from: {block['from']}' is not a trained row of this sweep; rows: {row_names}")
        rows = [(m, None, (), str(block["from"])) for m in block["methods"]]
        (at_end if block.get("at") == "end" else per_seed).extend(rows)
    return per_seed, at_end


def parse_shard(text: str | None) -> tuple[int, int]:
    if not text:
        return 0, 1
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if not 0 <= i < n:
        raise ConfigError(f"--shard {text}: need 0 <= i < n")
    return i, n


def shard(jobs: list[Job], i: int, n: int) -> list[Job]:
    return [j for k, j in enumerate(jobs) if k % n == i]


def job_config(job: Job):
    """The job's validated RunConfig (ConfigError when a value is bad)."""
    return resolve(job.method, job.dataset, shared_overrides=list(job.overrides[:job.n_shared]),
                   overrides=list(job.overrides[job.n_shared:]), cli={"seed": job.seed, "tag": job.tag, "experiment": job.experiment})


def job_configs(jobs: list[Job]) -> list:
    """Every job's config, checked before the first run starts: one ConfigError lists every bad job."""
    configs, bad = [], []
    for job in jobs:
        try:
            configs.append(job_config(job))
        except WslbenchError as exc:
            bad.append(f"{job.name}: " + str(exc).replace("\n", "\n    "))
    if bad:
        raise ConfigError(f"sweep: {len(bad)} of {len(jobs)} job(s) have a bad configuration; nothing was run:\n  "
                          + "\n  ".join(bad))
    return configs


def differs_note(run_dir: Path, cfg) -> str:
    """'' when the finished run's config.yaml holds the sweep file's settings; else a note naming
    the keys that differ: the record is kept (it is what ran), but it is not what the file says."""
    from wslbench.config import yaml_load
    from wslbench.train.trainer import changed_settings
    from wslbench.validation import validate, with_declared_defaults

    try:
        now = with_declared_defaults(validate(cfg))  # as the run would complete it
        diff = changed_settings(yaml_load((Path(run_dir) / "config.yaml").read_text()) or {}, now)
    except Exception:  # a record the checks elsewhere refuse: nothing to add here
        return ""
    if not diff:
        return ""
    shown = ", ".join(f"{k} {before!r} -> {now!r}" for k, before, now in diff[:4])
    more = f" and {len(diff) - 4} more" if len(diff) > 4 else ""
    return (f" (its record differs from the sweep file: {shown}{more}; the record is what ran, "
            "another experiment name runs the file's settings)")


def job_state(run_dir: Path) -> str:
    """finished | resume | new."""
    from wslbench.io import finished_result

    if finished_result(run_dir) is not None:
        return "finished"
    return "resume" if (run_dir / "last.pt").is_file() else "new"


def finished_elsewhere(out: str | Path) -> dict[tuple, Path]:
    """(experiment, data set, variant, seed) -> folder of every finished run under ``out``, at
    any depth (``wslbench.runs``): a job whose cell is there is done even if its folder moved."""
    from wslbench.errors import DataError
    from wslbench.runs import discover

    try:
        found = discover(out)
    except DataError:  # no output root yet, or no run in it
        return {}
    return {(r.experiment, r.dataset, r.variant, r.seed): r.path for r in found.finished}


def cell_of(cfg, out: str | Path) -> tuple:
    """The (experiment, data set, variant, seed) cell the job's run will fill under ``out``."""
    from wslbench.runs import experiment_of, variant_of

    d = cfg.to_dict()
    return experiment_of(cfg.run_dir(out), Path(out), d), cfg.dataset, variant_of(d), cfg.seed


def posthoc_config(job: Job, cfg, sources: dict, done: dict, out: str | Path):
    """A post-hoc job's config taken from its source run (``wslbench.train.from_run``), or None
    while the source (the grid's ``from`` row, same data set and seed) has not finished."""
    from wslbench.io import finished_result
    from wslbench.train.from_run import config_from_source, source_config

    source_cfg = sources.get((job.dataset, job.seed, job.source))
    source_dir = source_cfg.run_dir(out)
    if finished_result(source_dir) is None:
        source_dir = done.get(cell_of(source_cfg, out))
        if source_dir is None:
            return None
    return config_from_source(cfg, source_dir, source_config(source_dir, job.method, job.dataset, need_checkpoint=False),
                              seed_given=True)


def load_spec(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict:
    """The sweep file, merged onto its ``extends:`` base (recursively) when it names one."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"sweep file not found: {path}")
    spec = load_yaml(path)
    base_name = spec.pop("extends", None)
    if base_name is None:
        return spec
    chain = _seen + (path.resolve(),)
    base_path = (path.parent / str(base_name)).resolve()
    if base_path in chain:
        raise ConfigError(f"sweep {path}: 'extends: {base_name}' makes a cycle")
    if not base_path.is_file():
        raise ConfigError(f"sweep {path}: 'extends: {base_name}': no such file {base_path}")
    base = load_spec(base_path, chain)
    merged = {**base, **spec, "set": list(base.get("set") or []) + list(spec.get("set") or [])}
    if merged.get("experiment") is None or merged.get("experiment") == base.get("experiment"):
        raise ConfigError(f"sweep {path}: a file that extends {base_name} needs its own 'experiment' name "
                          f"(with {base.get('experiment')!r} the base's finished runs would count as this one's)")
    return merged


def run_sweep(path: str | Path, out: str | None = None, shard_text: str | None = None, dry_run: bool = False,
              echo=print) -> dict:
    """Run (or list, with ``dry_run``) this shard's jobs; returns counts per outcome."""
    from wslbench.errors import RunInterrupted
    from wslbench.evaluate import ArrayMemo, MapCache
    from wslbench.train import run
    from wslbench.train.from_run import evaluate_from_run
    from wslbench.train.checkpoint import BEST
    from wslbench.train.trainer import EVAL_CACHE, EVAL_PROGRESS, stop_on_signals, stop_requested

    spec = load_spec(path)
    out = out or spec.get("out") or "results/runs"
    i, n = parse_shard(shard_text)
    grid = expand(spec)
    jobs = shard(grid, i, n)
    counts = {"finished": 0, "ran": 0, "failed": 0, "planned": 0, "waiting": 0}
    failures = []
    done = finished_elsewhere(out)
    configs = job_configs(jobs)
    wanted = {(j.dataset, j.seed, j.source) for j in jobs if j.source is not None}
    resolved = dict(zip(jobs, configs))  # a source in another shard is resolved here, once
    sources = {key: resolved.get(j) or job_config(j) for j in grid
               if (key := (j.dataset, j.seed, j.row)) in wanted and j.source is None}
    # a signal between runs (or while a run is being built) stops the sweep cleanly too: the
    # runs install their own handler, this one covers the gaps
    with nullcontext() if dry_run else stop_on_signals("stopping the sweep after the current job"):
        for k, (job, cfg) in enumerate(zip(jobs, configs), 1):
            prefix = f"[{k}/{len(jobs)}] {job.name}"

            def failed(exc: WslbenchError) -> None:
                counts["failed"] += 1
                failures.append(f"{job.name}: {exc}")
                echo(f"{prefix}: FAILED: {exc}")

            if job.source is not None:
                try:
                    cfg = posthoc_config(job, cfg, sources, done, out)
                except WslbenchError as exc:  # e.g. a source run whose checkpoint is not there: the other jobs go on
                    failed(exc)
                    continue
                if cfg is None:
                    counts["waiting"] += 1
                    echo(f"{prefix}: waiting for {job.dataset}/{job.source}/seed{job.seed} to finish, skipped")
                    continue
            run_dir = cfg.run_dir(out)
            state = job_state(run_dir)
            elsewhere = done.get(cell_of(cfg, out)) if state == "new" else None
            # a stopped test evaluation's maps (this machine) or exact intermediate results (committed)
            kept = max(MapCache.kept_in(run_dir / EVAL_CACHE), ArrayMemo.kept_in(run_dir / EVAL_PROGRESS))
            kept_text = f" ({kept} test images kept from a stopped evaluation)" if kept else ""
            if state == "finished" or elsewhere is not None:
                counts["finished"] += 1
                echo(f"{prefix}: finished{f' at {elsewhere}' if elsewhere else ''}, skipped"
                     + differs_note(elsewhere or run_dir, cfg))
                continue
            if dry_run:
                counts["planned"] += 1
                what = (f"evaluate the classifier of {cfg.eval['from_run']}" if job.source is not None
                        else f"{'resume' if state == 'resume' else 'run'}  {' '.join(job.overrides)}")
                if job.source is not None and not (Path(cfg.eval["from_run"]) / BEST).is_file():
                    what += " (its source has no best.pt: this job will fail)"
                echo(f"{prefix}: would {what}{kept_text}")
                continue
            resuming = state == "resume" or kept > 0  # or a stopped evaluation's images
            echo(f"{prefix}: {'resuming' if resuming else 'running'}{kept_text}")
            try:
                if job.source is not None:
                    evaluate_from_run(cfg, run_dir)
                else:
                    run(cfg, out=out, resume=state == "resume")
                counts["ran"] += 1
            except RunInterrupted as exc:
                raise RunInterrupted(f"sweep stopped by a signal during {job.name}; run the same command again to "
                                     "continue (finished runs are skipped, an interrupted one resumes)") from exc
            except WslbenchError as exc:
                failed(exc)
            if stop_requested():
                raise RunInterrupted(f"sweep stopped by a signal after {job.name}; run the same command again to continue")
    counts["failures"] = failures
    return counts

"""The ``wslbench`` command line (click). Every user mistake ends in one message, not a traceback."""
from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import click

from wslbench.errors import WslbenchError


#: the longest message printed whole: a value quoted in a message (a huge YAML alias expansion,
#: a long list) must not flood the terminal
MESSAGE_LIMIT = 2000


def cut_message(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """``text``, or its first ``limit`` characters and how many were cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]} ... [{len(text) - limit:,} more characters cut]"


def friendly_errors(fn):
    """Turn WslbenchError (and an output folder that cannot be written) into a one-line message
    and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except WslbenchError as exc:
            click.secho(f"error: {cut_message(str(exc))}", fg="red", err=True)
            sys.exit(2)
        except (PermissionError, NotADirectoryError, FileExistsError, IsADirectoryError) as exc:
            # the file system refused a write (a read-only folder, a file where a folder must be): say where
            where = f": {exc.filename}" if exc.filename else ""
            click.secho(f"error: cannot write{where} ({exc.strerror or exc})", fg="red", err=True)
            sys.exit(2)

    return wrapper


def writable_folder(path, option: str = "--out", given=None) -> None:
    """``path`` is, or can be made, a folder this process may write: its nearest existing ancestor
    is a folder with write permission; else one message naming the option (as ``given``) and the culprit."""
    path = Path(path)
    shown = given if given is not None else path
    here = path
    while not here.exists() and here != here.parent:
        here = here.parent
    if here.exists() and not here.is_dir():
        raise WslbenchError(f"{option} {shown}: {here} is a file, not a folder")
    if not os.access(here, os.W_OK | os.X_OK):
        raise WslbenchError(f"{option} {shown}: {here} is not writable")


#: the files that make a folder a run folder: one command owns it at a time
RUN_MARKERS = ("config.yaml", "status.json", "eval.json", "last.pt", "best.pt", "run.lock")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="wslbench")
def main():
    """wslbench: weakly supervised pointwise localization benchmark (min-max entropy and baselines)."""


@main.command()
@click.option("--method", "-m", required=True, help="Registered method name (see `wslbench list`).")
@click.option("--dataset", "-d", default="synthetic", show_default=True, help="Registered data set name.")
@click.option("--config", "config_files", multiple=True, type=click.Path(dir_okay=False),
              help="Extra YAML config file(s), applied after experiments/<dataset>/<method>.yaml.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value, e.g. --set optim.lr=0.01 or --set erase_depth=0 (repeatable).")
@click.option("--seed", type=int, default=None, help="Seed of python, numpy, torch and the data loader workers.")
@click.option("--epochs", type=int, default=None, help="Number of training epochs (overrides the config).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None,
              help="auto = CUDA when available, else CPU.")
@click.option("--data-root", type=click.Path(), default=None,
              help="Folder holding the data set in its official layout (default: $WSLBENCH_DATA/<dataset>).")
@click.option("--out", type=click.Path(file_okay=False), default="results/runs", show_default=True,
              help="Root of the run folders: the run goes to OUT/<dataset>/<method>/seed<k>/.")
@click.option("--resume", is_flag=True, help="Continue from the run folder's last checkpoint.")
@click.option("--deterministic", is_flag=True, default=None, help="Turn on torch deterministic algorithms.")
@click.option("--from", "from_run", type=click.Path(file_okay=False), default=None, metavar="RUN_DIR",
              help="Post-hoc map methods: evaluate the classifier of this finished run (same data set) instead of training one.")
@friendly_errors
def run(method, dataset, config_files, overrides, seed, epochs, device, data_root, out, resume, deterministic, from_run):
    """Train METHOD on DATASET, then evaluate the best checkpoint on the test set (with --from, a
    post-hoc METHOD evaluates a finished run's classifier and trains nothing)."""
    from wslbench import config as C
    from wslbench.registry import dataset_entry, method_entry
    from wslbench.train import run as run_training

    method_entry(method)  # fail fast with the list of known names
    dataset_entry(dataset)
    source = None
    if from_run is not None:  # the source is checked first: a run of another data set is refused as such
        from wslbench.train.from_run import source_config

        if resume:
            raise WslbenchError("--from evaluates without training: it has nothing to --resume")
        source = source_config(from_run, method, dataset)
    cfg = C.resolve(
        method,
        dataset,
        config_files=list(config_files),
        overrides=list(overrides),
        cli={"seed": seed, "train.epochs": epochs, "train.device": device, "data.root": data_root,
             "train.deterministic": deterministic},
    )
    if from_run is not None:
        from wslbench.train.from_run import config_from_source, evaluate_from_run

        cfg = config_from_source(cfg, from_run, source, seed_given=seed is not None)
    run_dir = cfg.run_dir(out)
    writable_folder(run_dir, given=out)
    if run_dir.is_dir():  # its bookkeeping files must be what they should be before anything reads them
        from wslbench.runs import check_run_files

        check_run_files(run_dir)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 speaks
        click.echo(f"run folder: {run_dir}", err=True)
    if from_run is not None:
        result = evaluate_from_run(cfg, run_dir)
    else:
        result = run_training(cfg, out=out, resume=resume)
    _print_result(result, run_dir)


def _print_result(result: dict, run_dir: Path) -> None:
    if not result:
        return
    keys = [k for k in ("cls_error", "f1_pos", "f1_neg", "pxap", "crf_f1_pos", "crf_f1_neg", "crf_pxap") if k in result]
    parts = []
    for k in keys:
        v = result[k]
        parts.append(f"{k}={'n/a' if v is None else (f'{v:.2f}%' if k == 'cls_error' else f'{v:.4f}')}")
    click.echo(f"test: {'  '.join(parts)}  ({result.get('n_images')} images) -> {Path(run_dir) / 'eval.json'}")


@main.command(name="list")
def list_cmd():
    """List registered methods and data sets, one per line with the first sentence of its
    docstring, then the plugins whose entry point failed to load, with the reason."""
    from wslbench.registry import DATASETS, METHODS

    registries = (("methods", "method", METHODS), ("datasets", "dataset", DATASETS))
    names = {title: reg.names() for title, _, reg in registries}
    broken = [(kind, name, reason) for _, kind, reg in registries for name, reason in reg.broken().items()]
    width = max([len(n) for ns in names.values() for n in ns] + [len(n) for _, n, _ in broken] + [1])
    for title, _, reg in registries:
        click.echo(f"{title}:")
        for name in names[title]:
            click.echo(f"  {name:<{width}}  {reg.get(name).description}".rstrip())
    if broken:
        click.echo("failed to load:")
        for kind, name, reason in broken:
            reason = cut_message(" ".join(reason.split()), 500)  # one line, however long the error
            click.echo(f"  {name:<{width}}  ({kind}; entry point {reason})")


@main.command(name="eval")
@click.argument("run_dir", type=click.Path(file_okay=False), required=False)
@click.option("--crf/--no-crf", default=None, help="Also score dense-CRF refined masks (default: the run's config).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None, help="Where to run the model.")
@click.option("--checkpoint", default="best.pt", show_default=True, help="Checkpoint file inside RUN_DIR.")
@click.option("--maps", "maps_dir", type=click.Path(file_okay=False), default=None,
              help="Score maps made by any code instead of a run: one <id>.npy (float in [0, 1]) or <id>.png "
                   "(8/16-bit) per test image.")
@click.option("--dataset", "-d", default=None, help="With --maps: the data set whose test split the maps cover.")
@click.option("--data-root", type=click.Path(), default=None,
              help="The data set's folder (default: the run's, with --maps $WSLBENCH_DATA/<dataset>); recorded in "
                   "eval.json.")
@click.option("--classes", type=click.Path(dir_okay=False), default=None,
              help="With --maps: CSV with columns id, pred_label (class index or name) for the classification error.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="With --maps: the run folder to write (e.g. results/runs/<dataset>/<name>/seed0).")
@click.option("--name", default="external", show_default=True, help="With --maps: the method name tables show.")
@click.option("--seed", type=int, default=0, show_default=True, help="With --maps: the seed the maps come from.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="With --maps: config override, e.g. --set data.scale=0.5 or --set eval.threshold=0.4; with "
                   "RUN_DIR: eval.* only, e.g. --set eval.threshold=0.4, recorded in eval.json (eval_overrides).")
@click.option("--map-normalization", default=None,
              help="With --maps: how the maps were brought to [0, 1], recorded in eval.json.")
@friendly_errors
def eval_cmd(run_dir, crf, device, checkpoint, maps_dir, dataset, data_root, classes, out_dir, name, seed, overrides,
             map_normalization):
    """Evaluate RUN_DIR's best checkpoint on the test set (writes eval.json, per_image.csv, masks/),
    or, with --maps DIR --dataset NAME --out RUN_DIR, score maps made by other code."""
    if maps_dir is None:
        if run_dir is None:
            raise WslbenchError("give a RUN_DIR, or --maps DIR --dataset NAME --out RUN_DIR")
        ctx = click.get_current_context()
        given = [f"--{p.replace('_', '-')}" for p in ("out_dir", "name", "seed", "classes", "map_normalization", "dataset")
                 if ctx.get_parameter_source(p) not in (None, click.core.ParameterSource.DEFAULT)]
        if given:  # said once instead of ignored: they describe maps, not a run that exists
            raise WslbenchError(f"{', '.join(g.replace('--out-dir', '--out') for g in given)}: only with --maps; "
                                f"eval RUN_DIR evaluates the run as recorded (--set eval.*, --data-root, --crf, "
                                "--device and --checkpoint apply)")
        from wslbench.config import parse_override
        from wslbench.runs import check_run_files
        from wslbench.train.lock import RunLock
        from wslbench.train.trainer import evaluate_run
        from wslbench.validation import check_eval_overrides

        if not (Path(run_dir) / "config.yaml").is_file():
            raise WslbenchError(f"{run_dir} is not a run directory (no config.yaml)")
        config = check_run_files(Path(run_dir))
        changes = check_eval_overrides(dict(parse_override(text) for text in overrides))
        if data_root is not None:
            changes["data.root"] = data_root
        posthoc = checkpoint == "best.pt" and bool((config.get("eval") or {}).get("from_run"))  # reads its source's
        if not (Path(run_dir) / checkpoint).is_file() and not posthoc:
            found = sorted(p.name for p in Path(run_dir).glob("*.pt"))
            raise WslbenchError(f"--checkpoint: no file {checkpoint!r} in {run_dir} (checkpoints there: {', '.join(found) or 'none'})")
        with RunLock(run_dir):  # never while a run trains (or another eval writes) there
            result = evaluate_run(run_dir, crf=crf, device=device, checkpoint=checkpoint, overrides=changes or None)
        _print_result(result, Path(run_dir))
        return
    if run_dir is not None or dataset is None or out_dir is None:
        raise WslbenchError("--maps needs --dataset NAME and --out RUN_DIR (and no RUN_DIR argument)")
    from wslbench import config as C
    from wslbench.external import SUPPLIED, evaluate_maps
    from wslbench.registry import dataset_entry

    dataset_entry(dataset)
    out_path = Path(out_dir)
    if out_path.is_dir() and any((out_path / f).exists() for f in RUN_MARKERS):
        found = ", ".join(f for f in RUN_MARKERS if (out_path / f).exists())
        raise WslbenchError(f"--out {out_dir} is a run folder ({found}): eval --maps writes a new folder only, never "
                            "into a run (choose another --out)")
    writable_folder(out_path)
    from wslbench.validation import check_maps_config

    # the maps name no registered method: the method-option checks do not apply (external.py checks the maps),
    # every other value is checked as `run` checks it
    raw, sources = C.layered(name, dataset, overrides=list(overrides), cli={"seed": seed, "data.root": data_root})
    cfg = C.from_dict(check_maps_config(raw, sources))
    result = evaluate_maps(maps_dir, cfg, out_dir, classes=classes, crf=crf,
                           map_normalization=map_normalization or SUPPLIED)
    _print_result(result, Path(out_dir))


@main.command()
@click.option("--runs", "runs_dir", type=click.Path(file_okay=False), default="results/runs", show_default=True,
              help="Root searched, at any depth, for run folders (config.yaml + status.json).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="results/tables", show_default=True,
              help="Folder for <experiment>/table<k>.tex / .md / .csv and <experiment>/tables.md.")
@click.option("--experiment", default=None, help="Only this experiment (default: one set of tables per experiment).")
@click.option("--format", "formats", type=click.Choice(["latex", "markdown", "csv"]), multiple=True,
              help="Output format(s); repeatable (default: latex and markdown).")
@click.option("--full-layout", is_flag=True,
              help="The paper's layout: every method row and data-set column, '–' where no run is (default: leave them out).")
@click.option("--published", "published_dir", type=click.Path(file_okay=False, exists=True), default=None,
              help="Folder of published values, <dataset>.csv (default: the repository's results/published when it "
                   "exists): writes <experiment>/published.md / .tex, published values beside ours.")
@click.option("--sync-docs", "docs", multiple=True, type=click.Path(dir_okay=False, exists=True),
              help="Also refresh this document's generated blocks (<!-- table2-EXP / verdict-EXP[-vs-BASE]:begin/end "
                   "-->) from the tables just written; repeatable.")
@friendly_errors
def tables(runs_dir, out_dir, experiment, formats, full_layout, published_dir, docs):
    """Regenerate the paper's tables (mean ± std over seeds, 95% bootstrap intervals, bold for the tied-best
    rows) and a short verdict from the finished runs on disk, per experiment, and the published values beside
    ours for each data set with a published file."""
    from wslbench.published import published_dir as default_published_dir
    from wslbench.published import write_published
    from wslbench.runs import discover
    from wslbench.tables import write_tables

    found = discover(runs_dir)
    formats = formats or ("latex", "markdown")
    writable_folder(out_dir)
    write_tables(runs_dir, out_dir, formats, experiment=experiment, full_layout=full_layout,
                 discovery=found, echo=click.echo)
    published_dir = published_dir or default_published_dir()
    if Path(published_dir).is_dir():
        write_published(found, out_dir, published_dir, formats, experiment=experiment, echo=click.echo)
    for doc in docs:
        from wslbench.summary import sync_docs

        markers = sync_docs(doc, out_dir, found)
        click.echo(f"{doc}: {len(markers)} generated block(s) refreshed ({', '.join(markers) or 'none found'})")
    if found.skipped:
        click.echo(found.skipped_report(), err=True)


@main.command()
@click.option("--runs", "runs_dir", type=click.Path(file_okay=False), default="results/runs", show_default=True,
              help="Root searched, at any depth, for run folders (config.yaml + status.json).")
@click.option("--dataset", "-d", required=True, help="Data set whose runs to compare.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="results/figures", show_default=True,
              help="Folder for <experiment>/<dataset>_pr, _masks and _training (.png/.pdf).")
@click.option("--experiment", default=None, help="Only this experiment (default: figures for each experiment).")
@click.option("--images", "n_images", type=int, default=6, show_default=True, help="Rows of the mask comparison grid.")
@click.option("--data-root", type=click.Path(), default=None, help="Data folder (default: the one the runs used).")
@click.option("--published", "published_dir", type=click.Path(file_okay=False, exists=True), default=None,
              help="Folder of published values, <dataset>.csv (default: the repository's results/published when it "
                   "exists): draws <dataset>_published_tau_curves, our F1(t) against the published F1.")
@friendly_errors
def figures(runs_dir, dataset, out_dir, experiment, n_images, data_root, published_dir):
    """Average precision-recall curves, a visual comparison of the predicted masks, training curves and our
    F1(t) curves against the published F1 (PNG + PDF), per experiment."""
    from wslbench.figures import write_figures
    from wslbench.runs import discover

    found = discover(runs_dir)
    writable_folder(out_dir)
    for p in write_figures(runs_dir, dataset, out_dir, n_images, data_root, experiment=experiment, discovery=found,
                           echo=lambda m: click.echo(m, err=True), published=published_dir):
        click.echo(str(p))
    if found.skipped:
        click.echo(found.skipped_report(), err=True)


@main.command()
@click.argument("root", type=click.Path(file_okay=False, exists=True))
@click.option("--protocol", default=None, type=click.Choice(["paper", "pixel_budget"]),
              help="Choose tau by this protocol (default: each run's own).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="eval.protocol.* or eval.threshold of the rescore, e.g. --set eval.protocol.images_per_class=2.")
@click.option("--crf/--no-crf", default=None, help="Also score dense-CRF refined masks (default: each run's own).")
@friendly_errors
def rescore(root, protocol, overrides, crf):
    """Recompute every score of the finished runs under ROOT from the maps their records store
    (no checkpoint, no trunk). With each run's own settings the run's files are rewritten as the
    evaluation wrote them; other settings write into <run>/rescore/<name>/."""
    from tqdm.auto import tqdm

    from wslbench.config import parse_override
    from wslbench.errors import DataError
    from wslbench.rescore import rescore_run, without_maps_reason
    from wslbench.runs import check_run_files, find_run_dirs
    from wslbench.train.lock import RunLock

    proto, threshold = ({"name": protocol} if protocol else None), None
    for text in overrides:
        key, value = parse_override(text)
        if key.startswith("eval.protocol."):
            proto = {**(proto or {"name": "pixel_budget"}), key.split(".", 2)[2]: value}
        elif key == "eval.threshold":
            threshold = float(value)
        else:
            raise WslbenchError(f"--set {text}: a rescore changes only eval.protocol.* and eval.threshold")
    runs = find_run_dirs(root)
    if not runs:
        raise WslbenchError(f"no run folder under {root}")
    skipped = []
    for run_dir in tqdm(runs, desc="rescore", unit="run", disable=len(runs) < 2):
        try:
            check_run_files(run_dir)
        except DataError as exc:
            skipped.append(str(exc))
            continue
        why = without_maps_reason(run_dir)
        if why is not None:
            skipped.append(f"{run_dir}: {why}")
            continue
        try:
            lock = RunLock(run_dir).acquire()  # a run still writing its folder is not rescored under it
        except WslbenchError as exc:
            skipped.append(str(exc))
            continue
        try:
            done = rescore_run(run_dir, protocol=proto, threshold=threshold, crf=crf)
        finally:
            lock.release()
        r = done.result
        click.echo(f"{done.out_dir}: F1+ {r['f1_pos']:.4f}  F1- {r['f1_neg']:.4f}  PxAP {r.get('pxap', float('nan')):.4f}"
                   f"  tau {r['threshold']:.3f}")
    if skipped:
        click.echo(f"{len(skipped)} run(s) not rescored:\n  " + "\n  ".join(skipped), err=True)


@main.command()
@click.argument("sweep_file", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Root of the run folders (default: the file's `out`, else results/runs).")
@click.option("--shard", default=None, metavar="I/N", help="Run only grid entries I, I+N, I+2N, ... (0 <= I < N).")
@click.option("--dry-run", is_flag=True, help="List the runs and their state (finished / resume / new) without running.")
@friendly_errors
def sweep(sweep_file, out, shard, dry_run):
    """Run a grid of methods x data sets x seeds; finished runs are skipped, interrupted ones resumed."""
    from wslbench.sweep import run_sweep

    counts = run_sweep(sweep_file, out=out, shard_text=shard, dry_run=dry_run, echo=lambda m: click.echo(m, err=True))
    click.echo(f"sweep: {counts['ran']} ran, {counts['finished']} already finished, {counts['planned']} planned, "
               f"{counts['failed']} failed" + (f", {counts['waiting']} waiting for their source run" if counts["waiting"] else ""))
    if counts["failed"]:
        raise WslbenchError("failed runs:\n  " + "\n  ".join(counts["failures"]))


@main.group(name="config")
def config_group():
    """Inspect the resolved configuration of a run."""


@config_group.command(name="show")
@click.option("--method", "-m", required=True, help="Registered method name (see `wslbench list`).")
@click.option("--dataset", "-d", default="synthetic", show_default=True, help="Registered data set name.")
@click.option("--config", "config_files", multiple=True, type=click.Path(dir_okay=False),
              help="Extra YAML config file(s), as for `wslbench run`.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config value, as for `wslbench run`.")
@friendly_errors
def config_show(method, dataset, config_files, overrides):
    """Print every key a run of METHOD on DATASET reads: its value, what is allowed and which layer set it."""
    from wslbench.validation import explain

    rows = explain(method, dataset, config_files=list(config_files), overrides=list(overrides))
    header = ("key", "value", "allowed", "source")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    click.echo(f"# {method} on {dataset}: change a value with --set KEY=VALUE (or a --config file)")
    for row in [header, *rows]:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row[:3], widths)) + "  " + row[3])


@main.group()
def checkpoint():
    """Checkpoint files (every read is weights-only: a checkpoint never runs code)."""


@checkpoint.command(name="convert")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Write the converted checkpoint here instead of in place (one PATH only).")
@friendly_errors
def checkpoint_convert(paths, out):
    """Rewrite checkpoints of earlier wslbench versions (numpy RNG state pickled as numpy objects)
    in the weights-only format that eval and --resume read. PATH is a .pt file or a run folder
    (its *.pt files). Run it only on files you trust; it admits numpy arrays and nothing else."""
    from wslbench.train.checkpoint import convert_checkpoint

    files = [f for p in map(Path, paths) for f in (sorted(p.glob("*.pt")) if p.is_dir() else [p])]
    if out is not None and len(files) != 1:
        raise WslbenchError(f"--out needs exactly one checkpoint file, got {len(files)}")
    if not files:
        raise WslbenchError(f"no *.pt checkpoint in {', '.join(paths)}")
    for f in files:
        changed = convert_checkpoint(f, out)
        target = out or f
        click.echo(f"{f}: {'converted' if changed else 'already in the safe format'}"
                   + (f" -> {target}" if out else ""))


@main.group()
def data():
    """Inspect data sets on disk."""


@data.command(name="check")
@click.argument("dataset")
@click.option("--data-root", type=click.Path(), default=None,
              help="Folder holding the data set in its official layout (default: $WSLBENCH_DATA/<dataset>).")
@click.option("--deep/--no-deep", default=True, show_default=True,
              help="Also decode every image and mask and verify SHA256SUMS when the folder has one.")
@click.option("--archives", type=click.Path(file_okay=False), default=None,
              help="Folder holding the downloaded archives (.tgz/.mat): verify their published checksums.")
@friendly_errors
def data_check(dataset, data_root, deep, archives):
    """Verify DATASET's layout, counts, split record and (with --deep) every file."""
    from wslbench.config import data_root as default_data_root
    from wslbench.config import dataset_options, resolve
    from wslbench.registry import dataset_entry

    cls = dataset_entry(dataset).obj
    if archives is not None:
        from wslbench.data.archives import verify_archives

        ok, bad = verify_archives(dataset, archives)
        for line in ok:
            click.echo(line)
        if bad:
            raise WslbenchError(f"{dataset} archives in {archives}:\n" + "\n".join(f"  - {p}" for p in bad))
        if data_root is None:
            return
    data_root = default_data_root(dataset, data_root)
    cfg = resolve("all-ones", dataset)
    options = dataset_options(cfg.data, drop=("cache",))
    kwargs = {"deep": deep, "progress": True} if hasattr(cls, "require_root") else {}
    problems = cls.check(data_root, **kwargs, **options)
    if problems:
        raise WslbenchError(f"{dataset}: {len(problems)} problem(s) under {data_root}:\n" + "\n".join(f"  - {p}" for p in problems))
    counts = []
    for split in ("train", "val", "test"):
        counts.append(f"{split} {len(cls(split=split, root=data_root, augment=False, cache=None, **options))}")
    click.echo(f"{dataset} OK at {data_root}: " + ", ".join(counts))


if __name__ == "__main__":
    main()

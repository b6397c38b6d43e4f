"""``wslbench run --method M --from RUN_DIR``: evaluate a post-hoc map method on the classifier
of a finished run, training nothing.

The source must be a finished run (status ``finished``) of the same data set whose method the
post-hoc method declares compatible (``compatible_source``: Grad-CAM, the post-hoc methods and
CAM-Avg-shaped classifiers). The new run takes the source's architecture (``model.backbone``,
``model.output_stride``) and data-set options, so that the weights load and the test images are
prepared as the classifier saw them, its seed unless ``--seed`` is given, and its experiment
unless ``--set experiment=NAME`` is given (the maps go to the table of the classifier's run). The source folder
is recorded in ``config.yaml`` (``eval.from_run``) and in ``eval.json`` (``from_run``,
``from_checkpoint_epoch``). A signal stops the evaluation after the current image; the same
command again predicts only the images left (wslbench.evaluate.MapCache)."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from wslbench.config import LOADER_KEYS, RunConfig, yaml_load
from wslbench.errors import ConfigError, WslbenchError
from wslbench.io import finished_result
from wslbench.registry import method_entry
from wslbench.train.checkpoint import BEST, load_checked, load_checkpoint, method_weights, save_checkpoint
from wslbench.train.lock import RunLock

#: model keys that make the classifier what it is (taken from the source run)
ARCHITECTURE_KEYS = ("backbone", "output_stride")


def require_checkpoint(source: Path) -> None:
    """A clear refusal when the source's classifier weights are not on disk."""
    if not (source / BEST).is_file():
        raise ConfigError(f"--from {source}: no {BEST} checkpoint (run records are committed without their "
                          "checkpoints; this classifier must be trained again, e.g. by removing the run folder "
                          "and running the sweep or the run's command)")


def source_config(source: str | Path, method: str, dataset: str, need_checkpoint: bool = True) -> dict:
    """The source run's config.yaml after checking that ``method`` may evaluate it on
    ``dataset``; every refusal is one ConfigError naming what is wrong. A sweep plans its
    post-hoc jobs without the checkpoint (``need_checkpoint=False``): a finished post-hoc row
    needs only its record, and evaluate_from_run checks the weights before it reads them."""
    source = Path(source)
    method_cls = method_entry(method).obj
    if not getattr(method_cls, "evaluates_from_run", False):
        raise ConfigError(f"--from is for post-hoc map methods; {method!r} trains its own model "
                          "(post-hoc methods: gradcampp, xgradcam, layercam, scorecam, hirescam, eigencam)")
    if not (source / "config.yaml").is_file():
        raise ConfigError(f"--from {source}: not a run folder (no config.yaml)")
    if finished_result(source) is None:
        raise ConfigError(f"--from {source}: the run is not finished (status.json does not say 'finished'); "
                          "finish it first (wslbench run ... --resume)")
    src = yaml_load((source / "config.yaml").read_text()) or {}
    if src.get("dataset") != dataset:
        raise ConfigError(f"--from {source}: a {src.get('dataset')!r} run cannot be evaluated on {dataset!r}")
    src_method = src.get("method")
    try:
        src_cls = method_entry(src_method).obj
    except WslbenchError as exc:
        raise ConfigError(f"--from {source}: its method {src_method!r} is not installed ({exc})") from exc
    if not method_cls.compatible_source(src_cls):
        raise ConfigError(f"--from {source}: {method!r} needs a GAP + linear classifier (gradcam, a post-hoc "
                          f"method, cam-avg, has, adl or cutmix), not a {src_method!r} run")
    if need_checkpoint:
        require_checkpoint(source)
    return src


def config_from_source(cfg: RunConfig, source: str | Path, src: dict, seed_given: bool) -> RunConfig:
    """``cfg`` with the source's architecture, data-set options (loader keys and the data root
    stay this run's) and seed, and ``eval.from_run`` recording the source."""
    src_model, src_data = src.get("model") or {}, src.get("data") or {}
    model = {**cfg.model, **{k: src_model[k] for k in ARCHITECTURE_KEYS if k in src_model},
             "pretrained": False}  # the weights come from the checkpoint
    data = {**{k: v for k, v in src_data.items() if k not in LOADER_KEYS},
            **{k: v for k, v in cfg.data.items() if k in LOADER_KEYS}}
    seed = cfg.seed if seed_given else int(src.get("seed", cfg.seed))
    experiment = cfg.experiment or src.get("experiment")  # its maps belong beside the classifier's run
    return replace(cfg, seed=seed, model=model, data=data, experiment=experiment,
                   eval={**cfg.eval, "from_run": str(Path(source))})  # as given, like data.root: no machine's folders in records


def _load_source_classifier(trainer, source: Path, src: dict) -> dict:
    """Load the source run's best classifier into the trainer's post-hoc method; its checkpoint."""
    path = source / BEST
    ck = load_checkpoint(path, map_location=trainer.device)
    state = method_weights(ck, path)
    origin = ck.get("config") if isinstance(ck.get("config"), dict) else {}
    if origin.get("method") not in (None, src.get("method")):
        raise ConfigError(f"--from {source}: {path} is a checkpoint of {origin['method']!r}, but the run's "
                          f"config.yaml says {src.get('method')!r}")
    source_cls = method_entry(src["method"]).obj
    convert = getattr(trainer.method, "classifier_weights", None)  # checked before loading when the method says how
    problem = None
    try:
        if convert is None:
            trainer.method.load_classifier(state, source_cls)
        else:
            problem = load_checked(trainer.method, convert(state, source_cls))
    except KeyError as exc:
        problem = f"it has no key {exc} of a {src.get('method')!r} classifier"
    except (RuntimeError, TypeError, ValueError) as exc:  # state-dict shape/key mismatch
        problem = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    if problem is not None:
        raise ConfigError(f"--from {source}: {path} does not fit {trainer.cfg.method!r} "
                          f"(backbone {trainer.cfg.model.get('backbone')!r}): {problem}")
    return ck


def restore_classifier(trainer, run_dir: Path) -> None:
    """A finished post-hoc run's ``best.pt`` (its copy of the classifier, not committed with its
    record) written again from its source run, for a re-evaluation (``wslbench eval``)."""
    source = Path(trainer.cfg.eval["from_run"])
    require_checkpoint(source)
    ck = _load_source_classifier(trainer, source, yaml_load((source / "config.yaml").read_text()))
    save_checkpoint(run_dir / BEST, {"epoch": 0, "method": trainer.method.state_dict(), "from_run": str(source),
                                     "from_checkpoint_epoch": ck.get("epoch")})


def evaluate_from_run(cfg: RunConfig, run_dir: str | Path) -> dict:
    """Load the source's best classifier into ``cfg.method`` and evaluate it on the test set;
    no optimiser step is taken. ``cfg`` comes from :func:`config_from_source`."""
    from wslbench.errors import RunInterrupted
    from wslbench.train.trainer import Trainer, stop_on_signals

    source = Path(cfg.eval["from_run"])
    run_dir = Path(run_dir)
    if finished_result(run_dir) is not None:
        raise WslbenchError(f"{run_dir} already holds a finished run (eval.json); it is never overwritten. "
                            "Use another --out or --set tag=NAME, or delete the folder.")
    require_checkpoint(source)
    src = yaml_load((source / "config.yaml").read_text())
    trainer = Trainer(cfg, run_dir)
    ck = _load_source_classifier(trainer, source, src)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = RunLock(run_dir)
    lock.acquire()
    try:
        (run_dir / "metrics.jsonl").unlink(missing_ok=True)
        trainer._write_run_header()
        trainer._status("running", epoch=0)
        save_checkpoint(run_dir / BEST, {"epoch": 0, "method": trainer.method.state_dict(), "from_run": str(source),
                                         "from_checkpoint_epoch": ck.get("epoch")})
        try:
            source_eval = json.loads((source / "eval.json").read_text())
        except (OSError, ValueError):
            source_eval = {}
        with stop_on_signals("finishing the current image's map, then stopping (the maps done are kept)"):
            result = trainer.evaluate_test(extra={
                "epochs_run": 0, "stopped_early": False, "train_time_s": 0.0, "best_val": None, "selection": None,
                "from_run": str(source), "from_method": src["method"], "from_checkpoint_epoch": ck.get("epoch"),
                "from_train_time_s": source_eval.get("train_time_s"),
            })
        trainer._status("finished")
        return result
    except RunInterrupted:  # status.json says "interrupted"; the maps done wait in the run's eval cache
        raise
    except BaseException as exc:
        trainer._status("failed", error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        lock.release()


__all__ = ["source_config", "config_from_source", "evaluate_from_run"]

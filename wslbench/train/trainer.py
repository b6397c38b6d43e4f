"""The one trainer: every method, every data set, one seed -> the same numbers.

It knows nothing about a method's internals: it calls ``method.training_step(batch)`` (through
``forward`` so wrappers keep working), back-propagates ``"loss"``, steps SGD, validates the
classification error, checkpoints, stops early, and finally evaluates the best checkpoint on
the test set through :mod:`wslbench.evaluate`.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from wslbench.config import DEFAULTS, LOADER_KEYS, RunConfig, data_root, dataset_options, from_dict
from wslbench.errors import ConfigError, RunInterrupted, TrainingDiverged, WslbenchError
from wslbench.curves import CURVE_INTERVAL
from wslbench.evaluate import MINMAX_PER_IMAGE, ArrayMemo, MapCache, autocast_for, evaluate, map_fingerprint
from wslbench.io import append_jsonl, atomic_write_json, atomic_write_text, atomic_write_yaml, finished_result, read_jsonl
from wslbench.protocols import Protocol
from wslbench.registry import create_dataset, create_method
from wslbench.stored_maps import store_split
from wslbench.train.checkpoint import BEST, LAST, load_checkpoint, load_method_weights, save_checkpoint
from wslbench.train.fastpath import keep_freed_memory
from wslbench.train.fastpath import resolve as resolve_fastpath
from wslbench.train.distributed import DistInfo, all_reduce_gradients, init_from_env, reduce_sum
from wslbench.train.lock import RunLock
from wslbench.train.sampler import ResumableSampler
from wslbench.train.seeding import derive_seed, rng_state, seed_everything, set_deterministic, set_rng_state, worker_init_fn
from wslbench.train.workers import EpochItems, plan_workers


def resolve_device(pref: str = "auto") -> torch.device:
    if pref == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if pref.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA device is available (use --device cpu or auto)")
    return torch.device(pref)


#: what env.json's ``segments`` keep of each part of a resumed run
SEGMENT_KEYS = ("git_commit", "git_dirty", "cpu_capability", "device_name", "hostname", "torch")


def _segment(env: dict, from_epoch: int) -> dict:
    return {"from_epoch": from_epoch, **{k: env.get(k) for k in SEGMENT_KEYS}}


#: the repository's folder of run records, tables and figures: data, not code (git_state)
RECORDS_FOLDER = "results"


def git_state(repo: Path, own: Path | None = None) -> tuple[str | None, bool | None]:
    """(HEAD commit, whether tracked files differ from it) of ``repo``, leaving out results/ and the
    run's own folder (``own``, wherever it is): a sweep that resumes a committed run record rewrites
    that record's files, which says nothing about the code the next run uses."""
    spec = ["--", ".", f":(exclude){RECORDS_FOLDER}"]
    if own is not None:
        rel = os.path.relpath(Path(own).resolve(), Path(repo).resolve())
        if rel != "." and not rel.startswith(".."):
            spec.append(f":(exclude){rel}")
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        ).stdout.strip() or None
        dirty = bool(
            subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no", *spec],
                           capture_output=True, text=True, timeout=5).stdout.strip()
        )
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    return commit, dirty


def environment_info(device: torch.device, run_dir: Path | None = None) -> dict:
    """What produced a run: code version (leaving out ``run_dir``'s own files), packages, hardware,
    the command."""
    import numpy
    import timm
    import torchvision

    commit, dirty = git_state(Path(__file__).resolve().parents[2], run_dir)
    return {
        "git_commit": commit,
        "git_dirty": dirty,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
        "numpy": numpy.__version__,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        # the CPU kernels torch picked (AVX2, AVX512...): fp32 training on another one is not
        # bitwise the same, so a run repeated on another machine may differ from its record
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "hostname": socket.gethostname(),
        # the command as typed: the program's name without the folder it was installed in (an
        # absolute path of one machine), then the arguments unchanged
        "argv": [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv else [],
    }


def _to_device(batch: dict, device: torch.device, channels_last: bool) -> dict:
    out = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            v = v.to(device, non_blocking=True)
            if k == "image" and channels_last:
                v = v.contiguous(memory_format=torch.channels_last)
        out[k] = v
    return out


#: what a checkpoint with missing or ill-typed entries raises while it is restored
_BAD_STATE = (KeyError, TypeError, ValueError, RuntimeError)


#: the folder (in a run) of a stopped evaluation's maps, gone once eval.json is written
EVAL_CACHE = "eval_cache"
#: a stopped test evaluation's small exact intermediate results (Method.keep_progress_in): unlike
#: eval_cache it is not git-ignored, so a committed run folder resumes in a fresh clone
EVAL_PROGRESS = "eval_progress"

# One flag per process: a signal asks every run of this process (and a sweep) to stop.
_STOP = {"requested": False}


def stop_requested() -> bool:
    return _STOP["requested"]


@contextmanager
def stop_on_signals(message: str | None):
    """While the block runs, SIGINT and SIGTERM set the stop flag (``message`` is printed, when
    given) instead of killing the process; a second signal quits at once. The previous handlers
    come back after the block, so a sweep's handler covers the gaps between its runs' own."""
    def on_signal(signum, frame) -> None:
        if _STOP["requested"]:  # second signal: leave at once
            raise KeyboardInterrupt
        _STOP["requested"] = True
        if message:
            print(f"\n{signal.Signals(signum).name}: {message} (send it again to quit at once)",
                  file=sys.stderr, flush=True)

    handlers = {}
    if threading.current_thread() is threading.main_thread():  # signal handlers live there only
        for sig in (signal.SIGINT, signal.SIGTERM):
            handlers[sig] = signal.signal(sig, on_signal)
    try:
        yield
    finally:
        for sig, h in handlers.items():
            signal.signal(sig, h)


def old_geometry(record_config: dict) -> dict:
    """A record's config.yaml written before ``eval.pad_validation`` existed ran its validation
    unpadded: read it so, not with today's default."""
    ev = record_config.setdefault("eval", {})
    if isinstance(ev, dict):
        ev.setdefault("pad_validation", False)
    return record_config


def build_dataset(cfg: RunConfig, split: str, augment: bool | None = None):
    """The data set of a run's config, as training and evaluation see it (also for a rescore,
    which builds no method)."""
    from wslbench.methods.backbone import normalization_for

    kwargs = dataset_options(cfg.data)
    kwargs["mean"], kwargs["std"] = normalization_for(cfg)  # the config's, else the trunk's
    return create_dataset(cfg.dataset, split=split, root=data_root(cfg.dataset, cfg.data.get("root")), augment=augment,
                          **kwargs)


#: settings a resumed run may change: they decide where and how fast it runs, never its numbers
#: beyond what a change of machine does anyway (env.json's ``segments`` record each part's device
#: and host). Every other difference from the recorded config.yaml refuses --resume.
RESUME_MAY_CHANGE = {
    "train.progress": "a progress bar",
    "train.device": "the device; env.json records where each part of the run ran",
    "train.num_threads": "CPU threads",
    "train.keep_freed_memory": "how freed memory is kept",
    "data.num_workers": "loader processes; the batches are the same",
    "data.persistent_workers": "whether loader processes outlive an epoch",
    "data.root": "where the data set lies on this machine",
}


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if not prefix and isinstance(v, dict) and v and k in ("data", "model", "optim", "train", "eval"):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def changed_settings(recorded: dict, cfg: RunConfig) -> list[tuple[str, object, object]]:
    """(key, recorded value, value now) for every setting of ``cfg`` that differs from the run's
    recorded config (both completed with the code's declared defaults, so a record written before
    a key existed compares as that default), leaving out RESUME_MAY_CHANGE."""
    from wslbench.config import deep_merge
    from wslbench.validation import validate, with_declared_defaults

    # a key the record lacks was read with the code's default (as ``eval`` reads a record)
    recorded = deep_merge(DEFAULTS, old_geometry(recorded))
    before = _flat(with_declared_defaults(validate(from_dict(recorded))).to_dict())
    now = _flat(cfg.to_dict())
    missing = object()
    return [(k, before.get(k, missing), now.get(k, missing)) for k in sorted(set(before) | set(now))
            if k not in RESUME_MAY_CHANGE and before.get(k, missing) != now.get(k, missing)]


def _shown(v) -> str:
    return json.dumps(v, default=str) if isinstance(v, (type(None), bool, int, float, str, list, dict)) else "(not set)"


class Trainer:
    """Build data + method from a RunConfig, train, checkpoint, evaluate."""

    def __init__(self, cfg: RunConfig, run_dir: str | Path, resume: bool = False, dist_info: DistInfo | None = None):
        from wslbench.validation import validate, with_declared_defaults

        cfg = validate(cfg)  # every value's type and range, before anything is built
        # the options the config leaves to the code's defaults, named in eval.json when the config
        # came from a record written before config.yaml held them (from_run_dir)
        self.unrecorded: list[str] = []
        self.cfg = cfg = with_declared_defaults(cfg)  # config.yaml records every value the run uses
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.device = resolve_device(cfg.train.device)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        self.dist = dist_info or init_from_env(self.device.type)
        threads = cfg.train.num_threads
        if threads is not None:
            if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
                raise ConfigError(f"train.num_threads must be a positive integer or null, got {threads!r}")
            torch.set_num_threads(threads)
        self.fastpath = resolve_fastpath(self.device, cfg.train.amp, cfg.train.channels_last)
        self.channels_last = self.fastpath.channels_last
        self.amp = self.fastpath.amp
        self.keep_freed_memory = keep_freed_memory(cfg.train.keep_freed_memory, self.device)  # (on?, why)
        set_deterministic(cfg.train.deterministic)
        self._build()

    # --- construction ---------------------------------------------------------------------
    @classmethod
    def from_run_dir(cls, run_dir: str | Path, device: str | None = None, overrides: dict | None = None) -> "Trainer":
        """The run's recorded trainer; ``overrides`` (dotted key -> value, already validated:
        ``eval RUN --set``/``--data-root``) change how it is evaluated, never config.yaml."""
        run_dir = Path(run_dir)
        path = run_dir / "config.yaml"
        if not path.is_file():
            raise WslbenchError(f"{run_dir} is not a run directory (no config.yaml)")
        from wslbench.config import apply_override, yaml_load

        d = yaml_load(path.read_text())
        if device:
            d.setdefault("train", {})["device"] = device
        for key, value in (overrides or {}).items():
            apply_override(d, key, value)
        old_geometry(d)
        trainer = cls(from_dict(d), run_dir)
        trainer.unrecorded = sorted(
            f"{section}.{k}" for section in ("model", "data")
            for k in set(getattr(trainer.cfg, section)) - set(d.get(section) or {}))
        return trainer

    def dataset(self, split: str, augment: bool | None = None):
        return build_dataset(self.cfg, split, augment)

    def _build(self) -> None:
        cfg = self.cfg
        self.protocol = Protocol.from_eval_config(cfg.eval)  # checkpoint and threshold selection
        seed_everything(cfg.seed)
        self.train_set = self.dataset("train")
        self.val_set = self.dataset("val")
        for ds in (self.train_set, self.val_set):  # corrupt files fail here; forked workers share the cache
            ds.preload(progress=cfg.train.progress and self.dist.is_main)
        from wslbench.data.base import verify_before_training

        # data check's deep checks (SHA256SUMS, every test file too) before anything is trained or written
        verify_before_training([self.train_set, self.val_set, self.dataset("test", augment=False)],
                               progress=cfg.train.progress and self.dist.is_main)
        seed_everything(cfg.seed)  # the method's initial weights depend on the seed only
        try:
            self.method = create_method(cfg.method, num_classes=self.train_set.num_classes, **cfg.model)
        except TypeError as exc:
            raise ConfigError(f"method {cfg.method!r} rejected its config {cfg.model}: {exc}") from exc
        self.method.to(self.device)
        if self.channels_last:
            self.method.to(memory_format=torch.channels_last)
        if cfg.train.sync_batchnorm and self.dist.enabled and self.device.type == "cuda":
            self.method = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.method)
        self.generator = torch.Generator()
        self.sampler = ResumableSampler(self.train_set, self.dist.world_size, self.dist.rank, cfg.seed)
        batch_size = int(cfg.data["batch_size"])
        if self.dist.enabled:
            if batch_size % self.dist.world_size:
                raise ConfigError(f"batch_size {batch_size} is not divisible by the {self.dist.world_size} processes")
            batch_size //= self.dist.world_size  # batch_size is the global batch
        self.local_batch = batch_size
        loader = DEFAULTS["data"]  # a record written before these keys existed has neither
        self.workers = plan_workers(cfg.data.get("num_workers", loader["num_workers"]), self.device.type,
                                    torch.get_num_threads(),
                                    persistent=bool(cfg.data.get("persistent_workers", loader["persistent_workers"])),
                                    processes_per_node=int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
        self.train_loader = DataLoader(
            EpochItems(self.train_set, cfg.seed),  # (epoch, index) items: workers may outlive an epoch
            batch_size=batch_size,
            sampler=self.sampler,
            num_workers=self.workers.num_workers,
            worker_init_fn=worker_init_fn,
            generator=self.generator,
            drop_last=len(self.train_set) // self.dist.world_size > batch_size,
            pin_memory=self.device.type == "cuda",
            persistent_workers=self.workers.persistent,
        )
        params = self.method.param_groups() if self.method.trainable else []
        params = [g for g in params if g["params"]]
        self.optimizer = None
        if params:
            o = cfg.optim
            self.optimizer = torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay)
            floor = o.min_lr / o.lr if o.lr > 0 else 0.0
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(
                self.optimizer, lambda e: max(o.gamma ** (e // max(o.step_size, 1)), floor)
            )

    # --- selection --------------------------------------------------------------------------
    def _selection(self) -> tuple[str | None, str]:
        """The validation metric for early stopping/best checkpoint and whether lower is better
        (the protocol's choice, wslbench.protocols)."""
        return self.protocol.selection(self.method)

    def _validate(self) -> dict:
        return self.protocol.validate(self.method, self.val_set, self.device, self.amp, self.channels_last)

    # --- training -------------------------------------------------------------------------
    def _write_run_header(self, resumed_at: int | None = None) -> None:
        """config.yaml and env.json. env.json describes the process that runs now; a run resumed
        at epoch ``resumed_at`` also keeps, under ``segments``, where each earlier part ran (code
        version, CPU capability, host), since a run resumed on another machine or commit would
        otherwise name only the last one."""
        if not self.dist.is_main:
            return
        atomic_write_yaml(self.run_dir / "config.yaml", self.cfg.to_dict())
        # amp: the dtype the forward passes actually ran in (the paper's runs are fp32), from the
        # trainer's effective self.amp; fastpath.env() says why (amp_dtype/amp_reason, channels_last)
        amp = "bfloat16" if self.amp else "float32"
        kept, why = self.keep_freed_memory
        from wslbench.registry import dataset_entry, method_entry

        env = {**environment_info(self.device, self.run_dir), **self.fastpath.env(), "keep_freed_memory": kept,
               # the installed packages that provide the method and the data set (a plugin's own version)
               "method_package": method_entry(self.cfg.method).package,
               "dataset_package": dataset_entry(self.cfg.dataset).package,
               "keep_freed_memory_reason": why, **self.workers.env(), "world_size": self.dist.world_size, "amp": amp}
        path = self.run_dir / "env.json"
        if resumed_at is not None:
            try:
                before = json.loads(path.read_text())
            except (OSError, ValueError):
                before = None
            segments = (before.get("segments") or [_segment(before, 0)]) if isinstance(before, dict) else []
            env["segments"] = segments + [_segment(env, resumed_at)]
        atomic_write_json(path, env)

    def _status(self, state: str, **extra) -> None:
        if self.dist.is_main:
            atomic_write_json(self.run_dir / "status.json", {"state": state, "time": time.time(), **extra})

    def _start_epoch(self, epoch: int, skip_steps: int = 0) -> None:
        """Everything random in epoch ``epoch`` derives from (seed, epoch): resuming at any
        epoch, or mid-epoch after ``skip_steps`` steps, replays what a straight run does."""
        s = derive_seed(self.cfg.seed, epoch)
        seed_everything(s)
        self.generator.manual_seed(s)
        self.sampler.set_epoch(epoch, skip=skip_steps * self.local_batch)  # its items carry the epoch to the workers

    def _train_epoch(self, epoch: int, partial: dict | None = None) -> dict:
        """One epoch (or its remainder after an interrupt: ``partial`` holds the sums so far).
        A SIGINT/SIGTERM finishes the current step, then saves an interrupt checkpoint."""
        cfg = self.cfg
        self.method.train()
        self.method.set_epoch(epoch)
        partial = partial or {}
        sums: dict[str, float] = dict(partial.get("sums", {}))
        done = n_steps = int(partial.get("n_steps", 0))
        n_images = int(partial.get("n_images", 0))
        elapsed_before = float(partial.get("elapsed", 0.0))
        t0 = time.perf_counter()
        total = len(self.train_loader) + done
        if cfg.train.max_steps_per_epoch:
            total = min(total, cfg.train.max_steps_per_epoch)
        bar = tqdm(
            total=total,
            initial=done,
            desc=f"{cfg.method} {cfg.dataset} epoch {epoch + 1}/{cfg.train.epochs}",
            disable=not (cfg.train.progress and self.dist.is_main),
            dynamic_ncols=True,
            leave=True,
        )
        for step, batch in enumerate(self.train_loader, start=done):
            if step >= total:
                break
            batch = _to_device(batch, self.device, self.channels_last)
            self.optimizer.zero_grad(set_to_none=True)
            with autocast_for(self.device, self.amp):
                losses = self.method(batch)
            loss = losses["loss"]
            if not torch.isfinite(loss.detach()).all():
                bar.close()
                raise TrainingDiverged(
                    loss.item(), epoch + 1, step + 1,
                    f"The last good checkpoint is kept in {self.run_dir / LAST}; lower optim.lr or check the data.",
                )
            loss.backward()
            all_reduce_gradients(self.method, self.dist)
            self.optimizer.step()
            for k, v in losses.items():
                if isinstance(v, torch.Tensor) and v.numel() == 1:
                    sums[k] = sums.get(k, 0.0) + float(v.detach())
            n_steps += 1
            n_images += batch["image"].shape[0]
            bar.update(1)
            elapsed = elapsed_before + time.perf_counter() - t0
            bar.set_postfix(loss=f"{sums['loss'] / n_steps:.4f}", img_s=f"{n_images / max(elapsed, 1e-9):.1f}")
            if self._stop_agreed() and n_steps < total:
                bar.close()
                self._save_interrupt(epoch, {"sums": sums, "n_steps": n_steps, "n_images": n_images, "elapsed": elapsed})
                raise RunInterrupted(
                    f"interrupted at epoch {epoch + 1}, step {n_steps}/{total}: checkpoint saved in "
                    f"{self.run_dir / LAST}; continue with the same command plus --resume"
                )
        self._bar = bar
        elapsed = elapsed_before + time.perf_counter() - t0
        keys = sorted(sums)
        reduced = reduce_sum([sums[k] for k in keys] + [n_steps, n_images], self.dist, self.device)
        n_steps_all, n_images_all = reduced[-2], reduced[-1]
        out = {f"train_{k}": v / max(n_steps_all, 1) for k, v in zip(keys, reduced)}
        out.update(images_per_s=n_images_all / max(elapsed, 1e-9), epoch_time_s=elapsed)
        return out

    # --- interrupts ---------------------------------------------------------------------------
    def _stop_agreed(self) -> bool:
        """Every rank stops at the same step when any rank was signalled."""
        if not self.dist.enabled:
            return _STOP["requested"]
        flag = reduce_sum([float(_STOP["requested"])], self.dist, self.device)[0]
        return flag > 0

    def _save_interrupt(self, epoch: int, partial: dict) -> None:
        if not self.dist.is_main:
            return
        state = self._state(epoch, self._best, self._bad_epochs, self._train_time + partial["elapsed"])
        state.update(step=partial["n_steps"], partial=partial, rng=rng_state())
        save_checkpoint(self.run_dir / LAST, state)
        self._status("interrupted", epoch=epoch, step=partial["n_steps"])

    def _not_resumable(self, exc: Exception) -> WslbenchError:
        return WslbenchError(f"--resume: {self.run_dir / LAST} does not hold a resumable wslbench state "
                             f"({type(exc).__name__}: {exc})")

    def _this(self) -> str:
        backbone = self.cfg.model.get("backbone")
        return f"{self.cfg.method!r}" + (f", backbone {backbone!r}" if backbone else "")

    def _history_before(self, start_epoch: int) -> list[dict]:
        """metrics.jsonl's records of the epochs the checkpoint covers (0 .. start_epoch - 1), in
        order. A torn last line (a process killed in the middle of appending it: no final newline)
        is dropped, as its epoch is not in the checkpoint either; a damaged line elsewhere, or a
        history that does not match the checkpoint, is refused."""
        path = self.run_dir / "metrics.jsonl"
        try:
            text = path.read_text(encoding="utf-8") if path.is_file() else ""
        except (OSError, ValueError) as exc:
            raise WslbenchError(f"--resume: cannot read {path}: {exc}") from None
        lines = text.split("\n")
        if lines[-1].strip():
            print(f"note: {path}: dropping a torn last line (a write cut short): {lines[-1][:60]!r}",
                  file=sys.stderr, flush=True)
        records = []
        for i, line in enumerate(lines[:-1], 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError as exc:
                rec, why = None, f"not JSON ({exc})"
            else:
                why = "not an epoch record"
            if not isinstance(rec, dict) or type(rec.get("epoch")) is not int:
                raise WslbenchError(f"--resume: {path} line {i} is {why}: the run's history is damaged; restore the "
                                    "file, or delete the run folder to train again")
            records.append(rec)
        kept = [r for r in records if r["epoch"] < start_epoch]
        if [r["epoch"] for r in kept] != list(range(start_epoch)):
            raise WslbenchError(f"--resume: {path} holds epoch records {[r['epoch'] for r in kept]} but {LAST} covers "
                                f"epochs 0..{start_epoch - 1}: the run's history does not match its checkpoint; restore "
                                "the file, or delete the run folder to train again")
        return kept

    def _patience_spent(self, key, bad_epochs: int) -> bool:
        return self.cfg.train.patience is not None and key is not None and bad_epochs >= self.cfg.train.patience

    def _state(self, epoch: int, best, bad_epochs: int, train_time: float) -> dict:
        return {
            "epoch": epoch,  # completed epochs
            "step": 0,  # completed steps of epoch ``epoch`` (interrupt checkpoints only)
            "method": self.method.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "best": best,
            "bad_epochs": bad_epochs,
            "train_time_s": train_time,
            "config": self.cfg.to_dict(),
        }

    # --- the run ------------------------------------------------------------------------------
    def fit(self) -> dict:
        """Train (or resume), then evaluate the best checkpoint on the test set. A finished run
        is never rewritten: without --resume it is refused, with --resume its result is returned."""
        self._check_status()
        finished = finished_result(self.run_dir)
        if self.resume:
            self._check_same_settings(finished is not None)
        if finished is not None:
            if self.resume:
                return finished if self.dist.is_main else {}
            raise WslbenchError(
                f"{self.run_dir} already holds a finished run (eval.json); it is never overwritten. Use another "
                "--out or --set tag=NAME for a new run, --resume to reuse it, or delete the folder."
            )
        created = [p for p in (self.run_dir, *self.run_dir.parents) if not p.exists()]  # deepest first
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._started = False  # set when the first epoch (or, untrained, the evaluation) begins
        lock = RunLock(self.run_dir) if self.dist.is_main else None
        if lock is not None:
            lock.acquire()
        message = "finishing the current step, then saving a checkpoint" if self.dist.is_main else None
        try:
            with stop_on_signals(message):
                if _STOP["requested"]:
                    raise RunInterrupted(f"not starting {self.run_dir}: this process was asked to stop")
                return self._fit()
        except BaseException as exc:
            if not self._started and created:
                if lock is not None:
                    lock.release()
                    lock = None
                self._remove_new_folders(created)
            elif not isinstance(exc, RunInterrupted) and (self._started or not isinstance(exc, WslbenchError)):
                # a refusal before the first step (a checkpoint or history that does not fit) leaves
                # the status as it was: the run is still what it was, nothing ran
                self._status("failed", error=f"{type(exc).__name__}: {exc}")
            raise
        finally:
            self._stop_workers()
            if lock is not None:
                lock.release()

    def _check_status(self) -> None:
        """A status.json that cannot be read leaves open whether the run finished: refuse rather
        than train over (or re-evaluate) a run that may be finished."""
        from wslbench.runs import check_status

        try:
            check_status(self.run_dir)
        except WslbenchError as exc:
            raise WslbenchError(f"{exc}: whether the run finished is unknown; restore it, or delete "
                                f"{self.run_dir} to start the run again") from None

    def _check_same_settings(self, finished: bool) -> None:
        """--resume continues the run config.yaml records: a setting given now that differs from
        it (other than RESUME_MAY_CHANGE) would be recorded without having been used, so it is
        refused, naming each key with both values."""
        from wslbench.runs import read_mapping

        path = self.run_dir / "config.yaml"
        if not path.is_file():
            if finished or (self.run_dir / LAST).is_file():
                raise WslbenchError(f"--resume: {self.run_dir} has no config.yaml, so the settings its checkpoint was "
                                    "trained with are unknown; it cannot be resumed")
            return  # nothing was run here: the missing checkpoint is reported as such
        try:  # read_mapping: one DataError naming the file for anything but a mapping
            changed = changed_settings(read_mapping(path), self.cfg)
        except (ValueError, TypeError, WslbenchError) as exc:
            raise WslbenchError(f"--resume: cannot read the recorded settings {path}: {exc}") from None
        if changed:
            what = "finished run" if finished else "run"
            diffs = "; ".join(f"{k}: recorded {_shown(a)}, given {_shown(b)}" for k, a, b in changed)
            raise WslbenchError(
                f"--resume: {self.run_dir} is a {what} with other settings ({diffs}); resuming would record settings "
                "it did not run with. Use the recorded settings, or --set tag=NAME / another --out for a new run")

    def _stop_workers(self) -> None:
        """End the loader's persistent workers now: a sweep runs many trainers in one process,
        and each one's workers would otherwise live until its trainer is garbage-collected."""
        it = getattr(self.train_loader, "_iterator", None)
        if it is not None:
            self.train_loader._iterator = None
            if hasattr(it, "_shutdown_workers"):
                it._shutdown_workers()

    def _remove_new_folders(self, created: list[Path]) -> None:
        """A run that fails before its first epoch leaves nothing: remove the folders it made."""
        if not self.dist.is_main:
            return
        import shutil

        shutil.rmtree(self.run_dir, ignore_errors=True)
        for folder in created[1:]:
            try:
                folder.rmdir()  # only while empty: another run may have started there meanwhile
            except OSError:
                break

    def _fit(self) -> dict:
        cfg = self.cfg
        key, mode = self._selection()
        start_epoch, best, bad_epochs, train_time, partial, ck = 0, None, 0, 0.0, None, None
        if self.resume and (self.run_dir / LAST).is_file():
            ck = load_checkpoint(self.run_dir / LAST, map_location=self.device)
            load_method_weights(self.method, ck, self.run_dir / LAST, self._this())
            try:
                if self.optimizer is not None and ck.get("optimizer"):
                    self.optimizer.load_state_dict(ck["optimizer"])
                    self.scheduler.load_state_dict(ck["scheduler"])
                start_epoch, best, bad_epochs = ck["epoch"], ck["best"], ck["bad_epochs"]
                train_time = ck.get("train_time_s", 0.0)
                if ck.get("step"):
                    partial = ck["partial"]
                    train_time -= partial["elapsed"]  # counted again when the epoch completes
            except _BAD_STATE as exc:
                raise self._not_resumable(exc) from None
            if self.dist.is_main:  # drop metric lines of epochs the checkpoint does not cover
                kept = self._history_before(start_epoch)
                atomic_write_text(self.run_dir / "metrics.jsonl", "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))
        elif self.resume:
            raise WslbenchError(f"--resume: no checkpoint {self.run_dir / LAST} to resume from")
        elif self.dist.is_main:
            (self.run_dir / "metrics.jsonl").unlink(missing_ok=True)
        self._write_run_header(start_epoch if ck is not None else None)
        self._status("running", epoch=start_epoch)
        self._best, self._bad_epochs, self._train_time = best, bad_epochs, train_time

        epochs = cfg.train.epochs if (self.method.trainable and self.optimizer is not None) else 0
        # a run that stopped early and was stopped again in its test evaluation resumes to that evaluation
        stopped_early = self._patience_spent(key, bad_epochs) and start_epoch > 0
        diverged = {}
        self._started = True
        for epoch in range(start_epoch, start_epoch if stopped_early else epochs):
            skip = int(partial["n_steps"]) if partial else 0
            self._start_epoch(epoch, skip_steps=skip)
            if partial:
                try:
                    set_rng_state(ck["rng"])  # mid-epoch: the RNG exactly where the interrupted run left it
                except _BAD_STATE as exc:
                    raise self._not_resumable(exc) from None
            record = {"epoch": epoch, "lr": self.optimizer.param_groups[0]["lr"]}
            try:
                record.update(self._train_epoch(epoch, partial))
            except TrainingDiverged as exc:
                if cfg.train.on_nonfinite != "evaluate" or not (self.run_dir / BEST).is_file():
                    raise  # stop; or diverged before any epoch was kept: nothing to score
                diverged = {"diverged_at_epoch": exc.epoch, "diverged": exc.where}
                break
            partial = None
            train_time += record["epoch_time_s"]
            self.scheduler.step()
            record.update(self._validate())
            # a tie may move the best checkpoint (protocol ties: later); only a strict gain resets patience
            improved, strict = (True, True) if key is None else self.protocol.is_best(record[key], best, mode)
            if improved:
                best = record.get(key) if key else epoch
            bad_epochs = 0 if strict else bad_epochs + 1
            self._best, self._bad_epochs, self._train_time = best, bad_epochs, train_time
            record["best_epoch"] = epoch if improved else None
            bar = self._bar
            bar.set_postfix(loss=f"{record['train_loss']:.4f}", img_s=f"{record['images_per_s']:.1f}",
                            **({key: f"{record[key]:.3g}"} if key else {}))
            bar.close()
            if self.dist.is_main:
                append_jsonl(self.run_dir / "metrics.jsonl", record)
                state = self._state(epoch + 1, best, bad_epochs, train_time)
                if improved:
                    save_checkpoint(self.run_dir / BEST, {"epoch": epoch + 1, "method": state["method"], key or "epoch": best,
                                                          "config": state["config"]})  # says whose weights they are
                save_checkpoint(self.run_dir / LAST, state)
                self._status("running", epoch=epoch + 1)
            if self._patience_spent(key, bad_epochs):
                stopped_early = True
                break
            if self._stop_agreed() and epoch + 1 < epochs:
                self._status("interrupted", epoch=epoch + 1)  # as a mid-epoch stop says; not "running"
                raise RunInterrupted(f"interrupted after epoch {epoch + 1}: checkpoint saved in {self.run_dir / LAST}; "
                                     "continue with the same command plus --resume")
        if self.dist.is_main and not (self.run_dir / BEST).is_file():
            save_checkpoint(self.run_dir / BEST, {"epoch": epochs, "method": self.method.state_dict(),
                                                  "config": self.cfg.to_dict()})
        if self.dist.enabled:
            torch.distributed.barrier()
        result = {}
        if self.dist.is_main:
            history = read_jsonl(self.run_dir / "metrics.jsonl")
            result = self.evaluate_test(extra={
                "epochs_run": len(history),
                "stopped_early": stopped_early,
                "train_time_s": train_time,
                "best_val": best if key else None,
                "selection": key,
                **diverged,
            })
            self._status("finished")
        return result

    # --- evaluation -----------------------------------------------------------------------
    def evaluate_test(self, checkpoint: str = BEST, crf: bool | None = None, extra: dict | None = None) -> dict:
        ck = load_checkpoint(self.run_dir / checkpoint, map_location=self.device)
        load_method_weights(self.method, ck, self.run_dir / checkpoint, self._this())
        test_set = self.dataset("test", augment=False)
        ev = self.cfg.eval
        info = {
            "method": self.cfg.method,
            "dataset": self.cfg.dataset,
            "seed": self.cfg.seed,
            "tag": self.cfg.tag,
            "checkpoint": checkpoint,
            "checkpoint_epoch": ck.get("epoch"),
        }
        prior = self.run_dir / "eval.json"
        if prior.is_file():  # keep what training recorded when re-evaluating
            old = json.loads(prior.read_text())
            for k in ("epochs_run", "stopped_early", "train_time_s", "best_val", "selection", "diverged_at_epoch",
                      "diverged", "from_run", "from_method", "from_checkpoint_epoch", "from_train_time_s"):
                if k in old:
                    info[k] = old[k]
        # tau from the protocol: it reads the validation set only, never test_set
        tau, protocol_info = self.protocol.threshold(self.method, self.val_set, self.device, self.amp, self.channels_last)
        info.update(protocol_info)
        if self.unrecorded:  # a record from before config.yaml held every option: say which were not in it
            info["options_not_recorded"] = {k: self._option_value(k) for k in self.unrecorded}
        info.update(extra or {})
        store_maps = bool(ev.get("store_maps", True))
        key = self._map_fingerprint(test_set.split)
        cache = MapCache(self.run_dir / EVAL_CACHE, key)
        self.method.keep_progress_in(self.run_dir / EVAL_PROGRESS, key)
        try:
            result = evaluate(
                self.method,
                test_set,
                self.run_dir,
                self.device,
                threshold=tau,
                batch_size=int(self.cfg.data.get("eval_batch_size", 1)),
                amp=self.amp,
                channels_last=self.channels_last,
                crf=bool(ev.get("crf", False) if crf is None else crf),
                crf_params=ev.get("crf_params") or {},
                save_masks=bool(ev.get("save_masks", True)),
                save_maps=bool(ev.get("save_maps", False)),
                curve_interval=float(ev.get("curve_interval", CURVE_INTERVAL)),
                extra=info,
                pad_multiple=ev.get("pad_multiple", 0),  # 0 = off; 32 in the paper configs (authors' loader.py)
                cache=cache,
                should_stop=stop_requested,
                store_maps=store_maps,
                # after the test maps, before eval.json: a finished run always has both
                before_write=self._store_validation_maps if store_maps else None,
            )
        except RunInterrupted:
            self._status("interrupted", evaluating=test_set.split, maps_kept=len(cache),
                         progress_kept=ArrayMemo.kept_in(self.run_dir / EVAL_PROGRESS))
            raise
        finally:
            self.method.keep_progress_in(None, "")
        shutil.rmtree(self.run_dir / EVAL_PROGRESS, ignore_errors=True)  # eval.json is written
        if self.dist.is_main and ev.get("figures", True):
            from wslbench.figures import run_pr_figure

            run_pr_figure(self.run_dir)
        return result

    def _option_value(self, key: str):
        section, name = key.split(".", 1)
        return getattr(self.cfg, section)[name]

    def _store_validation_maps(self) -> None:
        """maps-val.npz: the validation images' native maps as the protocol predicts them (a
        pixel-budget rescore chooses tau on them); nothing for a method without a recipe. Kept in
        the evaluation's cache as they are made, so that a stopped evaluation does not predict them
        again."""
        stored, recipes = [], []
        cache = MapCache(self.run_dir / EVAL_CACHE / "val", self._map_fingerprint(self.val_set.split))
        for p in self.protocol.predict(self.method, self.val_set, self.device, self.amp, self.channels_last,
                                       cache=cache, should_stop=stop_requested):
            if p.stored is None:  # no recipe: nothing to store, no need to predict the rest
                return
            stored.append(p.stored)
            recipes.append(p.recipe)
        store_split(self.run_dir, "val", stored, recipes, classifies=self.method.classifies,
                    crf_applicable=self.method.crf_applicable,
                    map_normalization=getattr(self.method, "map_normalization", MINMAX_PER_IMAGE),
                    pad_multiple=self.protocol.pad_multiple)

    def _map_fingerprint(self, split: str) -> str:
        """What a stopped evaluation's maps (and progress) are valid for: these weights, data
        options and evaluation options (not the loader's, the CRF's or the figures')."""
        return map_fingerprint(self.method, {
            "method": self.cfg.method, "dataset": self.cfg.dataset, "split": split,
            "data": {k: v for k, v in self.cfg.data.items() if k not in LOADER_KEYS}, "model": self.cfg.model,
            "eval": {k: v for k, v in self.cfg.eval.items()
                     if k not in ("crf", "crf_params", "figures", "save_masks", "store_maps")},
            "amp": self.amp, "channels_last": self.channels_last})


def evaluate_run(run_dir: str | Path, crf: bool | None = None, device: str | None = None, checkpoint: str = BEST,
                 overrides: dict | None = None) -> dict:
    """``wslbench eval RUN_DIR``: reload the run's config and checkpoint, evaluate on the test set. A
    post-hoc run (``eval.from_run``) whose own copy of the classifier is not on disk (records are
    committed without it) reads it again from its source run."""
    trainer = Trainer.from_run_dir(run_dir, device=device, overrides=overrides)
    if checkpoint == BEST and trainer.cfg.eval.get("from_run") and not (Path(run_dir) / BEST).is_file():
        from wslbench.train.from_run import restore_classifier

        restore_classifier(trainer, Path(run_dir))
    return trainer.evaluate_test(checkpoint=checkpoint, crf=crf,
                                 extra={"eval_overrides": dict(overrides)} if overrides else None)


def run(cfg: RunConfig, out: str | Path = "results/runs", resume: bool = False, run_dir: str | Path | None = None) -> dict:
    """Train and evaluate one configuration; returns the test metrics (eval.json)."""
    trainer = Trainer(cfg, run_dir or cfg.run_dir(out), resume=resume)
    return trainer.fit()


__all__ = ["Trainer", "run", "evaluate_run", "resolve_device"]

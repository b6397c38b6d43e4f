"""Selection protocols: which checkpoint is kept and which threshold tau binarises the maps.

A protocol is a config value (``eval.protocol``) and the only place these choices are made:
the trainer asks it for its validation score and whether an epoch is the new best, and
evaluation asks it for tau. Test images never enter a protocol: it only ever receives the
validation set.

Validation images are predicted in the test's geometry: reflect-padded to ``eval.pad_multiple``
(the authors pad both, train_deepmil.py and loader.py) unless ``eval.pad_validation`` is false,
the geometry of the records made before 2026-12-07.

- ``paper`` (default; Belharbi et al. 2019): tau = ``eval.threshold`` (0.5), the checkpoint
  with the lowest validation classification error; the fully supervised U-Net, which does
  not classify, on the mean of validation F1+ and F1- at tau (F1+ alone rewards marking
  everything, the paper's own argument against it).
- ``pixel_budget`` (wsolevaluation's ``train-fullsup`` split, Choe et al. 2020; the
  ``valpx`` protocol of jeromerony/survey_wsl_histology): N pixel-labelled validation images
  per class (``images_per_class``; ``all`` for every validation image), drawn with a fixed
  seed, choose tau (the threshold maximising their mean (F1+ + F1-)/2, or the ``criterion``
  named) and, with ``select_checkpoint: true``, the checkpoint (best localization score of
  that choice over the grid).

Ties: with ``ties: later`` an epoch whose validation score equals the best so far becomes
the best checkpoint (the authors' train_deepmil.py: ``if error_vl <= best_val_error``); only
a strict improvement resets the early-stopping patience.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from wslbench.curves import CURVE_INTERVAL, CurveAccumulator, best_threshold, threshold_grid
from wslbench.errors import ConfigError
from wslbench.evaluate import predict_dataset
from wslbench.metrics import classification_error, f1_pos_neg

PAPER, PIXEL_BUDGET = "paper", "pixel_budget"
PROTOCOLS = (PAPER, PIXEL_BUDGET)
CRITERIA = ("f1_mean", "f1_pos", "f1_neg")
#: the paper's threshold on the [0, 1] maps (authors' code: mask >= 0.5, spec/minmax.md; eval.threshold)
PAPER_THRESHOLD = 0.5


@dataclass(frozen=True)
class ProtocolConfig:
    name: str = PAPER
    images_per_class: int | None = None  # pixel_budget: validation images per class with masks; None = all
    select_checkpoint: bool = False  # pixel_budget: choose the checkpoint by validation localization too
    seed: int = 0  # which validation images carry the pixel budget (the same for every method and run seed)
    criterion: str = "f1_mean"  # what tau maximises on those images: mean of F1+ and F1-, or one of them
    ties: str = "later"  # authors' train_deepmil.py keeps the LATEST epoch with the lowest validation error (<=)

    def label(self) -> str:
        """Short text for tables."""
        if self.name == PAPER:
            return "paper"
        n = "all" if self.images_per_class is None else self.images_per_class
        return f"pixel budget ({n}/class{', ckpt' if self.select_checkpoint else ''})"


def protocol_config(eval_cfg: dict | None) -> ProtocolConfig:
    """``eval.protocol`` (a name or a mapping) -> ProtocolConfig; one ConfigError per mistake."""
    raw = (eval_cfg or {}).get("protocol") or {}
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, dict):
        raise ConfigError(f"eval.protocol must be a name ({', '.join(PROTOCOLS)}) or a mapping, got {raw!r}")
    known = {f.name for f in fields(ProtocolConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"unknown key eval.protocol.{unknown[0]}; known: {', '.join(sorted(known))}")
    raw = dict(raw)
    if raw.get("name", PAPER) not in PROTOCOLS:
        raise ConfigError(f"unknown eval.protocol.name {raw['name']!r}; expected one of {', '.join(PROTOCOLS)}")
    n = raw.get("images_per_class")
    if n == "all":
        raw["images_per_class"] = None
    elif n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise ConfigError(f"eval.protocol.images_per_class must be a positive integer or 'all', got {n!r}")
    if raw.get("criterion", "f1_mean") not in CRITERIA:
        raise ConfigError(f"eval.protocol.criterion must be one of {', '.join(CRITERIA)}, got {raw['criterion']!r}")
    if raw.get("ties", "later") not in ("later", "earlier"):
        raise ConfigError(f"eval.protocol.ties must be 'later' or 'earlier', got {raw['ties']!r}")
    if raw.get("name", PAPER) == PAPER and raw.get("select_checkpoint"):
        raise ConfigError("eval.protocol.select_checkpoint needs name: pixel_budget (the paper selects on classification)")
    return ProtocolConfig(**raw)


class Protocol:
    """Checkpoint and threshold selection from the validation set only."""

    def __init__(self, cfg: ProtocolConfig, threshold: float = PAPER_THRESHOLD, curve_interval: float = CURVE_INTERVAL,
                 pad_multiple: int = 0):
        self.cfg = cfg
        self.paper_threshold = float(threshold)
        self.grid = threshold_grid(curve_interval)
        #: the validation geometry: reflect-pad each validation image to a multiple of this (0: as it is)
        self.pad_multiple = int(pad_multiple)

    @classmethod
    def from_eval_config(cls, eval_cfg: dict | None) -> "Protocol":
        eval_cfg = eval_cfg or {}
        try:
            grid_step = float(eval_cfg.get("curve_interval", CURVE_INTERVAL))
            threshold_grid(grid_step)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"eval.curve_interval: {exc}") from exc
        pad = int(eval_cfg.get("pad_multiple", 0) or 0) if eval_cfg.get("pad_validation", True) else 0
        return cls(protocol_config(eval_cfg), float(eval_cfg.get("threshold", PAPER_THRESHOLD)), grid_step, pad)

    def predict(self, method, val_set, device, amp: bool = False, channels_last: bool = False, batch_size: int = 1,
                **kwargs):
        """The validation predictions, in the protocol's geometry (``pad_multiple``)."""
        return predict_dataset(method, val_set, device, batch_size, amp, channels_last, pad_multiple=self.pad_multiple,
                               **kwargs)

    # --- which validation images carry pixel labels -------------------------------------------
    def budget_indices(self, val_set) -> list[int]:
        """Indices of the pixel-labelled validation images: ``images_per_class`` per class,
        drawn with ``seed`` (every validation image under ``paper`` or ``all``)."""
        labels = np.asarray([r.label for r in val_set.records])
        n = self.cfg.images_per_class
        if self.cfg.name == PAPER or n is None:
            return list(range(len(labels)))
        rng = np.random.default_rng(self.cfg.seed)
        chosen = []
        for c in np.unique(labels):
            idx = np.flatnonzero(labels == c)
            chosen.extend(rng.choice(idx, size=min(n, idx.size), replace=False).tolist())
        return sorted(int(i) for i in chosen)

    # --- checkpoint selection -----------------------------------------------------------------
    def selection(self, method) -> tuple[str | None, str]:
        """(record key, "min"/"max") the best checkpoint is chosen on; (None, "min"): the last epoch."""
        if self.cfg.name == PIXEL_BUDGET and self.cfg.select_checkpoint:
            return "val_localization", "max"
        if method.classifies:
            return "val_error", "min"
        if method.uses_pixel_labels:
            return "val_f1_mean", "max"
        return None, "min"

    def is_best(self, value: float, best: float | None, mode: str) -> tuple[bool, bool]:
        """(this epoch becomes the best checkpoint, it strictly improves: resets the patience)."""
        if best is None:
            return True, True
        strict = value < best if mode == "min" else value > best
        tie = value == best
        return strict or (tie and self.cfg.ties == "later"), strict

    def validate(self, method, val_set, device, amp: bool = False, channels_last: bool = False, batch_size: int = 1) -> dict:
        """The validation record of one epoch: the selection score (and what it is made of)."""
        key, _ = self.selection(method)
        if key is None:
            return {}
        if key == "val_error":
            preds, labels = [], []
            for p in self.predict(method, val_set, device, amp, channels_last, batch_size):
                preds.append(p.pred_label)
                labels.append(p.label)
            return {"val_error": classification_error(preds, labels)}
        if key == "val_f1_mean":
            pos, neg = [], []
            for p in self.predict(method, val_set, device, amp, channels_last, batch_size):
                a, b = f1_pos_neg(p.prob >= self.paper_threshold, p.mask)
                pos.append(a)
                neg.append(b)
            f1p, f1n = float(np.mean(pos)), float(np.mean(neg))
            return {"val_f1_pos": f1p, "val_f1_neg": f1n, "val_f1_mean": (f1p + f1n) / 2}
        # pixel budget with checkpoint selection: the localization score tau would reach
        budget = set(self.budget_indices(val_set))
        acc = CurveAccumulator(grid=self.grid)
        preds, labels = [], []
        for i, p in enumerate(self.predict(method, val_set, device, amp, channels_last, batch_size)):
            preds.append(p.pred_label)
            labels.append(p.label)
            if i in budget:
                acc.add(p.prob, p.mask)
        score = self._criterion(acc)
        k = int(np.argmin(np.abs(self.grid - best_threshold(score, self.grid))))
        out = {"val_localization": float(score[k]), "val_threshold": float(self.grid[k])}
        if method.classifies:
            out["val_error"] = classification_error(preds, labels)
        return out

    # --- threshold selection ------------------------------------------------------------------
    def _criterion(self, acc: CurveAccumulator) -> np.ndarray:
        pos, neg = acc.mean_curves()
        return {"f1_mean": (pos + neg) / 2, "f1_pos": pos, "f1_neg": neg}[self.cfg.criterion]

    def threshold(self, method, val_set, device, amp: bool = False, channels_last: bool = False,
                  batch_size: int = 1) -> tuple[float, dict]:
        """tau and what eval.json records about how it was chosen. Only ``val_set`` is read."""
        if self.cfg.name == PAPER:
            return self.paper_threshold, self.describe()
        idx = self.budget_indices(val_set)
        return self.threshold_from(val_set, self.predict(method, val_set, device, amp, channels_last, batch_size,
                                                         indices=idx))

    def threshold_from(self, val_set, predictions) -> tuple[float, dict]:
        """tau from the predictions of the budget's validation images (``budget_indices``, in
        that order): predicted now, or read back from a record's stored maps (a rescore)."""
        idx = self.budget_indices(val_set)
        acc = CurveAccumulator(grid=self.grid)
        for p in predictions:
            acc.add(p.prob, p.mask)
        tau = best_threshold(self._criterion(acc), self.grid)
        info = self.describe()
        info["threshold_images"] = [val_set.records[i].id for i in idx]
        return tau, info

    def describe(self) -> dict:
        """The protocol as eval.json states it."""
        source = ("paper: fixed" if self.cfg.name == PAPER else
                  f"chosen on {self.cfg.images_per_class or 'all'} pixel-labelled validation image(s) per class "
                  f"(maximises validation {self.cfg.criterion})")
        out = {"protocol": self.cfg.name, "protocol_config": asdict(self.cfg), "protocol_label": self.cfg.label(),
               "threshold_source": source}
        if self.pad_multiple > 1:  # absent: validation images predicted as they are (records before 2026-12-07)
            out["validation_pad_multiple"] = self.pad_multiple
        return out

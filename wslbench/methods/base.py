"""The one interface between the trainer/evaluation and any method.

A method is an ``nn.Module`` built from keyword config. The trainer calls
``training_step(batch)`` and back-propagates the returned ``"loss"``; a method that needs
more (min-max's recursive erasing accumulates gradients step by step) may call ``backward``
itself on intermediate losses before returning. Evaluation only ever calls ``predict``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class Prediction:
    logits: torch.Tensor | None  # (B, C) class scores; None when the method does not classify
    maps: torch.Tensor  # (B, H, W) localization map in [0, 1] at input resolution
    # the map at the resolution the method computes it, and how it became ``maps``
    # (wslbench.methods.maps.MapRecipe); what a run's record stores. None: not declared
    native: torch.Tensor | None = None
    recipe: Any = None


class Method(nn.Module):
    """Base class of every method. Subclasses set the class flags and implement
    ``forward_logits`` (for the default training step) and ``predict``."""

    #: the method sees pixel masks at training time (only the fully supervised upper bound)
    uses_pixel_labels: ClassVar[bool] = False
    #: the method predicts a class (All-ones does not: its error is reported as n/a)
    classifies: ClassVar[bool] = True
    #: the method has parameters to train (All-ones has none)
    trainable: ClassVar[bool] = True
    #: evaluation may post-process its maps with a dense CRF (Deep MIL's are not probabilities)
    crf_applicable: ClassVar[bool] = True
    #: how ``predict`` brings its maps to [0, 1]; evaluation states it in eval.json
    map_normalization: ClassVar[str] = "min-max per image"

    # --- what the method's row is in tables and figures (wslbench.rows) -------------------
    #: the row's name (None: the registry name); read from the class itself, never inherited
    display_name: ClassVar[str | None] = None
    #: the row's family (wslbench.rows.FAMILIES): "paper", "wsol", "post-hoc", "ours", "reference", "other"
    family: ClassVar[str] = "other"
    #: a table may bold the row; never for a constant map, nor for a method that uses pixel labels
    contender: ClassVar[bool] = True
    #: rows of tagged variants, by tag ({"sched": "Ours, published schedule"}); others: "<name> (<tag>)"
    tag_names: ClassVar[dict[str, str]] = {}
    #: where the row sits in tables, lower first (the built-ins: the paper's order)
    row_order: ClassVar[int] = 500

    def __init__(self, num_classes: int, **config: Any):
        super().__init__()
        from wslbench.options import check_options

        # the declared types and ranges of the subclass's options, for a method built directly too
        check_options(type(self), config, "model", base=Method, skip=("num_classes",))
        self.num_classes = num_classes
        self.config = dict(config)

    # --- training -------------------------------------------------------------------------
    def forward_logits(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def training_step(self, batch: dict) -> dict[str, torch.Tensor]:
        """Default: cross-entropy of the image-level label. Returns named losses; ``loss`` is
        the one the trainer back-propagates."""
        logits = self.forward_logits(batch["image"])
        loss = F.cross_entropy(logits.float(), batch["label"])
        return {"loss": loss}

    def set_epoch(self, epoch: int) -> None:
        """Called by the trainer before each training epoch (0-based); schedules such as
        min-max's erasing warm-up hook in here. Default: nothing."""

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        # routing the step through forward() keeps wrappers (DDP, hooks) working
        return self.training_step(batch)

    # --- inference ------------------------------------------------------------------------
    def predict(self, images: torch.Tensor) -> Prediction:
        raise NotImplementedError

    def keep_progress_in(self, folder: Path | None, fingerprint: str) -> None:
        """Called before the test evaluation (``folder`` None after it): a method whose maps take
        hours (Score-CAM) keeps small, exact intermediate results in ``folder``, valid for
        ``fingerprint``, so that a stopped evaluation resumes after a fresh clone of committed
        records (the map cache is too large to commit). Default: nothing to keep."""

    def param_groups(self) -> list[dict]:
        """Parameter groups for the optimiser (override to give heads another lr)."""
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

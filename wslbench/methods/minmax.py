"""Min-max entropy model (Belharbi et al. 2019), with recursive erasing and trust coefficients.

One timm trunk shared by two Wildcat heads: the localizer f (``headseg``) gives class scores and
one map per class; its posterior-weighted map, upscaled and *detached*, becomes the pseudo-binary
mask M+ = sigmoid(w (norm(M) - sigma)). The classifier g (``cl32``, on a down-scaled input) must be
right on x * M+ (L+ = CE with the true label) and unable to decide on x * (1 - M+) (L- = CE against
the uniform distribution); f also gets its own CE (L_f, deep supervision). Because M+ is detached,
L+ and L- train g's head and the shared trunk only; ``headseg`` learns from L_f alone.

Facts taken from the authors' code (github.com/sbelharbi/wsol-min-max-entropy-interpretability,
GPL-3, read for facts only): deepmil/models.py (shared trunk, ``segment``/``classify``, classifier
input scale 0.5, bilinear with align_corners=True (config ``align_corners``), mask min-max over
the batch tensor, w=8, sigma=0.5), deepmil/decision_pooling.py (Wildcat dropout on the sorted activations),
deepmil/train.py (recursive erasing loop, trust, history, per-step backward of L_f),
deepmil/criteria.py (loss definitions, weights 1).
"""
from __future__ import annotations

import math
import warnings
from typing import get_args

import torch
import torch.nn.functional as F
from torch import nn

from wslbench.errors import ConfigError
from wslbench.methods import Method, Prediction
from wslbench.methods.backbone import create_backbone
from wslbench.methods.maps import MapRecipe, native_prediction, pseudo_binary, upsample
from wslbench.methods.pooling import WildcatHead
from wslbench.options import (Annotated, Backbone, BottomK, DropoutRate, Field, Literal, NonNegativeFloat, NonNegativeInt,
                              OutputStride, PositiveFloat, PositiveInt, Pretrained, TopK, UnitInterval)

MaskNorm = Literal["batch", "image"]
TrustRule = Literal["code", "paper"]
MASK_NORMS = get_args(MaskNorm)
TRUST_RULES = get_args(TrustRule)


# --- the formulas, as functions so that tests can check them on small tensors ------------------
def positive_loss(scores: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """L+ = -log Pr(y | x+): the NLL of the true class (paper Eq. 3)."""
    return F.cross_entropy(scores.float(), labels, reduction=reduction)


def negative_loss(scores: torch.Tensor) -> torch.Tensor:
    """L- = -(1/c) sum_k log Pr(k | x-), averaged over the batch (paper Eq. 5): cross-entropy
    against the uniform distribution, equal to log(c) exactly at a uniform prediction."""
    return -F.log_softmax(scores.float(), dim=1).mean(dim=1).mean()


def posterior_weighted_map(scores: torch.Tensor, class_maps: torch.Tensor) -> torch.Tensor:
    """M_down = sum_k softmax(scores)_k F_k: (B, C), (B, C, h, w) -> (B, h, w)."""
    return torch.einsum("bc,bchw->bhw", F.softmax(scores.float(), dim=1), class_maps.float())


def trust_step(t: int, probs: torch.Tensor, labels: torch.Tensor, loss_t: torch.Tensor, loss_0: torch.Tensor,
               active: torch.Tensor, slope: float, rule: str = "code") -> tuple[torch.Tensor, torch.Tensor]:
    """Trust Gamma_t = psi(t) * gamma_t of every sample, batched, and the updated ``active`` flags.

    psi(t) = exp(-t / slope); gamma_t = max_k Pr_f(k | x_t) if f still predicts y and its loss is
    not above the t = 0 loss, else 0; a sample that is not ``active`` has trust 0. ``code``: only a
    wrong label deactivates a sample for good (deepmil/train.py ``history``); ``paper``: any zero
    trust does (appendix A.1)."""
    p_top, pred = probs.max(dim=1)
    right = (pred == labels).to(probs.dtype)
    not_worse = (loss_t <= loss_0).to(probs.dtype)
    trust = math.exp(-float(t) / slope) * right * not_worse * p_top * active
    if rule == "paper":
        active = active * (trust != 0).to(active.dtype)
    else:
        active = torch.minimum(active, right)
    return trust, active


class MinMax(Method):
    """Min-max entropy (Belharbi et al. 2019): localizer + classifier with recursive erasing."""
    display_name = "Ours (min-max)"
    family = "ours"
    row_order = 40
    tag_names = {"noerase": "Ours, no erasing",  # model.erase_depth = 0 (Tables 3-5)
                 "maskimage": "Ours, mask per image",  # model.mask_norm=image (paper text; code: batch)
                 "sched": "Ours, published schedule"}  # the authors' lr x 0.1 every 40 epochs

    crf_applicable = True
    map_normalization = "min-max per image, then sigmoid(omega (m - sigma))"

    def __init__(
        self,
        num_classes: int,
        backbone: Backbone = "resnet101",
        pretrained: Pretrained = False,
        output_stride: OutputStride = None,
        modalities: PositiveInt = 5,
        kmax: TopK = 0.09,
        kmin: BottomK = 0.09,
        alpha: NonNegativeFloat = 0.0,
        dropout: DropoutRate = 0.75,
        classifier_scale: Annotated[float, Field(gt=0, le=1)] = 0.5,
        omega: PositiveFloat = 8.0,
        sigma: UnitInterval = 0.5,
        mask_norm: MaskNorm = "batch",
        erase_depth: NonNegativeInt = 4,
        erase_slope: PositiveFloat = 10.0,
        erase_start_epoch: NonNegativeInt = 1,
        trust_rule: TrustRule = "paper",
        weight_pos: NonNegativeFloat = 1.0,
        weight_neg: NonNegativeFloat = 1.0,
        weight_loc: NonNegativeFloat = 1.0,
        align_corners: bool = True,
        **config,
    ):
        super().__init__(num_classes, backbone=backbone, pretrained=pretrained, output_stride=output_stride,
                         modalities=modalities, kmax=kmax, kmin=kmin, alpha=alpha, dropout=dropout,
                         classifier_scale=classifier_scale, omega=omega, sigma=sigma, mask_norm=mask_norm,
                         erase_depth=erase_depth, erase_slope=erase_slope,
                         erase_start_epoch=erase_start_epoch, trust_rule=trust_rule,
                         weight_pos=weight_pos, weight_neg=weight_neg, weight_loc=weight_loc,
                         align_corners=align_corners, **config)
        if config:
            raise ConfigError(f"minmax: unknown model options {sorted(config)}")
        self.trunk, channels = create_backbone(backbone, pretrained, output_stride)
        if any(isinstance(m, (nn.GroupNorm, nn.LayerNorm)) for m in self.trunk.modules()):
            warnings.warn(
                f"minmax: the trunk {backbone!r} normalises per sample (GroupNorm/LayerNorm). A sample whose "
                "accumulated mask is empty (trust 0 at t = 0) gives an all-zero x+, and the per-sample "
                "normalisation of a constant has a 1/sqrt(eps) gradient per layer: training can diverge "
                "(measured: gradients ~1e25 on test_efficientnet_gn). A BatchNorm trunk (the paper's ResNets) "
                "does not have this problem.", RuntimeWarning, stacklevel=2)
        head = dict(num_classes=num_classes, modalities=int(modalities), kmax=kmax, kmin=kmin, alpha=alpha, dropout=dropout)
        self.headseg = WildcatHead(channels, **head)  # localizer f
        self.cl32 = WildcatHead(channels, **head)  # classifier g
        self.classifier_scale = float(classifier_scale)
        self.omega, self.sigma, self.mask_norm = float(omega), float(sigma), mask_norm
        self.erase_depth, self.erase_slope, self.trust_rule = int(erase_depth), float(erase_slope), trust_rule
        self.weight_pos, self.weight_neg, self.weight_loc = float(weight_pos), float(weight_neg), float(weight_loc)
        self.erase_start_epoch = int(erase_start_epoch)
        # authors' deepmil/models.py: ALIGN_CORNERS = True for every interpolation. On a map of n
        # cells it places the corner cells' centres on the image corners, i.e. stretches the mask
        # by n / (n - 1) per side about the centre (8x8 maps: +31% area); False keeps the cells
        # where the trunk's stride puts them, as the baselines' maps (methods/maps.py) do.
        self.align_corners = bool(align_corners)
        # the current training epoch (saved in checkpoints so a resumed run keeps it)
        self.register_buffer("epoch", torch.zeros((), dtype=torch.long))

    # --- epoch: erasing starts at ``erase_start_epoch`` (authors' epoch_start_erasing = 1) -------
    def set_epoch(self, epoch: int) -> None:
        """The trainer's per-epoch hook (0-based); the buffer travels with the checkpoint."""
        self.epoch.fill_(int(epoch))

    @property
    def active_erase_depth(self) -> int:
        """u for this step: 0 before ``erase_start_epoch`` (the localizer warms up first)."""
        return self.erase_depth if int(self.epoch) >= self.erase_start_epoch else 0

    # --- the two networks ------------------------------------------------------------------
    def segment(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Localizer f: (scores_f, class maps, continuous mask M upscaled to the input, detached)."""
        scores, maps = self.headseg(self.trunk(images))
        up = self.upscale(posterior_weighted_map(scores, maps), images.shape[-2:])
        return scores, maps, up.detach()  # detached: section A.2 / deepmil/models.py

    def upscale(self, maps: torch.Tensor, size) -> torch.Tensor:
        """(B, h, w) maps -> (B, H, W), bilinear (``align_corners``: see __init__)."""
        return upsample(maps, size, self.align_corners)

    def classify(self, images: torch.Tensor) -> torch.Tensor:
        """Classifier g: scores of the input down-scaled by ``classifier_scale``."""
        if self.classifier_scale != 1.0:
            h, w = images.shape[-2:]
            size = (max(1, int(h * self.classifier_scale)), max(1, int(w * self.classifier_scale)))
            images = F.interpolate(images, size=size, mode="bilinear", align_corners=self.align_corners)
        return self.cl32(self.trunk(images))[0]

    def mask(self, continuous: torch.Tensor, norm: str | None = None) -> torch.Tensor:
        return pseudo_binary(continuous, self.omega, self.sigma, norm or self.mask_norm)

    def forward_logits(self, images):
        return self.classify(images * self.mask(self.segment(images)[2]).unsqueeze(1))

    # --- training ---------------------------------------------------------------------------
    def _classifier_losses(self, images, labels, m_pos):
        m = m_pos.unsqueeze(1)
        loss_pos = positive_loss(self.classify(images * m), labels)
        loss_neg = negative_loss(self.classify(images * (1 - m)))
        return loss_pos, loss_neg

    def training_step(self, batch: dict) -> dict[str, torch.Tensor]:
        images, labels = batch["image"], batch["label"]
        if self.active_erase_depth == 0:  # the plain min-max step: one graph, the trainer back-propagates all
            scores_f, _, cont = self.segment(images)
            loss_loc = positive_loss(scores_f, labels)
            loss_pos, loss_neg = self._classifier_losses(images, labels, self.mask(cont))
            loss = self.weight_pos * loss_pos + self.weight_neg * loss_neg + self.weight_loc * loss_loc
            return {"loss": loss, "loss_pos": loss_pos.detach(), "loss_neg": loss_neg.detach(),
                    "loss_loc": loss_loc.detach(), "erase_steps": torch.zeros((), device=images.device)}
        m_acc, x, loss_loc_sum, steps = self.erase(images, labels)
        loss_pos, loss_neg = self._classifier_losses(images, labels, m_acc)
        loss = self.weight_pos * loss_pos + self.weight_neg * loss_neg
        # L_f was already back-propagated step by step; add its tracked value (a constant, no
        # gradient) as the authors' code does: sum over steps / (u + 1).
        loss_loc = loss_loc_sum / (self.erase_depth + 1)
        return {"loss": loss + self.weight_loc * loss_loc, "loss_pos": loss_pos.detach(),
                "loss_neg": loss_neg.detach(), "loss_loc": loss_loc,
                "erase_steps": torch.tensor(float(steps), device=images.device)}

    def erase(self, images: torch.Tensor, labels: torch.Tensor, backward: bool = True):
        """Recursive erasing (appendix A.1, Algorithm 1; deepmil/train.py), batched over samples.

        At each step t < u the localizer sees the current (erased) images; its loss L_f(t) is
        back-propagated at once (``backward``), so no graph outlives its step and peak memory does
        not grow with u. Returns the accumulated mask M_bar (B, H, W, no graph), the summed
        detached L_f, and the number of steps executed (stops early when no sample is active)."""
        b = images.shape[0]
        x = images
        m_acc = torch.zeros(b, *images.shape[-2:], device=images.device)
        active = torch.ones(b, device=images.device)
        loss_0 = None
        loss_sum = torch.zeros((), device=images.device)
        t = 0
        while t < self.active_erase_depth and bool(active.sum() > 0):
            scores_f, _, cont = self.segment(x)
            per_sample = positive_loss(scores_f, labels, reduction="none")
            if backward and torch.is_grad_enabled():
                (self.weight_loc * per_sample.mean()).backward()
            per_sample = per_sample.detach()
            loss_sum = loss_sum + per_sample.mean()
            probs = F.softmax(scores_f.detach().float(), dim=1)
            if loss_0 is None:
                loss_0 = per_sample.clone()
            trust, active = trust_step(t, probs, labels, per_sample, loss_0, active, self.erase_slope, self.trust_rule)
            m_acc = torch.maximum(m_acc, trust.view(-1, 1, 1) * self.mask(cont))
            erase_now = (trust != 0).to(x.dtype).view(-1, 1, 1, 1)
            x = (x * (1 - m_acc.unsqueeze(1)) * erase_now + x * (1 - erase_now)).detach()
            t += 1
        return m_acc, x, loss_sum, t

    # --- inference --------------------------------------------------------------------------
    def predict(self, images: torch.Tensor) -> Prediction:
        """Class from g(x * M+), localization M+ (no erasing). M+ is normalised per image here so
        a prediction does not depend on the evaluation batch (the authors evaluate with batch 1,
        where batch and per-image normalisation coincide)."""
        scores, maps = self.headseg(self.trunk(images))
        native = posterior_weighted_map(scores, maps)  # M at the trunk's resolution
        pred = native_prediction(None, native, images.shape[-2:], self.recipe)  # M+ = recipe(M)
        pred.logits = self.classify(images * pred.maps.unsqueeze(1))
        return pred

    @property
    def recipe(self) -> MapRecipe:
        """M -> M+: bilinear upscaling (``align_corners``), per-image min-max, sigmoid(omega (m - sigma))."""
        return MapRecipe(stored="M, the softmax-weighted sum of f's class maps, at the trunk's resolution",
                         align_corners=self.align_corners, normalize="pseudo_binary", omega=float(self.omega),
                         sigma=float(self.sigma))

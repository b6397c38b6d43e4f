"""CutMix (Yun et al., ICCV 2019) as a training regime for a CAM-Avg classifier: a random box
of one image is pasted into another and the label becomes a mix of both, weighted by area."""
from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field

from baselines.cam import CamAvg

#: Yun et al. 2019 sec. 3.1 / wsolevaluation config.py cutmix_beta: lambda ~ Beta(1, 1) = U(0, 1)
BETA = 1.0
#: wsolevaluation config.py cutmix_prob=1.0 (every batch is mixed; as CutMix's own ImageNet setup)
PROB = 1.0


def cutmix_box(height: int, width: int, lam: float) -> tuple[int, int, int, int]:
    """Yun et al. 2019 eq. (2): a box of side ratio sqrt(1 - lam) centred uniformly at random,
    clipped by the border; returns (y1, y2, x1, x2). Randomness: torch's global RNG."""
    ratio = (1.0 - lam) ** 0.5
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy, cx = int(torch.randint(height, ())), int(torch.randint(width, ()))
    y1, y2 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    x1, x2 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    return y1, y2, x1, x2


def cutmix(images: torch.Tensor, labels: torch.Tensor, beta: float = BETA):
    """Paste a box of a shuffled copy of the batch into it. Returns (mixed images, labels of the
    pasted images, pasted area fraction): the pasted image's label weight is the area it covers
    after clipping, the original label's weight one minus it."""
    lam = float(torch.distributions.Beta(beta, beta).sample())
    order = torch.randperm(images.shape[0]).to(images.device)
    h, w = images.shape[-2:]
    y1, y2, x1, x2 = cutmix_box(h, w, lam)
    mixed = images.clone()
    mixed[:, :, y1:y2, x1:x2] = images[order, :, y1:y2, x1:x2]
    area = (y2 - y1) * (x2 - x1) / float(h * w)
    return mixed, labels[order], area


class CutMix(CamAvg):
    """CutMix (Yun et al. 2019): CAM-Avg trained on box-mixed images with area-weighted labels."""
    display_name = "CutMix"
    family = "wsol"
    row_order = 24

    def __init__(self, num_classes: int,
                 beta: Annotated[float, Field(gt=0)] = BETA,
                 prob: Annotated[float, Field(ge=0, le=1)] = PROB,
                 **config):
        super().__init__(num_classes, beta=beta, prob=prob, **config)
        self.beta, self.prob = float(beta), float(prob)

    def training_step(self, batch: dict) -> dict[str, torch.Tensor]:
        if float(torch.rand(())) >= self.prob:  # this batch is not mixed
            return super().training_step(batch)
        mixed, pasted_labels, area = cutmix(batch["image"], batch["label"], self.beta)
        logits = self.forward_logits(mixed).float()
        loss = (1.0 - area) * F.cross_entropy(logits, batch["label"]) + area * F.cross_entropy(logits, pasted_labels)
        return {"loss": loss}

"""SPG, Self-Produced Guidance (Zhang et al., ECCV 2018), with the SPG-B and SPG-C auxiliary
losses as wsolevaluation trains them: a CAM-Avg classifier (SPG-A) whose class map, thresholded
into confident foreground / background / ignored pixels, supervises a one-channel map
predicted from an intermediate trunk stage (B2); B2's map in turn supervises one from an
earlier stage (B1, sharing B2's last layers); their fused map supervises one on the last
features (C). The localization map is SPG-A's class map."""
from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from wslbench.methods import Method
from wslbench.methods.backbone import create_backbone
from wslbench.methods.maps import class_map_prediction, minmax_normalize, select_class, upsample
from wslbench.methods.pooling import avg_pool
from wslbench.methods.stages import StageTaps
from wslbench.options import Backbone, OutputStride, Pretrained

# (high, low) thresholds of the three guidance targets: wsolevaluation config.py spg_threshold_*
THRESHOLD_1H, THRESHOLD_1L = 0.7, 0.01  # target of B2 from SPG-A's normalised class map
THRESHOLD_2H, THRESHOLD_2L = 0.5, 0.05  # target of B1 from sigmoid(B2)
THRESHOLD_3H, THRESHOLD_3L = 0.7, 0.1  # target of C from (sigmoid(B1) + sigmoid(B2)) / 2
#: wsolevaluation wsol/method/spg.py mask_fg: an image with fewer foreground pixels than this
#: takes as foreground the pixels above FALLBACK_RATIO x its maximum instead
MIN_FOREGROUND_PIXELS = 30
FALLBACK_RATIO = 0.7
#: ignored pixels of a guidance target (no loss)
IGNORE = -1.0
#: channel widths of the SPG-B and SPG-C branches (wsolevaluation wsol/resnet.py ResNetSpg)
B_CHANNELS, C_CHANNELS = 1024, 512
#: where B1 and B2 read the trunk. wsolevaluation taps ResNet's layer3 after its first block (B1)
#: and at its end (B2); at the granularity of timm feature stages: the stage before the
#: penultimate (B1) and the penultimate stage (B2).
B1_STAGE, B2_STAGE = -3, -2


def guidance_target(attention: torch.Tensor, high: float, low: float) -> torch.Tensor:
    """(B, H, W) map in [0, 1] -> target: 1 where > ``high`` (or, for an image with fewer than
    MIN_FOREGROUND_PIXELS such pixels, > FALLBACK_RATIO x its maximum), 0 where < ``low``
    (background wins a tie), IGNORE elsewhere."""
    fg = attention > high
    few = fg.flatten(1).sum(dim=1) < MIN_FOREGROUND_PIXELS
    peak = attention.flatten(1).max(dim=1).values.view(-1, 1, 1)
    fg = torch.where(few.view(-1, 1, 1), attention > FALLBACK_RATIO * peak, fg)
    target = torch.full_like(attention, IGNORE)
    target[fg] = 1.0
    target[attention < low] = 0.0
    return target.detach()


def guidance_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy with logits over the pixels that the target does not ignore (0 if none)."""
    valid = target != IGNORE
    if not bool(valid.any()):
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logits[valid], target[valid])


def _branch(in_channels: int, width: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU())


class Spg(Method):
    """SPG (Zhang et al. 2018): CAM-Avg with self-produced guidance losses (SPG-B, SPG-C)."""
    display_name = "SPG"
    family = "wsol"
    row_order = 22

    def __init__(self, num_classes: int, backbone: Backbone = "resnet18", pretrained: Pretrained = False,
                 output_stride: OutputStride = None,
                 threshold_1h: Annotated[float, Field(ge=0, le=1)] = THRESHOLD_1H,
                 threshold_1l: Annotated[float, Field(ge=0, le=1)] = THRESHOLD_1L,
                 threshold_2h: Annotated[float, Field(ge=0, le=1)] = THRESHOLD_2H,
                 threshold_2l: Annotated[float, Field(ge=0, le=1)] = THRESHOLD_2L,
                 threshold_3h: Annotated[float, Field(ge=0, le=1)] = THRESHOLD_3H,
                 threshold_3l: Annotated[float, Field(ge=0, le=1)] = THRESHOLD_3L,
                 b_channels: Annotated[int, Field(ge=1)] = B_CHANNELS,
                 c_channels: Annotated[int, Field(ge=1)] = C_CHANNELS,
                 b1_stage: int = B1_STAGE,
                 b2_stage: int = B2_STAGE,
                 **config):
        super().__init__(num_classes, backbone=backbone, pretrained=pretrained, output_stride=output_stride,
                         threshold_1h=threshold_1h, threshold_1l=threshold_1l, threshold_2h=threshold_2h,
                         threshold_2l=threshold_2l, threshold_3h=threshold_3h, threshold_3l=threshold_3l,
                         b_channels=b_channels, c_channels=c_channels, b1_stage=b1_stage, b2_stage=b2_stage, **config)
        self.trunk, channels = create_backbone(backbone, pretrained, output_stride)
        self.b1_stage, self.b2_stage = int(b1_stage), int(b2_stage)
        self.taps = StageTaps(self.trunk, (self.b1_stage, self.b2_stage))
        self.thresholds = ((float(threshold_1h), float(threshold_1l)), (float(threshold_2h), float(threshold_2l)),
                           (float(threshold_3h), float(threshold_3l)))
        self.classmaps = nn.Conv2d(channels, num_classes, kernel_size=1)  # SPG-A's class maps
        width = int(b_channels)
        self.b1_in = _branch(self.taps.channels[self.b1_stage], width)
        self.b2_in = _branch(self.taps.channels[self.b2_stage], width)
        self.b_shared = nn.Sequential(_branch(width, width), nn.Conv2d(width, 1, 1))
        self.c_branch = nn.Sequential(_branch(channels, int(c_channels)), nn.Conv2d(int(c_channels), 1, 1))

    def forward_logits(self, images):
        return avg_pool(self.classmaps(self.trunk(images)))

    def outputs(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Class maps and scores of SPG-A, and the one-channel logits of B1, B2 and C (B, h, w)."""
        features = self.trunk(images)
        maps = self.classmaps(features)
        return {
            "maps": maps,
            "logits": avg_pool(maps),
            "b1": self.b_shared(self.b1_in(self.taps[self.b1_stage]))[:, 0],
            "b2": self.b_shared(self.b2_in(self.taps[self.b2_stage]))[:, 0],
            "c": self.c_branch(features)[:, 0],
        }

    def guidance_targets(self, out: dict, labels: torch.Tensor, size) -> dict[str, torch.Tensor]:
        """The three targets at input size, from detached maps (wsolevaluation wsol/method/spg.py)."""
        (h1, l1), (h2, l2), (h3, l3) = self.thresholds
        attention = minmax_normalize(upsample(select_class(out["maps"].detach(), labels), size))
        b1 = torch.sigmoid(upsample(out["b1"].detach(), size))
        b2 = torch.sigmoid(upsample(out["b2"].detach(), size))
        return {"b2": guidance_target(attention, h1, l1),
                "b1": guidance_target(b2, h2, l2),
                "c": guidance_target((b1 + b2) / 2, h3, l3)}

    def training_step(self, batch: dict) -> dict[str, torch.Tensor]:
        images, labels = batch["image"], batch["label"]
        size = images.shape[-2:]
        out = self.outputs(images)
        targets = self.guidance_targets(out, labels, size)
        losses = {"loss_cls": F.cross_entropy(out["logits"].float(), labels)}
        for name in ("b2", "b1", "c"):
            losses[f"loss_{name}"] = guidance_loss(upsample(out[name], size), targets[name])
        loss = sum(losses.values())
        return {"loss": loss, **{k: v.detach() for k, v in losses.items()}}

    def predict(self, images):
        maps = self.classmaps(self.trunk(images))
        logits = avg_pool(maps)
        return class_map_prediction(maps, logits, images.shape[-2:])

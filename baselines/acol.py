"""ACoL, Adversarial Complementary Learning (Zhang et al., CVPR 2018): two classifier branches
on the trunk's features; the second sees the features erased where the first branch's map of
the image's class is confident, so it must find the object's other parts. The map is the
element-wise maximum of both branches' normalised maps."""
from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from wslbench.methods import Method
from wslbench.methods.backbone import create_backbone
from wslbench.methods.maps import MapRecipe, minmax_normalize, native_prediction, select_class
from wslbench.methods.pooling import avg_pool
from wslbench.options import Backbone, OutputStride, Pretrained

#: the two branches' fused map, bilinear to the input, min-max per image
FUSED_RECIPE = MapRecipe(stored="the maximum of the two branches' min-max-normalised maps of the predicted class, "
                                "at the trunk's resolution")

#: wsolevaluation config.py acol_threshold (Zhang et al. 2018's erasing threshold delta)
ERASE_THRESHOLD = 0.7
#: width of each branch's two 3x3 convolutions (Zhang et al. 2018 sec. 3.2; wsolevaluation wsol/resnet.py)
HEAD_CHANNELS = 1024


def conv_classifier(in_channels: int, width: int, num_classes: int) -> nn.Sequential:
    """An ACoL branch: conv3x3 - ReLU - conv3x3 - ReLU - conv1x1 to one map per class."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
        nn.Conv2d(width, num_classes, 1),
    )


def erase_confident(features: torch.Tensor, attention: torch.Tensor, threshold: float) -> torch.Tensor:
    """(B, K, h, w) features set to zero where the (B, h, w) attention in [0, 1] is >= threshold."""
    keep = (attention < threshold).to(features.dtype).unsqueeze(1)
    return features * keep


class Acol(Method):
    """ACoL (Zhang et al. 2018): two adversarial complementary classifier branches."""
    display_name = "ACoL"
    family = "wsol"
    row_order = 21

    def __init__(self, num_classes: int, backbone: Backbone = "resnet18", pretrained: Pretrained = False,
                 output_stride: OutputStride = None,
                 erase_threshold: Annotated[float, Field(ge=0, le=1)] = ERASE_THRESHOLD,
                 head_channels: Annotated[int, Field(ge=1)] = HEAD_CHANNELS,
                 **config):
        super().__init__(num_classes, backbone=backbone, pretrained=pretrained, output_stride=output_stride,
                         erase_threshold=erase_threshold, head_channels=head_channels, **config)
        self.trunk, channels = create_backbone(backbone, pretrained, output_stride)
        self.branch_a = conv_classifier(channels, int(head_channels), num_classes)
        self.branch_b = conv_classifier(channels, int(head_channels), num_classes)
        self.erase_threshold = float(erase_threshold)

    def branches(self, images: torch.Tensor, classes: torch.Tensor | None = None):
        """Class maps and scores of both branches; branch B erases by the map of ``classes``
        (the image labels in training, the predicted classes otherwise)."""
        features = self.trunk(images)
        maps_a = self.branch_a(features)
        logits_a = avg_pool(maps_a)
        classes = logits_a.argmax(dim=1) if classes is None else classes
        attention = minmax_normalize(select_class(maps_a.detach().float(), classes))
        maps_b = self.branch_b(erase_confident(features, attention, self.erase_threshold))
        return logits_a, avg_pool(maps_b), maps_a, maps_b

    def forward_logits(self, images):
        return avg_pool(self.branch_a(self.trunk(images)))

    def training_step(self, batch: dict) -> dict[str, torch.Tensor]:
        logits_a, logits_b, _, _ = self.branches(batch["image"], batch["label"])
        loss_a = F.cross_entropy(logits_a.float(), batch["label"])
        loss_b = F.cross_entropy(logits_b.float(), batch["label"])
        return {"loss": loss_a + loss_b, "loss_a": loss_a.detach(), "loss_b": loss_b.detach()}

    def predict(self, images):
        logits_a, _, maps_a, maps_b = self.branches(images)
        classes = logits_a.argmax(dim=1)
        fused = torch.maximum(minmax_normalize(select_class(maps_a.float(), classes)),
                              minmax_normalize(select_class(maps_b.float(), classes)))
        return native_prediction(logits_a, fused, images.shape[-2:], FUSED_RECIPE)

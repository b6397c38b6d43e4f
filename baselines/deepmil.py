"""Deep MIL (Ilse et al. 2018): attention-based multiple-instance pooling, where the instances
are the spatial feature vectors of the trunk's last map.

Multi-class adaptation (the min-max paper, section 4): one attention distribution per class, so
class c pools its own bag embedding z_c = sum_n a_{c,n} h_n and scores it with its own linear
unit. The localization map is the predicted class's attention map; it sums to 1 over positions
and is not a per-pixel class probability, which is why the paper leaves Deep MIL out of the CRF
rows (``crf_applicable = False``)."""
from __future__ import annotations

import torch
from torch import nn

from wslbench.methods import Method, Prediction
from wslbench.methods.backbone import create_backbone
from wslbench.methods.maps import minmax_normalize, select_class, upsample
from wslbench.options import Backbone, OutputStride, PositiveInt, Pretrained


class AttentionMilPool(nn.Module):
    """(B, D, h, w) features -> class scores (B, C) and attention (B, C, h, w), each class's
    attention summing to 1 over the h*w positions. ``gated``: Ilse et al.'s gated attention
    w^T (tanh(V h) * sigmoid(U h)); otherwise w^T tanh(V h)."""

    def __init__(self, in_channels: int, num_classes: int, hidden: int = 128, gated: bool = True):
        super().__init__()
        self.V = nn.Linear(in_channels, hidden)
        self.U = nn.Linear(in_channels, hidden) if gated else None
        self.w = nn.Linear(hidden, num_classes)
        self.classifier = nn.Parameter(torch.empty(num_classes, in_channels))
        self.bias = nn.Parameter(torch.zeros(num_classes))
        nn.init.normal_(self.classifier, std=in_channels ** -0.5)

    def attention(self, instances: torch.Tensor) -> torch.Tensor:
        """(B, N, D) instances -> (B, C, N) attention, softmax over the N instances."""
        hidden = torch.tanh(self.V(instances))
        if self.U is not None:
            hidden = hidden * torch.sigmoid(self.U(instances))
        return torch.softmax(self.w(hidden).transpose(1, 2), dim=2)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, d, h, w = features.shape
        instances = features.flatten(2).transpose(1, 2)  # (B, N, D)
        attn = self.attention(instances)  # (B, C, N)
        bags = attn @ instances  # (B, C, D): one embedding per class
        scores = (bags * self.classifier).sum(dim=2) + self.bias
        return scores, attn.view(b, -1, h, w)


class DeepMil(Method):
    """Deep MIL on a timm trunk; localization = the predicted class's attention map."""

    crf_applicable = False

    def __init__(self, num_classes: int, backbone: Backbone = "resnet18", pretrained: Pretrained = False,
                 output_stride: OutputStride = None, hidden: PositiveInt = 128, gated: bool = True, **config):
        super().__init__(num_classes, backbone=backbone, pretrained=pretrained, output_stride=output_stride,
                         hidden=hidden, gated=gated, **config)
        self.trunk, channels = create_backbone(backbone, pretrained, output_stride)
        self.pool = AttentionMilPool(channels, num_classes, hidden, gated)

    def forward_logits(self, images):
        return self.pool(self.trunk(images))[0]

    def predict(self, images):
        logits, attn = self.pool(self.trunk(images))
        chosen = select_class(attn, logits.argmax(dim=1))
        return Prediction(logits=logits, maps=minmax_normalize(upsample(chosen, images.shape[-2:])))

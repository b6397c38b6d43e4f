"""Deep MIL (Ilse et al. 2018): attention-based multiple-instance pooling, where the instances
are the spatial feature vectors of the trunk's last map.

Architecture as published: each instance is first embedded by a fully connected layer with ReLU
(h_n = ReLU(W x_n + b), 500 units: the L = 500 of the authors' code, AMLab-Amsterdam/
AttentionDeepMIL model.py, used by every setup of the paper), then the (gated) attention with a
128-unit hidden layer (their D = 128) weighs the embedded instances. ``embed_dim = 0`` attends
on the raw trunk features instead (this repository's earlier variant).

Multi-class adaptation (the min-max paper, section 4): one attention distribution per class, so
class c pools its own bag embedding z_c = sum_n a_{c,n} h_n and scores it with its own linear
unit. The localization map is the predicted class's attention map; it sums to 1 over positions
and is not a per-pixel class probability, which is why the paper leaves Deep MIL out of the CRF
rows (``crf_applicable = False``)."""
from __future__ import annotations

import torch
from torch import nn

from wslbench.methods import Method
from wslbench.methods.backbone import create_backbone
from wslbench.methods.maps import MapRecipe, native_prediction, select_class
from wslbench.options import Annotated, Backbone, Field, OutputStride, PositiveInt, Pretrained

#: the predicted class's attention map, bilinear to the input, min-max per image
ATTENTION_RECIPE = MapRecipe(stored="the predicted class's attention map at the trunk's resolution")


#: instance embedding width (Ilse et al. 2018; their code's L = 500) and attention hidden width (D = 128)
EMBED_DIM = 500
ATTENTION_HIDDEN = 128


class AttentionMilPool(nn.Module):
    """(B, D, h, w) features -> class scores (B, C) and attention (B, C, h, w), each class's
    attention summing to 1 over the h*w positions. Instances are embedded first,
    h = ReLU(E x) with ``embed_dim`` units (none when 0). ``gated``: Ilse et al.'s gated attention
    w^T (tanh(V h) * sigmoid(U h)); otherwise w^T tanh(V h)."""

    def __init__(self, in_channels: int, num_classes: int, hidden: int = ATTENTION_HIDDEN, gated: bool = True,
                 embed_dim: int = EMBED_DIM):
        super().__init__()
        self.embedding = nn.Sequential(nn.Linear(in_channels, embed_dim), nn.ReLU()) if embed_dim else nn.Identity()
        dim = embed_dim or in_channels
        self.V = nn.Linear(dim, hidden)
        self.U = nn.Linear(dim, hidden) if gated else None
        self.w = nn.Linear(hidden, num_classes)
        self.classifier = nn.Parameter(torch.empty(num_classes, dim))
        self.bias = nn.Parameter(torch.zeros(num_classes))
        nn.init.normal_(self.classifier, std=dim ** -0.5)

    def attention(self, instances: torch.Tensor) -> torch.Tensor:
        """(B, N, D) instances -> (B, C, N) attention, softmax over the N instances."""
        hidden = torch.tanh(self.V(instances))
        if self.U is not None:
            hidden = hidden * torch.sigmoid(self.U(instances))
        return torch.softmax(self.w(hidden).transpose(1, 2), dim=2)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, d, h, w = features.shape
        instances = self.embedding(features.flatten(2).transpose(1, 2))  # (B, N, L)
        attn = self.attention(instances)  # (B, C, N)
        bags = attn @ instances  # (B, C, D): one embedding per class
        scores = (bags * self.classifier).sum(dim=2) + self.bias
        return scores, attn.view(b, -1, h, w)


class DeepMil(Method):
    """Deep MIL on a timm trunk; localization = the predicted class's attention map."""
    display_name = "Deep MIL"
    family = "paper"
    row_order = 15

    crf_applicable = False

    def __init__(self, num_classes: int, backbone: Backbone = "resnet18", pretrained: Pretrained = False,
                 output_stride: OutputStride = None, hidden: PositiveInt = ATTENTION_HIDDEN, gated: bool = True,
                 embed_dim: Annotated[int, Field(ge=0)] = EMBED_DIM, **config):
        super().__init__(num_classes, backbone=backbone, pretrained=pretrained, output_stride=output_stride,
                         hidden=hidden, gated=gated, embed_dim=embed_dim, **config)
        self.trunk, channels = create_backbone(backbone, pretrained, output_stride)
        self.pool = AttentionMilPool(channels, num_classes, hidden, gated, embed_dim)

    def forward_logits(self, images):
        return self.pool(self.trunk(images))[0]

    def predict(self, images):
        logits, attn = self.pool(self.trunk(images))
        chosen = select_class(attn, logits.argmax(dim=1))
        return native_prediction(logits, chosen, images.shape[-2:], ATTENTION_RECIPE)

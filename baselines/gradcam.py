"""Grad-CAM (Selvaraju et al. 2017) on a standard classifier (global average pooling + linear).

The map of class c is ReLU(sum_k w_k A_k) with w_k the spatial mean of d score_c / d A_k over
the last feature map A. Written with ``torch.autograd.grad`` rather than the ``grad-cam``
package: it stays batched on the device, leaves the parameters' ``.grad`` untouched (the
package calls ``backward`` on the model) and avoids a numpy/OpenCV round trip per image. The
tests check it against that package and against a hand computation."""
from __future__ import annotations

import torch
from torch import nn

from wslbench.methods import Method, Prediction
from wslbench.methods.backbone import create_backbone
from wslbench.methods.maps import minmax_normalize, upsample
from wslbench.options import Backbone, OutputStride, Pretrained


def grad_cam(features: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """(B, K, h, w) features still in the graph of (B, C) scores -> (B, h, w) Grad-CAM of ``classes``."""
    chosen = scores.gather(1, classes.view(-1, 1)).sum()
    grads = torch.autograd.grad(chosen, features, retain_graph=False)[0]
    weights = grads.mean(dim=(2, 3), keepdim=True)
    return torch.relu((weights * features).sum(dim=1))


class GradCam(Method):
    """A GAP + linear classifier whose localization map is Grad-CAM of its predicted class."""

    def __init__(self, num_classes: int, backbone: Backbone = "resnet18", pretrained: Pretrained = False,
                 output_stride: OutputStride = None, **config):
        super().__init__(num_classes, backbone=backbone, pretrained=pretrained, output_stride=output_stride, **config)
        self.trunk, channels = create_backbone(backbone, pretrained, output_stride)
        self.fc = nn.Linear(channels, num_classes)

    def head(self, features):
        return self.fc(features.mean(dim=(2, 3)))

    def forward_logits(self, images):
        return self.head(self.trunk(images))

    def predict(self, images):
        with torch.enable_grad():  # evaluation runs under no_grad; Grad-CAM needs one backward
            features = self.trunk(images)
            if not features.requires_grad:  # frozen trunk: still differentiate w.r.t. A
                features.requires_grad_(True)
            logits = self.head(features)
            cam = grad_cam(features, logits.float(), logits.argmax(dim=1))
        return Prediction(logits=logits.detach(), maps=minmax_normalize(upsample(cam.detach(), images.shape[-2:])))

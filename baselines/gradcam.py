"""Grad-CAM (Selvaraju et al. 2017) on a standard classifier (global average pooling + linear).

The map of class c is ReLU(sum_k w_k A_k) with w_k the spatial mean of d score_c / d A_k over
a feature map A, by default the last one (the paper's choice: "the last convolutional layer",
Selvaraju et al. 2017, section 3). On this network that default is CAM with a ReLU: with
score_c = sum_k W_ck mean(A_k) + b_c, d score_c / d A_k(i, j) = W_ck / (h w), so
Grad-CAM = ReLU(sum_k W_ck A_k) / (h w), i.e. ReLU(CAM-Avg's map) up to the positive factor
1 / (h w), which the per-image min-max normalisation removes. The Grad-CAM row at the default
layer is therefore CAM-Avg's model (a linear head instead of the 1x1 conv, the same function)
with negative evidence clipped. ``target_layer`` picks another timm feature stage (an index into
the trunk's ``feature_info``, e.g. -2 for the stage before the last, or a module name), where
Grad-CAM differs from CAM. Written with ``torch.autograd.grad`` rather than the ``grad-cam``
package: it stays batched on the device, leaves the parameters' ``.grad`` untouched (the
package calls ``backward`` on the model) and avoids a numpy/OpenCV round trip per image. The
tests check it against that package and against a hand computation."""
from __future__ import annotations

import torch
from torch import nn

from wslbench.errors import ConfigError
from wslbench.methods import Method
from wslbench.methods.backbone import create_backbone
from wslbench.methods.maps import MapRecipe, native_prediction
from wslbench.options import Backbone, OutputStride, Pretrained

#: Grad-CAM at the target layer, bilinear to the input, min-max per image
GRADCAM_RECIPE = MapRecipe(stored="the predicted class's Grad-CAM at the target layer's resolution")


def grad_cam(features: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """(B, K, h, w) features still in the graph of (B, C) scores -> (B, h, w) Grad-CAM of ``classes``."""
    chosen = scores.gather(1, classes.view(-1, 1)).sum()
    grads = torch.autograd.grad(chosen, features, retain_graph=False)[0]
    weights = grads.mean(dim=(2, 3), keepdim=True)
    return torch.relu((weights * features).sum(dim=1))


#: Grad-CAM's layer: the last feature stage (Selvaraju et al. 2017, section 3: the last convolutional layer)
TARGET_LAYER = -1


def stage_module(trunk: nn.Module, target_layer: int | str) -> str:
    """The module name of a timm trunk's feature stage ``target_layer`` (an index into
    ``feature_info``, negative from the end) or ``target_layer`` itself when it names a module."""
    if isinstance(target_layer, str) and not target_layer.lstrip("-").isdigit():
        names = dict(trunk.named_modules())
        if target_layer not in names:
            raise ConfigError(f"gradcam: target_layer {target_layer!r} is not a module of the trunk")
        return target_layer
    stages = [f["module"] for f in getattr(trunk, "feature_info", [])]
    index = int(target_layer)
    if not -len(stages) <= index < len(stages):
        raise ConfigError(f"gradcam: target_layer {index} is out of range: the trunk has {len(stages)} "
                          f"feature stages ({', '.join(stages)}); use -{len(stages)}..{len(stages) - 1}")
    return stages[index]


class GradCam(Method):
    """A GAP + linear classifier whose localization map is Grad-CAM of its predicted class at
    ``target_layer`` (default: the last stage, where it equals ReLU(CAM) up to a positive factor)."""
    display_name = "Grad-CAM"
    family = "paper"
    row_order = 14

    def __init__(self, num_classes: int, backbone: Backbone = "resnet18", pretrained: Pretrained = False,
                 output_stride: OutputStride = None, target_layer: int | str = TARGET_LAYER, **config):
        super().__init__(num_classes, backbone=backbone, pretrained=pretrained, output_stride=output_stride,
                         target_layer=target_layer, **config)
        self.trunk, channels = create_backbone(backbone, pretrained, output_stride)
        self.fc = nn.Linear(channels, num_classes)
        module = stage_module(self.trunk, target_layer)
        stages = [f["module"] for f in getattr(self.trunk, "feature_info", [])]
        # the trunk's output is its last stage's map: no hook needed there
        self.target_module = None if stages and module == stages[-1] else module

    def head(self, features):
        return self.fc(features.mean(dim=(2, 3)))

    def forward_logits(self, images):
        return self.head(self.trunk(images))

    def gradcam_maps(self, images) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (B, C), Grad-CAM (B, h, w) of the predicted class at the target layer's resolution)."""
        captured = {}

        def keep(module, inputs, output):
            if not output.requires_grad:  # frozen trunk: still differentiate w.r.t. A
                output.requires_grad_(True)
            captured["A"] = output
            return output

        handle = self.trunk.get_submodule(self.target_module).register_forward_hook(keep) if self.target_module else None
        try:
            with torch.enable_grad():  # evaluation runs under no_grad; Grad-CAM needs one backward
                features = self.trunk(images)
                if handle is None:
                    if not features.requires_grad:  # frozen trunk: still differentiate w.r.t. A
                        features.requires_grad_(True)
                    captured["A"] = features
                logits = self.head(features)
                cam = grad_cam(captured["A"], logits.float(), logits.argmax(dim=1))
        finally:
            if handle is not None:
                handle.remove()
        return logits.detach(), cam.detach()

    def predict(self, images):
        logits, cam = self.gradcam_maps(images)
        return native_prediction(logits, cam, images.shape[-2:], GRADCAM_RECIPE)

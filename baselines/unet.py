"""U-Net (Ronneberger et al. 2015): the fully supervised upper bound. The only method that sees
pixel masks at training time. Built with segmentation-models-pytorch (a maintained U-Net with
any timm encoder through ``tu-<name>``) rather than written again."""
from __future__ import annotations

from pathlib import Path

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F

from wslbench.errors import ConfigError
from wslbench.methods import Method
from wslbench.methods.maps import FULL_RESOLUTION, native_prediction
from wslbench.methods.backbone import pretrained_source, pretrained_state_dict
from wslbench.options import Annotated, Backbone, Field, OutputStride, Pretrained


class UNet(Method):
    """U-Net with a timm encoder; one foreground logit per pixel, trained with pixel-wise BCE."""
    display_name = "Full sup. (U-Net)"
    family = "reference"
    row_order = 90

    uses_pixel_labels = True
    classifies = False
    map_normalization = "none (per-pixel sigmoid probability)"

    def __init__(self, num_classes: int, backbone: Backbone = "resnet18", pretrained: Pretrained = False,
                 output_stride: OutputStride = None, encoder_depth: Annotated[int, Field(ge=1, le=5)] = 5, **config):
        super().__init__(num_classes, backbone=backbone, pretrained=pretrained, encoder_depth=encoder_depth, **config)
        source = pretrained_source(backbone, pretrained)
        try:
            self.net = smp.Unet(encoder_name=f"tu-{backbone}", encoder_depth=int(encoder_depth),
                                encoder_weights="imagenet" if source is True else None, classes=1)
        except (KeyError, ValueError, RuntimeError) as exc:
            raise ConfigError(f"unet: cannot build a U-Net on timm encoder {backbone!r}: {exc}") from exc
        if isinstance(source, Path):
            self.load_encoder_weights(backbone, source)

    def load_encoder_weights(self, backbone: str, path: Path) -> None:
        """Load a timm classification checkpoint (or the file a package ships for ``backbone``,
        renamed by backbone.py) into the encoder (the classifier head is dropped)."""
        state = pretrained_state_dict(backbone, path)
        encoder = self.net.encoder.model
        missing, _ = encoder.load_state_dict(state, strict=False)
        if missing:
            raise ConfigError(f"unet: weights file {path} lacks {len(missing)} encoder tensors, e.g. {missing[:3]}")

    def training_step(self, batch):
        logits = self.net(batch["image"]).squeeze(1).float()
        loss = F.binary_cross_entropy_with_logits(logits, (batch["mask"] > 0).float())
        return {"loss": loss}

    def predict(self, images):
        return native_prediction(None, torch.sigmoid(self.net(images).squeeze(1).float()), images.shape[-2:], FULL_RESOLUTION)

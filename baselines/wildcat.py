"""Wildcat (Durand et al. 2017): M modality maps per class, averaged into class maps, pooled by
(mean of the kmax highest + alpha * mean of the kmin lowest activations) / 2, the formula of the
official code (durandtibo/wildcat.pytorch, wildcat/pooling.py; see wslbench.methods.pooling).

Defaults and their sources (the min-max paper gives none for its Wildcat row):
  modalities = 4, alpha = 0.7: the Wildcat paper's experimental setting (Durand et al., CVPR
      2017, section 4: M = 4, alpha = 0.7);
  kmax = kmin = 0.2 (a fraction of the locations): the official repository's VOC 2007 command
      (README: --k 0.2 --alpha 0.7; its WildcatPool2d sets kmin = kmax when kmin is None).
      The paper studies k per data set rather than fixing one value; 0.2 is the published
      command's."""
from __future__ import annotations

from wslbench.methods import Method
from wslbench.methods.backbone import create_backbone
from wslbench.methods.maps import class_map_prediction
from wslbench.methods.pooling import WildcatHead
from wslbench.options import (Backbone, BottomK, DropoutRate, NonNegativeFloat, OutputStride, PositiveInt,
                              Pretrained, TopK)


class Wildcat(Method):
    """Wildcat: a timm trunk and one Wildcat head; the localization map is the predicted class's map."""
    display_name = "Wildcat"
    family = "paper"
    row_order = 13

    def __init__(self, num_classes: int, backbone: Backbone = "resnet18", pretrained: Pretrained = False,
                 output_stride: OutputStride = None, modalities: PositiveInt = 4, kmax: TopK = 0.2,
                 kmin: BottomK = None, alpha: NonNegativeFloat = 0.7, dropout: DropoutRate = 0.0, **config):
        super().__init__(num_classes, backbone=backbone, pretrained=pretrained, output_stride=output_stride,
                         modalities=modalities, kmax=kmax, kmin=kmin, alpha=alpha, dropout=dropout, **config)
        self.trunk, channels = create_backbone(backbone, pretrained, output_stride)
        self.head = WildcatHead(channels, num_classes, modalities, kmax, kmin, alpha, dropout)

    def forward_logits(self, images):
        return self.head(self.trunk(images))[0]

    def predict(self, images):
        logits, maps = self.head(self.trunk(images))
        return class_map_prediction(maps, logits, images.shape[-2:])

"""CAM-Avg, CAM-Max and CAM-LSE: a timm trunk, a 1x1 conv to one map per class, and a spatial
pooling. They differ only by the pooling, so they share one class."""
from __future__ import annotations

from torch import nn

from wslbench.methods import Method
from wslbench.methods.backbone import create_backbone
from wslbench.methods.maps import class_map_prediction
from wslbench.methods.pooling import avg_pool, lse_pool, max_pool
from wslbench.options import Backbone, OutputStride, PositiveFloat, Pretrained


class ClassMapMethod(Method):
    """Trunk + 1x1 conv class maps + a pooling; the localization map is the predicted class's map."""

    def __init__(self, num_classes: int, backbone: Backbone = "resnet18", pretrained: Pretrained = False,
                 output_stride: OutputStride = None, **config):
        super().__init__(num_classes, backbone=backbone, pretrained=pretrained, output_stride=output_stride, **config)
        self.trunk, channels = create_backbone(backbone, pretrained, output_stride)
        self.classmaps = nn.Conv2d(channels, num_classes, kernel_size=1)

    def pool(self, maps):
        raise NotImplementedError

    def class_maps(self, images):
        return self.classmaps(self.trunk(images))

    def forward_logits(self, images):
        return self.pool(self.class_maps(images))

    def predict(self, images):
        maps = self.class_maps(images)
        logits = self.pool(maps)
        return class_map_prediction(maps, logits, images.shape[-2:])


class CamAvg(ClassMapMethod):
    """CAM-Avg (Zhou et al. 2016): global average pooling of class maps."""
    display_name = "CAM-Avg"
    family = "paper"
    row_order = 10

    def pool(self, maps):
        return avg_pool(maps)


class CamMax(ClassMapMethod):
    """CAM-Max (Oquab et al. 2015): global max pooling of class maps."""
    display_name = "CAM-Max"
    family = "paper"
    row_order = 11

    def pool(self, maps):
        return max_pool(maps)


#: LSE sharpness r: Pinheiro & Collobert's experimental setting (CVPR 2015, "From image-level to
#: pixel-level labeling", section 4: r = 5). The min-max paper cites them for CAM-LSE and states
#: no value of its own. The value was taken from memory of that paper (its text was not
#: reachable offline when this was written): check it before quoting CAM-LSE numbers.
LSE_R = 5.0


class CamLse(ClassMapMethod):
    """CAM-LSE (Pinheiro & Collobert 2015): log-sum-exp pooling, a smooth max; ``r`` defaults to
    their value (``LSE_R``)."""
    display_name = "CAM-LSE"
    family = "paper"
    row_order = 12

    def __init__(self, num_classes: int, r: PositiveFloat = LSE_R, **config):
        super().__init__(num_classes, r=r, **config)
        self.r = r

    def pool(self, maps):
        return lse_pool(maps, self.r)

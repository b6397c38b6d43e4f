"""All-ones: the constant full mask. It shows that F1+ alone rewards covering everything (on GlaS,
where glands fill much of the image, it scores a high F1+ and an F1- of 0). No parameters, no
training, no classification (its error is reported as n/a)."""
from __future__ import annotations

import torch

from wslbench.methods import Method
from wslbench.methods.maps import FULL_RESOLUTION, native_prediction


class AllOnes(Method):
    """Predicts the whole image as the region of interest."""
    display_name = "All-ones"
    family = "reference"
    row_order = 0
    contender = False  # a constant map: a reference, not a method

    classifies = False
    trainable = False
    crf_applicable = False
    map_normalization = "none (constant 1)"

    def predict(self, images):
        b, _, h, w = images.shape
        return native_prediction(None, torch.ones(b, h, w, device=images.device), (h, w), FULL_RESOLUTION)

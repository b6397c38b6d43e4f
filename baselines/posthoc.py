"""Post-hoc class activation maps from the ``grad-cam`` package (jacobgil/pytorch-grad-cam) on the
Grad-CAM baseline's classifier (timm trunk, global average pooling, linear layer).

One adapter, one subclass per map method. The target layer is the trunk's last feature map,
the target class the predicted one, as for the hand-written Grad-CAM (baselines/gradcam.py).
The package normalises each map to [0, 1] at feature resolution and resizes it to the image.

Without ``--from`` a post-hoc run trains its classifier exactly as Grad-CAM does (same
architecture, same seed: the same weights); ``wslbench run --method layercam --from RUN_DIR``
evaluates the classifier of a finished run instead (wslbench/train/from_run.py)."""
from __future__ import annotations

import hashlib
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from baselines.cam import CamAvg
from baselines.gradcam import GradCam
from wslbench.errors import ConfigError
from wslbench.methods.maps import FULL_RESOLUTION, MapRecipe, native_prediction


class _Logits(nn.Module):
    """The classifier as the package wants it: images -> class scores."""

    def __init__(self, method: GradCam):
        super().__init__()
        self.method = method

    def forward(self, images):
        return self.method.forward_logits(images)


def classifier_state(state: dict, source_cls: type) -> dict:
    """The weights of a finished run as a GAP + linear classifier. Grad-CAM and the post-hoc
    methods share that architecture; CAM-Avg and the regimes built on it (HaS, ADL, CutMix) are
    the same function written as a 1x1 convolution before the average (mean(W x + b) = W mean(x)
    + b), so their ``classmaps`` become ``fc``. Any other method's weights are refused."""
    if issubclass(source_cls, GradCam):
        return dict(state)
    if issubclass(source_cls, CamAvg):
        out = {k: v for k, v in state.items() if not k.startswith("classmaps.")}
        out["fc.weight"] = state["classmaps.weight"].flatten(1)
        out["fc.bias"] = state["classmaps.bias"]
        return out
    raise ConfigError(f"a {source_cls.__name__} classifier cannot be read as a GAP + linear classifier")


class PosthocCam(GradCam):
    """A GAP + linear classifier whose map is a ``grad-cam`` package method (subclasses name it)."""

    #: class name in the pytorch_grad_cam package
    cam_class: ClassVar[str] = ""
    #: ``wslbench run --from RUN_DIR`` evaluates a finished run's classifier with this method
    evaluates_from_run: ClassVar[bool] = True

    @staticmethod
    def compatible_source(source_cls: type) -> bool:
        """Which finished runs' classifiers this method can evaluate (see classifier_state)."""
        return issubclass(source_cls, (GradCam, CamAvg))

    def classifier_weights(self, state: dict, source_cls: type) -> dict:
        """A source run's weights as this method's state dict (checked before loading)."""
        return classifier_state(state, source_cls)

    def load_classifier(self, state: dict, source_cls: type) -> None:
        self.load_state_dict(self.classifier_weights(state, source_cls), strict=True)

    def cam(self):
        try:
            import pytorch_grad_cam
        except ImportError as exc:  # pragma: no cover - grad-cam is a dependency
            raise ConfigError("the post-hoc methods need the grad-cam package: pip install grad-cam") from exc
        return getattr(pytorch_grad_cam, self.cam_class)

    def predict(self, images):
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        was_training = self.training
        images = images.float()
        # the package reads activations into numpy (no bf16) and needs gradients
        with torch.enable_grad(), torch.autocast(images.device.type, enabled=False):
            with torch.no_grad():
                logits = self.forward_logits(images)
            targets = [ClassifierOutputTarget(int(c)) for c in logits.argmax(dim=1)]
            kept = []
            with capturing(self.cam(), kept)(model=_Logits(self), target_layers=[self.trunk]) as cam:
                maps = cam(input_tensor=images, targets=targets)
        self.zero_grad(set_to_none=True)  # the package back-propagates into the parameters
        self.train(was_training)
        # the map at the target layer's resolution, and the package's own steps from it to ``maps``
        native = torch.from_numpy(np.ascontiguousarray(kept[0], dtype=np.float32)).to(images.device)
        pred = native_prediction(logits, native, images.shape[-2:], PACKAGE_RECIPE)
        if pred.maps.shape != maps.shape or not np.array_equal(pred.maps.cpu().numpy(), maps):
            # a package version whose steps differ: keep its maps, stored at full resolution
            return native_prediction(logits, torch.from_numpy(maps).to(images.device).clamp(0, 1),
                                     images.shape[-2:], FULL_RESOLUTION)
        return pred


#: the package's map of the predicted class at the trunk's last map (after the package's ReLU), and
#: the package's own normalise-then-resize steps (wslbench.methods.maps.grad_cam_package_scale)
PACKAGE_RECIPE = MapRecipe(stored="the grad-cam package's map of the predicted class at the target layer's "
                                  "resolution, after its ReLU", normalize="grad_cam_package")


def capturing(package_cam: type, kept: list) -> type:
    """The package's CAM class, keeping in ``kept`` the map of each target layer before the
    package resizes it (what ``get_cam_image`` returns, after the package's ReLU)."""

    class Capturing(package_cam):
        def get_cam_image(self, *args, **kwargs):
            cam = super().get_cam_image(*args, **kwargs)
            kept.append(np.maximum(cam, 0))
            return cam

    return Capturing


class GradCamPlusPlus(PosthocCam):
    """Grad-CAM++ (Chattopadhay et al. 2018) on a GAP + linear classifier, via the grad-cam package."""
    display_name = "Grad-CAM++"
    family = "post-hoc"
    row_order = 30

    cam_class = "GradCAMPlusPlus"


class XGradCam(PosthocCam):
    """XGrad-CAM (Fu et al. 2020) on a GAP + linear classifier, via the grad-cam package."""
    display_name = "XGrad-CAM"
    family = "post-hoc"
    row_order = 31

    cam_class = "XGradCAM"


class LayerCam(PosthocCam):
    """LayerCAM (Jiang et al. 2021) on a GAP + linear classifier, via the grad-cam package."""
    display_name = "LayerCAM"
    family = "post-hoc"
    row_order = 32

    cam_class = "LayerCAM"


class ScoreCam(PosthocCam):
    """Score-CAM (Wang et al. 2020) on a GAP + linear classifier, via the grad-cam package.

    Its channel weights cost one forward per trunk channel (1280 for lite0: minutes an image on a
    CPU, hours a test set); they are all the map needs besides two forwards. During a test
    evaluation each image's weights are kept in the run's progress folder (a few KB an image,
    committed with the records), so a stopped evaluation resumes in a fresh clone."""
    display_name = "Score-CAM"
    family = "post-hoc"
    row_order = 33

    cam_class = "ScoreCAM"
    #: where the weights are kept during a test evaluation (keep_progress_in); None otherwise
    _memo = None

    def keep_progress_in(self, folder, fingerprint: str) -> None:
        from wslbench.evaluate import ArrayMemo

        self._memo = None if folder is None else ArrayMemo(folder, fingerprint)

    def cam(self):
        package_cam, memo = super().cam(), self._memo
        if memo is None:
            return package_cam

        class KeptWeights(package_cam):
            """The package's Score-CAM, its weights read from (or written to) the memo per image."""

            def get_cam_weights(self, input_tensor, target_layer, targets, activations, grads):
                keys = [weights_key(x, t.category) for x, t in zip(input_tensor, targets)]
                kept = [memo.get(k) for k in keys]
                if any(w is None for w in kept):
                    weights = super().get_cam_weights(input_tensor, target_layer, targets, activations, grads)
                    for k, w in zip(keys, weights):
                        memo.put(k, w)
                    return weights
                return np.stack(kept)

        return KeptWeights


def weights_key(image: torch.Tensor, category: int) -> str:
    """The memo key of one input image and target class: a hash of its values (layout aside)."""
    h = hashlib.sha256(image.detach().float().cpu().contiguous().numpy().tobytes())
    h.update(str(int(category)).encode())
    return h.hexdigest()


class HiResCam(PosthocCam):
    """HiResCAM (Draelos & Carin 2020) on a GAP + linear classifier, via the grad-cam package."""
    display_name = "HiResCAM"
    family = "post-hoc"
    row_order = 34

    cam_class = "HiResCAM"


class EigenCam(PosthocCam):
    """Eigen-CAM (Muhammad & Yeasin 2020) on a GAP + linear classifier, via the grad-cam package."""
    display_name = "Eigen-CAM"
    family = "post-hoc"
    row_order = 35

    cam_class = "EigenCAM"

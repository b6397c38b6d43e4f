"""Selection protocols: tau under the pixel budget comes from validation masks only; U-Net's
checkpoint is chosen on both Dice scores; config mistakes are one message."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from wslbench.errors import ConfigError
from wslbench.methods import Method, Prediction
from wslbench.protocols import Protocol, ProtocolConfig, protocol_config
from wslbench.registry import create_dataset

SYN = dict(n_train=6, n_val=12, n_test=6, image_size=32)


class Ramp(Method):
    """Maps that rise from left (0) to right (1), whatever the image; class 0 always."""

    def __init__(self, num_classes=3, **kw):
        super().__init__(num_classes)

    def predict(self, images):
        b, _, h, w = images.shape
        ramp = torch.linspace(0, 1, w).expand(b, h, w)
        return Prediction(logits=torch.zeros(b, self.num_classes), maps=ramp.clone())


class Everything(Method):
    """Marks every pixel foreground: F1+ alone would call it good."""

    uses_pixel_labels = True
    classifies = False

    def predict(self, images):
        b, _, h, w = images.shape
        return Prediction(logits=None, maps=torch.ones(b, h, w))


def _val_with_masks(fn):
    val = create_dataset("synthetic", split="val", **SYN)
    orig = val.raw
    val.raw = lambda i: (orig(i)[0], fn(orig(i)[1]))
    return val


def _right_of(frac):
    def fn(mask):
        out = np.zeros_like(mask, dtype=bool)
        out[:, int(round(frac * (mask.shape[1] - 1))) + 1:] = True
        return out
    return fn


def test_pixel_budget_tau_follows_validation_masks():
    proto = Protocol(ProtocolConfig(name="pixel_budget", images_per_class=2))
    dev = torch.device("cpu")
    # masks = the right part of the image: the ramp separates them at its edge
    tau_a, info = proto.threshold(Ramp(), _val_with_masks(_right_of(0.25)), dev)
    tau_b, _ = proto.threshold(Ramp(), _val_with_masks(_right_of(0.75)), dev)
    # ramp column j has the value j / 31; a mask starting at column c is matched by any tau in ((c-1)/31, c/31]
    assert 8 / 31 < tau_a <= 9 / 31 and 23 / 31 < tau_b <= 24 / 31
    assert info["protocol"] == "pixel_budget" and len(info["threshold_images"]) == 6  # 2 per class, 3 classes
    # the paper's protocol never looks: tau is the configured one
    assert Protocol(ProtocolConfig(), threshold=0.5).threshold(Ramp(), _val_with_masks(_right_of(0.25)), dev)[0] == 0.5


def test_budget_images_are_per_class_and_seeded():
    val = create_dataset("synthetic", split="val", **SYN)
    labels = np.array(val.labels)
    pick = Protocol(ProtocolConfig(name="pixel_budget", images_per_class=3, seed=4)).budget_indices(val)
    assert np.bincount(labels[pick]).tolist() == [3, 3, 3]
    assert pick == Protocol(ProtocolConfig(name="pixel_budget", images_per_class=3, seed=4)).budget_indices(val)
    assert pick != Protocol(ProtocolConfig(name="pixel_budget", images_per_class=3, seed=5)).budget_indices(val)
    assert Protocol(ProtocolConfig(name="pixel_budget")).budget_indices(val) == list(range(len(val)))


def test_unet_checkpoint_is_chosen_on_the_mean_of_both_dice_scores():
    proto = Protocol(ProtocolConfig())
    assert proto.selection(Everything(1)) == ("val_f1_mean", "max")
    val = create_dataset("synthetic", split="val", **SYN)
    rec = proto.validate(Everything(1), val, torch.device("cpu"))
    # marking everything: F1+ = 2|M| / (|M| + N) per image, F1- = 0 (the background is missed entirely)
    f1p = np.mean([2 * val.raw(i)[1].sum() / (val.raw(i)[1].sum() + val.raw(i)[1].size) for i in range(len(val))])
    assert rec["val_f1_pos"] == pytest.approx(f1p) and rec["val_f1_neg"] == 0.0
    assert rec["val_f1_mean"] == pytest.approx(f1p / 2)


def test_ties_rule():
    later, earlier = Protocol(ProtocolConfig()), Protocol(ProtocolConfig(ties="earlier"))
    assert later.is_best(10.0, 10.0, "min") == (True, False)  # new best checkpoint, patience not reset
    assert earlier.is_best(10.0, 10.0, "min") == (False, False)
    assert later.is_best(9.0, 10.0, "min") == (True, True) and later.is_best(11.0, 10.0, "min") == (False, False)
    assert later.is_best(0.7, 0.7, "max") == (True, False) and later.is_best(0.8, 0.7, "max") == (True, True)


@pytest.mark.parametrize("raw, words", [
    ({"name": "valpx"}, "unknown eval.protocol.name"),
    ({"name": "pixel_budget", "images_per_class": 0}, "positive integer"),
    ({"name": "pixel_budget", "images_per_clas": 5}, "unknown key eval.protocol.images_per_clas"),
    ({"name": "paper", "select_checkpoint": True}, "needs name: pixel_budget"),
    ({"ties": "first"}, "ties"),
])
def test_protocol_config_mistakes_are_one_message(raw, words):
    with pytest.raises(ConfigError, match=words):
        protocol_config({"protocol": raw})
    assert protocol_config({"protocol": "pixel_budget"}).name == "pixel_budget"
    assert protocol_config({"protocol": {"name": "pixel_budget", "images_per_class": "all"}}).images_per_class is None


def test_no_test_pixel_reaches_tau_in_a_run(tiny, tmp_path):
    """A run under pixel_budget (checkpoint chosen by validation localization too): re-evaluating
    it with every test mask changed keeps tau; changing the validation masks moves it."""
    from wslbench.train import Trainer, run

    cfg = tiny("cam-avg", epochs=2, extra=["train.max_steps_per_epoch=2", "eval.protocol.name=pixel_budget",
                                            "eval.protocol.images_per_class=2", "eval.protocol.select_checkpoint=true",
                                            "eval.save_masks=false", "eval.figures=false"])
    first = run(cfg, run_dir=tmp_path / "r")
    assert first["selection"] == "val_localization" and first["protocol"] == "pixel_budget"
    assert len(first["threshold_images"]) == 6 and all(i.startswith("val_") for i in first["threshold_images"])

    def rerun(split, fn):
        trainer = Trainer.from_run_dir(tmp_path / "r")
        build = trainer.dataset

        def dataset(name, augment=None):
            ds = build(name, augment)
            if name == split:
                orig = ds.raw
                ds.raw = lambda i: (orig(i)[0], fn(orig(i)[1]))
            return ds
        trainer.dataset = dataset
        if split == "val":
            trainer.val_set = dataset("val", augment=False)
        return trainer.evaluate_test()

    changed_test = rerun("test", lambda m: ~m)
    assert changed_test["threshold"] == first["threshold"]
    assert changed_test["f1_pos"] != first["f1_pos"]  # the test masks did change
    changed_val = rerun("val", lambda m: np.ones_like(m, dtype=bool))
    assert first["threshold"] != 0.0 and changed_val["threshold"] == 0.0  # all-foreground masks: mark everything
    saved = json.loads((tmp_path / "r" / "eval.json").read_text())
    assert saved["threshold"] == 0.0 and saved["protocol_config"]["images_per_class"] == 2


def test_evaluation_never_imports_the_trainer():
    import subprocess
    import sys

    code = ("import sys, wslbench.evaluate, wslbench.protocols, wslbench.external, wslbench.curves; "
            "print(sorted(m for m in sys.modules if m.startswith('wslbench.train')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


class Shapes(Ramp):
    """A Ramp that notes the input size of every prediction."""

    seen: list = []

    def predict(self, images):
        Shapes.seen.append(tuple(images.shape[-2:]))
        return super().predict(images)


@pytest.mark.parametrize("eval_cfg, expected", [
    ({"pad_multiple": 32}, (64, 64)),                          # 48 -> 64: the test's geometry
    ({"pad_multiple": 32, "pad_validation": False}, (48, 48)),  # the geometry of the older records
    ({"pad_multiple": 0}, (48, 48)),
])
def test_validation_is_predicted_with_the_tests_geometry(eval_cfg, expected):
    val = create_dataset("synthetic", split="val", **{**SYN, "image_size": 48})
    proto = Protocol.from_eval_config({**eval_cfg, "protocol": {"name": "pixel_budget", "images_per_class": 1}})
    method, dev = Shapes(), torch.device("cpu")
    Shapes.seen = []
    record = proto.validate(method, val, dev)
    tau, info = proto.threshold(method, val, dev)
    assert "val_error" in record and 0 < tau < 1
    assert set(Shapes.seen) == {expected} and len(Shapes.seen) == 12 + 3  # every validation image, then the budget's
    # the record says which geometry selected the checkpoint (absent: unpadded, as before)
    assert info.get("validation_pad_multiple", 0) == (32 if expected == (64, 64) else 0)


def test_the_e160_grid_pins_the_unpadded_validation_of_its_earlier_rows():
    from wslbench.sweep import expand, job_config, load_spec

    from conftest import REPO

    for name in ("glas_lite0.yaml", "glas_lite0_e160.yaml"):
        spec = load_spec(REPO / "experiments" / name)
        assert "eval.pad_validation=false" in spec["set"]
        cfg = job_config(expand(spec)[0])
        assert cfg.eval["pad_validation"] is False and cfg.eval["pad_multiple"] == 32
    from wslbench.config import resolve

    assert resolve("minmax", "glas").eval["pad_validation"] is True  # new experiments and the paper configs pad
    # min-max's published schedule as a variant of the 160-epoch grid, beside the common step at 107
    jobs = expand(load_spec(REPO / "experiments" / "glas_lite0_e160.yaml"))
    sched = [job_config(j) for j in jobs if j.row == "minmax+sched"]
    common = [job_config(j) for j in jobs if j.row == "minmax"]
    assert len(sched) == len(common) == 3
    assert {(c.optim.lr, c.optim.step_size, c.optim.gamma, c.optim.min_lr) for c in sched} == {(1e-3, 40, 0.1, 1e-7)}
    assert {c.optim.step_size for c in common} == {107} and {c.train.epochs for c in sched + common} == {160}

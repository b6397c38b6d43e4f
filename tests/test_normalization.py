"""Input normalisation comes from the config that states it (the paper configs: the authors'
0.5/0.5), else from the pretrained trunk's own statistics, else ImageNet's; the trainer's data
sets use exactly that (checked against (pixel/255 - mean)/std computed here)."""
from __future__ import annotations

import pytest
import timm
import torch

from conftest import tiny_config
from wslbench.config import resolve
from wslbench.errors import ConfigError
from wslbench.methods.backbone import normalization_for

HALF = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@pytest.mark.parametrize("dataset", ["glas", "cub", "cub5", "oxf"])
def test_paper_configs_state_the_authors_half_half(dataset):
    assert normalization_for(resolve("cam-avg", dataset)) == HALF
    assert normalization_for(resolve("minmax", dataset)) == HALF


def test_without_config_statistics_the_pretrained_trunk_decides():
    lite0 = tiny_config(extra=["model.backbone=tf_efficientnet_lite0", "model.pretrained=true"])
    effnet = tiny_config(extra=["model.backbone=test_efficientnet", "model.pretrained=true"])
    random = tiny_config(extra=["model.backbone=tf_efficientnet_lite0", "model.pretrained=false"])
    stated = tiny_config(extra=["model.backbone=tf_efficientnet_lite0", "model.pretrained=true",
                                "data.mean=[0.1,0.2,0.3]", "data.std=[0.4,0.5,0.6]"])
    assert normalization_for(lite0) == HALF  # timm's pretrained_cfg of lite0
    assert normalization_for(effnet) == IMAGENET
    assert normalization_for(random) == IMAGENET  # random weights have no statistics of their own
    assert normalization_for(stated) == ((0.1, 0.2, 0.3), (0.4, 0.5, 0.6))
    with pytest.raises(ConfigError, match="data.mean and data.std"):
        normalization_for(tiny_config(extra=["data.mean=[0.1,0.2,0.3]"]))


def _normalised_by(trainer, mean, std) -> bool:
    item = trainer.val_set[0]
    raw, _ = trainer.val_set.raw(0)
    expected = (torch.from_numpy(raw).permute(2, 0, 1).float() / 255 - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    return torch.allclose(item["image"], expected, atol=1e-5)


def test_trainer_data_sets_use_the_resolved_statistics(tmp_path):
    from wslbench.train.trainer import Trainer

    weights = tmp_path / "test_resnet.pth"  # a "pretrained" test_resnet: timm's cfg says 0.5/0.5
    torch.save(timm.create_model("test_resnet", pretrained=False).state_dict(), weights)
    pretrained = Trainer(tiny_config(extra=[f"model.pretrained={weights}"]), tmp_path / "a")
    assert _normalised_by(pretrained, *HALF) and not _normalised_by(pretrained, *IMAGENET)
    scratch = Trainer(tiny_config(), tmp_path / "b")  # synthetic: test_resnet, pretrained=false
    assert _normalised_by(scratch, *IMAGENET) and not _normalised_by(scratch, *HALF)
    stated = Trainer(tiny_config(extra=["data.mean=[0.2,0.3,0.4]", "data.std=[0.3,0.3,0.3]"]), tmp_path / "c")
    assert _normalised_by(stated, (0.2, 0.3, 0.4), (0.3, 0.3, 0.3))

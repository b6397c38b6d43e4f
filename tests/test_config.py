"""Config layering: defaults < dataset.yaml < method.yaml < --config < --set < CLI flags. The layering tests
use an unregistered data set "toy", so they skip the validation step (check=False; see test_validation.py)."""
import pytest
import yaml

from wslbench.config import DEFAULTS, apply_override, resolve
from wslbench.errors import ConfigError


@pytest.fixture
def exp(tmp_path, monkeypatch):
    root = tmp_path / "experiments"
    (root / "toy").mkdir(parents=True)
    (root / "toy" / "dataset.yaml").write_text(yaml.safe_dump(
        {"data": {"batch_size": 4, "patch_size": 32}, "optim": {"lr": 0.1, "weight_decay": 0.5}, "train": {"epochs": 3}}))
    (root / "toy" / "cam-avg.yaml").write_text(yaml.safe_dump(
        {"optim": {"lr": 0.2}, "model": {"backbone": "resnet18", "r": 1}, "train": {"epochs": 4}}))
    monkeypatch.setenv("WSLBENCH_EXPERIMENTS", str(root))
    return tmp_path


def test_override_order(exp):
    extra = exp / "extra.yaml"
    extra.write_text(yaml.safe_dump({"optim": {"lr": 0.3, "momentum": 0.5}, "train": {"epochs": 5}, "seed": 9}))
    cfg = resolve("cam-avg", "toy", config_files=[extra], overrides=["optim.lr=0.4", "epochs=6", "seed=11"], check=False,
                  cli={"train.epochs": 7, "seed": None})
    assert cfg.data["batch_size"] == 4  # dataset.yaml over defaults
    assert cfg.data["num_workers"] == DEFAULTS["data"]["num_workers"]  # default kept
    assert cfg.optim.weight_decay == 0.5  # dataset.yaml
    assert cfg.model == {"backbone": "resnet18", "r": 1}  # method.yaml
    assert cfg.optim.momentum == 0.5  # --config over defaults
    assert cfg.optim.lr == 0.4  # --set over --config over method.yaml over dataset.yaml
    assert cfg.seed == 11  # --set over --config; a None CLI value does not override
    assert cfg.train.epochs == 7  # CLI flag over everything


def test_bare_key_resolves_into_its_section(exp):
    cfg = resolve("cam-avg", "toy", overrides=["r=5", "patch_size=64"], check=False)
    assert cfg.model["r"] == 5 and cfg.data["patch_size"] == 64


def test_unknown_keys_fail_with_a_hint(exp):
    with pytest.raises(ConfigError, match="Did you mean"):
        resolve("cam-avg", "toy", overrides=["optim.lrr=1"], check=False)
    with pytest.raises(ConfigError, match="unknown config key 'bogus'"):
        resolve("cam-avg", "toy", overrides=["bogus=1"])
    with pytest.raises(ConfigError, match="key=value"):
        resolve("cam-avg", "toy", overrides=["optim.lr"])


def test_ambiguous_bare_key_is_refused():
    cfg = {"data": {"x": 1}, "model": {"x": 2}}
    with pytest.raises(ConfigError, match="ambiguous"):
        apply_override(cfg, "x", 3)


def test_values_are_parsed_as_yaml(exp):
    cfg = resolve("cam-avg", "toy", overrides=["model.pretrained=false", "optim.lr=1e-3", "model.sizes=[1, 2]"], check=False)
    assert cfg.model["pretrained"] is False and cfg.optim.lr == 1e-3 and cfg.model["sizes"] == [1, 2]


def test_config_is_frozen_and_round_trips(exp):
    from dataclasses import FrozenInstanceError

    from wslbench.config import from_dict

    cfg = resolve("cam-avg", "toy", check=False)
    with pytest.raises(FrozenInstanceError):
        cfg.seed = 3
    assert from_dict(yaml.safe_load(yaml.safe_dump(cfg.to_dict()))) == cfg


def test_a_missing_experiments_folder_is_said_once_not_silently_defaulted(monkeypatch, tmp_path, capsys):
    """Without experiments/ (a non-editable install run elsewhere) the paper's settings are not
    applied; the user is told once, naming where it looked and how to fix it."""
    from wslbench import config

    monkeypatch.setattr(config, "_WARNED", set())
    monkeypatch.setenv("WSLBENCH_EXPERIMENTS", str(tmp_path / "nowhere"))
    config.layered("minmax", "glas")
    config.layered("cam-avg", "glas")
    err = capsys.readouterr().err
    assert err.count("warning: no experiments folder") == 1 and str(tmp_path / "nowhere") in err
    assert "WSLBENCH_EXPERIMENTS" in err
    monkeypatch.setenv("WSLBENCH_EXPERIMENTS", str(tmp_path))  # exists: nothing to say
    config.layered("minmax", "glas")
    assert capsys.readouterr().err == ""

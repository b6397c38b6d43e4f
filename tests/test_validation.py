"""Every configuration value is checked before anything is built or written: one
`error:` line naming the key, the value and what is allowed; exit code 2; no traceback; no run
folder. Method options are covered from their signatures, so a new option is tested as soon as
it is declared."""
from typing import Annotated, Any, Literal

import pytest
import yaml
from click.testing import CliRunner

from conftest import TINY
from wslbench.cli import main
from wslbench.config import resolve
from wslbench.errors import ConfigError
from wslbench.options import Field, Option, describe
from wslbench.registry import list_methods
from wslbench.validation import method_options


def _sets(items):
    return [a for s in items for a in ("--set", s)]


def _yaml(value) -> str:
    text = yaml.safe_dump(value, default_flow_style=True).strip()
    return text[:-4].strip() if text.endswith("\n...") else text


def _files_under(path):
    return sorted(p for p in path.rglob("*")) if path.exists() else []


def _assert_refused(args, key, out):
    res = CliRunner().invoke(main, ["run", *args, "--out", str(out)])
    errors = [line for line in res.output.splitlines() if "error:" in line]
    assert res.exit_code == 2, res.output
    assert len(errors) == 1 and key in errors[0], res.output
    assert "Traceback" not in res.output and res.exception is None or isinstance(res.exception, SystemExit)
    assert _files_under(out) == [], f"{args} left {_files_under(out)}"
    return errors[0]


# bad values of model, optimiser, data, evaluation and run options, one per line
BAD_VALUES = [
    ("wildcat", ["--set", "model.kmax=abc"], "model.kmax", "'abc'"),
    ("cam-avg", ["--set", "optim.lr=-1"], "optim.lr", "-1"),
    ("cam-avg", ["--set", "optim.lr=abc"], "optim.lr", "'abc'"),
    ("cam-avg", ["--set", "data.batch_size=0"], "data.batch_size", "0"),
    ("cam-avg", ["--set", "data.patch_size=-5"], "data.patch_size", "-5"),
    ("wildcat", ["--set", "model.modalities=0"], "model.modalities", "0"),
    ("minmax", ["--set", "model.erase_depth=two"], "model.erase_depth", "'two'"),
    ("cam-avg", ["--epochs", "-1"], "train.epochs", "-1"),
    ("cam-avg", ["--epochs", "0"], "train.epochs", "0"),  # an untrained model would be recorded as finished
    ("cam-avg", ["--seed", "-3"], "seed", "-3"),
    ("cam-avg", ["--set", "optim.momentum=1.5"], "optim.momentum", "1.5"),
    ("cam-avg", ["--set", "optim.momentum=0"], "optim.nesterov", "0"),  # torch refuses Nesterov without momentum
    ("cam-avg", ["--set", "train.patience=0"], "train.patience", "0"),
    ("cam-avg", ["--set", "data.num_workers=-1"], "data.num_workers", "-1"),
    ("cam-avg", ["--set", "data.hflip=maybe"], "data.hflip", "'maybe'"),
    ("cam-avg", ["--set", "data.n_train=0"], "data.n_train", "0"),
    ("cam-avg", ["--set", "data.mean=[0.5, 0.5]"], "data.mean", "[0.5, 0.5]"),
    ("cam-avg", ["--set", "eval.threshold=2"], "eval.threshold", "2"),
    ("cam-avg", ["--set", "eval.crf_params.iterations=0"], "eval.crf_params.iterations", "0"),
    ("cam-avg", ["--set", "tag=a/b"], "tag", "'a/b'"),
    ("cam-avg", ["--set", "model.kmax=0.2"], "model.kmax", "not an option of method cam-avg"),
    ("cam-avg", ["--set", "data.bogus=1"], "data.bogus", "not an option"),
]


@pytest.mark.parametrize("method,args,key,shown", BAD_VALUES,
                         ids=[f"{m}:{' '.join(a)}" for m, a, _, _ in BAD_VALUES])
def test_bad_config_values_are_refused_before_anything_is_written(tmp_path, method, args, key, shown):
    line = _assert_refused(["-m", method, "-d", "synthetic", *_sets(TINY), *args], key, tmp_path / "runs")
    assert shown in line


def test_the_message_says_key_value_and_what_is_allowed(tmp_path):
    line = _assert_refused(["-m", "wildcat", "--set", "model.kmax=abc"], "model.kmax", tmp_path)
    assert line.endswith("model.kmax: expected a fraction in (0, 1) or an integer count >= 1, got 'abc'")


def test_several_bad_values_are_reported_at_once(tmp_path):
    res = CliRunner().invoke(main, ["run", "-m", "wildcat", *_sets(["optim.lr=-1", "model.alpha=-2", "seed=x"]),
                                    "--out", str(tmp_path)])
    assert res.exit_code == 2 and "3 bad config values" in res.output
    for key in ("optim.lr", "model.alpha", "seed"):
        assert f"  {key}: expected" in res.output
    assert sum("error:" in line for line in res.output.splitlines()) == 1


def _bad_value(option: Option):
    """The first of a few candidates that the option's declared type refuses."""
    for candidate in ("abc", -1, 0, 1.5, 2, True, None, [1], 10**9):
        if not option.accepts(candidate):
            return candidate
    return None


METHOD_OPTIONS = [(m, name) for m in list_methods() for name in method_options(m).options]


def test_the_generated_list_covers_the_methods_options():
    assert ("wildcat", "kmax") in METHOD_OPTIONS and ("minmax", "erase_depth") in METHOD_OPTIONS
    assert ("deepmil", "hidden") in METHOD_OPTIONS and ("cam-lse", "r") in METHOD_OPTIONS


@pytest.mark.parametrize("method,name", METHOD_OPTIONS, ids=[f"{m}.{n}" for m, n in METHOD_OPTIONS])
def test_every_option_of_every_method_refuses_a_bad_value(tmp_path, method, name):
    option = method_options(method).options[name]
    assert option.annotation is not Any, f"{method}: option {name!r} has no type annotation"
    bad = _bad_value(option)
    assert bad is not None, f"{method}.{name}: no bad value found for {option.allowed}"
    line = _assert_refused(["-m", method, "--set", f"model.{name}={_yaml(bad)}"], f"model.{name}", tmp_path)
    assert f"got {bad!r}" in line and option.allowed in line


@pytest.mark.parametrize("overrides", [
    ["model.kmax=1"],  # an integer count
    ["model.kmax=0.5", "model.kmin=0"],  # a fraction; kmin 0 drops the lowest activations
    ["optim.lr=1"],  # an integer for a float
    ["model.kmin=null", "train.patience=3", "data.patch_size=null"],
    ["data.mean=[0.5, 0.5, 0.5]"],  # a YAML list for a tuple
])
def test_good_values_pass(overrides):
    cfg = resolve("wildcat", "synthetic", overrides=overrides)
    assert cfg.method == "wildcat"


def test_an_untrained_method_may_run_zero_epochs_and_ignores_other_methods_shared_keys():
    cfg = resolve("all-ones", "synthetic", overrides=["train.epochs=0"])
    assert cfg.train.epochs == 0
    # experiments/synthetic/dataset.yaml sets model.backbone for every method; All-ones has no trunk
    assert cfg.model == {}
    with pytest.raises(ConfigError, match="model.backbone: not an option of method all-ones"):
        resolve("all-ones", "synthetic", overrides=["model.backbone=resnet18"])  # asked for on this run: refused


def test_describe_words_annotations():
    assert describe(Annotated[float, Field(gt=0, le=1)]) == "a number in (0, 1]"
    assert describe(Annotated[int, Field(ge=1)] | None) == "an integer >= 1 or null"
    assert describe(Literal["batch", "image"]) == "one of 'batch', 'image'"
    assert describe(tuple[float, float, float]) == "a list of 3 numbers"
    assert describe(Annotated[float, Field(lt=0.5)]) == "a number < 0.5"
    assert describe(bool) == "true or false"


@pytest.mark.parametrize("annotation,good,bad", [
    (float, [1, 0.5, -2.0], ["abc", "1", True, None]),
    (int, [3, -1], [1.5, "3", True]),
    (bool, [True, False], [1, "yes", None]),
    (Annotated[float, Field(gt=0, lt=1)], [0.5, 0.999], [0, 1, -0.5]),
    (tuple[float, float], [[0.1, 0.2], (1, 2)], [[0.1], "ab"]),
])
def test_option_checks_are_strict_about_yaml_types(annotation, good, bad):
    option = Option("x", annotation)
    assert all(option.accepts(v) for v in good)
    assert not any(option.accepts(v) for v in bad)


def test_a_method_built_directly_checks_its_declared_options():
    from baselines.wildcat import Wildcat

    with pytest.raises(ConfigError, match=r"model\.kmax: expected .* got 'abc'"):
        Wildcat(num_classes=2, backbone="test_resnet", kmax="abc")


def test_a_plugins_annotations_are_checked_for_free():
    from wslbench.methods import Method
    from wslbench.registry import METHODS

    class Gem(Method):
        def __init__(self, num_classes, p: Annotated[float, Field(gt=1)] = 3.0, **config):
            super().__init__(num_classes, p=p, **config)

    METHODS.register("gem-test", Gem)
    try:
        with pytest.raises(ConfigError, match=r"model\.p: expected a number > 1, got 0\.5"):
            resolve("gem-test", "synthetic", overrides=["model.p=0.5"])
        with pytest.raises(ConfigError, match=r"model\.pp: not an option of method gem-test\. Did you mean model\.p\?"):
            resolve("gem-test", "synthetic", overrides=["model.pp=2"])
        assert resolve("gem-test", "synthetic", overrides=["model.p=2"]).model == {"p": 2}
    finally:
        METHODS._entries.pop("gem-test")


def test_config_show_prints_value_allowed_range_and_source():
    res = CliRunner().invoke(main, ["config", "show", "-m", "wildcat", "-d", "synthetic", "--set", "model.kmax=3"])
    assert res.exit_code == 0, res.output
    rows = {line.split()[0]: line for line in res.output.splitlines() if line and not line.startswith("#")}
    assert "a fraction in (0, 1) or an integer count >= 1" in rows["model.kmax"] and rows["model.kmax"].endswith("--set")
    assert rows["model.kmax"].split()[1] == "3"
    assert rows["model.backbone"].endswith("experiments/synthetic/dataset.yaml")
    assert "default (Wildcat)" in rows["model.alpha"] and "a number >= 0" in rows["model.alpha"]
    assert "a number >= 0" in rows["optim.lr"] and "an integer >= 1 or null" in rows["data.patch_size"]
    res = CliRunner().invoke(main, ["config", "show", "-m", "all-ones", "-d", "synthetic"])
    assert "ignored: not an option of all-ones" in res.output
    res = CliRunner().invoke(main, ["config", "show", "-m", "wildcat", "--set", "model.kmax=abc"])
    assert res.exit_code == 2 and "model.kmax: expected" in res.output


SWEEP = """
methods: [cam-avg, wildcat]
datasets: [synthetic]
seeds: [0, 1]
set: [train.progress=false, model.kmax=0.3, {sets}]
methods_set: {{wildcat: [model.kmax=abc]}}
"""


@pytest.mark.parametrize("dry_run", [True, False])
def test_a_sweep_with_bad_values_fails_before_any_run_listing_every_bad_job(tmp_path, dry_run):
    path = tmp_path / "sweep.yaml"
    path.write_text(SWEEP.format(sets=", ".join(TINY)))
    out = tmp_path / "runs"
    res = CliRunner().invoke(main, ["sweep", str(path), "--out", str(out), *(["--dry-run"] if dry_run else [])])
    assert res.exit_code == 2, res.output
    assert "2 of 4 job(s) have a bad configuration" in res.output
    for seed in (0, 1):
        assert f"synthetic/wildcat/seed{seed}: model.kmax: expected" in res.output
    assert "cam-avg/seed" not in res.output  # cam-avg ignores the grid-wide kmax (only Wildcat/min-max take it)
    assert "running" not in res.output and "Traceback" not in res.output
    assert _files_under(out) == []


def test_eval_checks_its_checkpoint_option_and_the_run_config(tmp_path):
    from wslbench.io import atomic_write_yaml

    cfg = resolve("cam-avg", "synthetic", overrides=TINY).to_dict()
    cfg["optim"]["lr"] = -1  # a hand-edited config.yaml
    atomic_write_yaml(tmp_path / "config.yaml", cfg)
    (tmp_path / "best.pt").write_bytes(b"")
    res = CliRunner().invoke(main, ["eval", str(tmp_path), "--checkpoint", "nope.pt"])
    assert res.exit_code == 2 and "--checkpoint: no file 'nope.pt'" in res.output and "best.pt" in res.output
    res = CliRunner().invoke(main, ["eval", str(tmp_path)])
    assert res.exit_code == 2 and "optim.lr: expected a number >= 0, got -1" in res.output


def test_a_run_failing_before_its_first_epoch_leaves_no_folder(tmp_path, tiny, monkeypatch):
    from wslbench.errors import WslbenchError
    from wslbench.train.trainer import Trainer

    out = tmp_path / "runs"
    run_dir = out / "synthetic" / "cam-avg" / "seed0"
    res = CliRunner().invoke(main, ["run", "-m", "cam-avg", *_sets(TINY), "--epochs", "1", "--resume", "--out", str(out)])
    assert res.exit_code == 2 and "no checkpoint" in res.output
    assert not out.exists()  # the folders the run created, parents included, are gone

    def broken(self, *args):
        raise WslbenchError("disk full")

    monkeypatch.setattr(Trainer, "_write_run_header", broken)
    with pytest.raises(WslbenchError, match="disk full"):
        Trainer(tiny("cam-avg", epochs=1), run_dir).fit()
    assert not out.exists()


def test_a_run_failing_after_its_first_epoch_started_keeps_its_folder_as_failed(tmp_path, tiny, monkeypatch):
    import json

    from wslbench.train.trainer import Trainer

    run_dir = tmp_path / "runs" / "synthetic" / "cam-avg" / "seed0"

    def broken(self, epoch, partial=None):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(Trainer, "_train_epoch", broken)
    with pytest.raises(RuntimeError):
        Trainer(tiny("cam-avg", epochs=1), run_dir).fit()
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "failed" and "out of memory" in status["error"]

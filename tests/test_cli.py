"""The command line: a run end to end, the list, and one clear message for bad input."""
import json

from click.testing import CliRunner

from conftest import TINY
from wslbench.cli import main


def _sets(items):
    return [a for s in items for a in ("--set", s)]


def test_run_then_eval(tmp_path):
    r = CliRunner().invoke(main, ["run", "--method", "cam-avg", "--dataset", "synthetic", "--epochs", "1",
                                  "--out", str(tmp_path), *_sets(TINY)])
    assert r.exit_code == 0, r.output
    d = tmp_path / "synthetic" / "cam-avg" / "seed0"
    first = json.loads((d / "eval.json").read_text())
    assert "test: cls_error=" in r.output
    r2 = CliRunner().invoke(main, ["eval", str(d)])
    assert r2.exit_code == 0, r2.output
    again = json.loads((d / "eval.json").read_text())
    assert again["f1_pos"] == first["f1_pos"] and again["cls_error"] == first["cls_error"]


def test_list_prints_methods_and_datasets():
    r = CliRunner().invoke(main, ["list"])
    assert r.exit_code == 0
    lines = r.output.splitlines()
    assert "methods:" in lines and "datasets:" in lines
    assert any(line.split()[0] == "cam-avg" for line in lines if line.startswith("  "))
    assert any(line.split()[0] == "synthetic" for line in lines if line.startswith("  "))


def test_unknown_method_and_dataset_give_one_message():
    r = CliRunner().invoke(main, ["run", "--method", "nope", "--dataset", "synthetic"])
    assert r.exit_code == 2
    assert "error: unknown method 'nope'" in r.output and "Known methods:" in r.output
    assert "Traceback" not in r.output
    r = CliRunner().invoke(main, ["run", "--method", "cam-avg", "--dataset", "nope"])
    assert r.exit_code == 2 and "unknown dataset 'nope'" in r.output


def test_bad_override_and_missing_run_dir(tmp_path):
    r = CliRunner().invoke(main, ["run", "--method", "cam-avg", "--set", "optim.lrr=1"])
    assert r.exit_code == 2 and "Did you mean optim.lr?" in r.output
    r = CliRunner().invoke(main, ["eval", str(tmp_path)])
    assert r.exit_code == 2 and "not a run directory" in r.output


def test_help_documents_every_run_option():
    r = CliRunner().invoke(main, ["run", "--help"])
    for opt in ("--method", "--dataset", "--config", "--seed", "--epochs", "--device", "--data-root", "--out", "--resume", "--set"):
        assert opt in r.output


def test_every_command_has_help_for_each_option():
    import click

    def walk(group, prefix=()):
        for name, cmd in group.commands.items():
            if isinstance(cmd, click.Group):
                yield from walk(cmd, prefix + (name,))
            else:
                yield prefix + (name,), cmd

    seen = set()
    for path, cmd in walk(main):
        seen.add(" ".join(path))
        assert cmd.help, f"{path} has no docstring"
        r = CliRunner().invoke(main, [*path, "--help"])
        assert r.exit_code == 0
        for param in cmd.params:
            if isinstance(param, click.Option):
                assert param.help, f"{' '.join(path)} {param.opts} has no help text"
    assert {"run", "eval", "list", "tables", "figures", "sweep", "data check"} <= seen


def test_unknown_dataset_in_data_check_lists_known_ones():
    r = CliRunner().invoke(main, ["data", "check", "flowers"])
    assert r.exit_code == 2 and "Known datasets:" in r.output and "oxf" in r.output

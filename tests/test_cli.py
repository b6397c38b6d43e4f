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


def _list_rows(output):
    """{name: (column where its description starts, description)} of `wslbench list`'s lines."""
    rows = {}
    for line in output.splitlines():
        if line.startswith("  "):
            name = line.split()[0]
            rest = line[2 + len(name):]
            rows[name] = (len(line) - len(rest.lstrip()), rest.strip())
    return rows


def test_list_shows_first_sentence_across_line_breaks_and_aligns_long_names():
    from wslbench import registry
    from wslbench.methods import Method

    long_name = "a-method-with-a-rather-long-registry-name"

    @registry.register_method(long_name)
    class Long(Method):
        """Long-named test method (Smith et al. 2020, e.g. a ResNet) whose first sentence spans
        two lines. A second sentence that list must not show."""

    try:
        r = CliRunner().invoke(main, ["list"])
    finally:
        registry.METHODS._entries.pop(long_name)
    assert r.exit_code == 0, r.output
    rows = _list_rows(r.output)
    assert rows[long_name][1] == ("Long-named test method (Smith et al. 2020, e.g. a ResNet) whose first sentence "
                                  "spans two lines.")
    # a built-in whose first sentence runs over its docstring's first line
    assert rows["cam-lse"][1].endswith("defaults to their value (``LSE_R``).")
    columns = {column for column, _ in rows.values()}
    assert columns == {2 + len(long_name) + 2}, columns  # every description starts at one column
    assert rows["cam-avg"][1].startswith("CAM-Avg (Zhou et al. 2016)")


def test_list_shows_a_plugin_that_fails_to_load_with_its_reason(tmp_path, monkeypatch):
    """A real entry point (an installed distribution's metadata on sys.path) naming a module that
    does not import: `list` names it in its own section with the reason, and still exits 0."""
    import importlib

    from wslbench import registry

    dist = tmp_path / "wslbench_broken_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: wslbench-broken-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[wslbench.methods]\nbroken-plugin = wslbench_no_such_module:Thing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    monkeypatch.setattr(registry.METHODS, "_discovered", False)
    monkeypatch.setattr(registry.METHODS, "_broken", {})
    r = CliRunner().invoke(main, ["list"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    section = lines.index(next(line for line in lines if line.startswith("failed to load")))
    assert section > lines.index("datasets:")
    broken = [line for line in lines[section + 1:] if line.startswith("  ")]
    assert len(broken) == 1 and broken[0].split()[0] == "broken-plugin", broken
    assert ("(method; entry point wslbench_no_such_module:Thing: ModuleNotFoundError: "
            "No module named 'wslbench_no_such_module')") in broken[0]
    assert "broken-plugin" not in "\n".join(lines[:section])
    assert "cam-avg" in _list_rows("\n".join(lines[:section]))  # the working ones are all still listed


def test_list_has_no_failed_section_when_every_plugin_loads():
    r = CliRunner().invoke(main, ["list"])
    assert r.exit_code == 0 and "failed to load" not in r.output


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

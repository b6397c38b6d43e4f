"""Run folders read from a shared root are input like any other: a name read from disk never
sends a write outside the output the user named, a run folder is written only by the command
that owns it, `eval RUN` applies (or refuses) every option it is given, damaged bookkeeping files
end in one `error:` line naming the file, and long messages are cut."""
from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from tests.conftest import TINY, tiny_config
from wslbench.cli import friendly_errors, main
from wslbench.errors import DataError, WslbenchError
from wslbench.runs import discover, inside

RUN = Path("synthetic") / "cam-avg" / "seed0"
RUN_ARGS = ["run", "-m", "cam-avg", "--epochs", "1", *[a for s in TINY for a in ("--set", s)], "--set", "eval.figures=false"]
MAPS_ARGS = ["eval", "--maps", "MAPS", "-d", "synthetic", *[a for s in TINY[:4] for a in ("--set", s)]]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """One finished tiny run, under ROOT/synthetic/cam-avg/seed0; tests work on copies."""
    from wslbench.train import run

    root = tmp_path_factory.mktemp("finished")
    run(tiny_config("cam-avg", epochs=1, extra=["eval.figures=false"]), run_dir=root / RUN)
    return root


@pytest.fixture
def root(finished, tmp_path) -> Path:
    shutil.copytree(finished, tmp_path / "runs")
    return tmp_path / "runs"


def invoke(*args) -> click.testing.Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def refused(res, *words) -> str:
    """The command ended in one `error:` line holding ``words``, no traceback."""
    out = res.output
    assert res.exit_code == 2, out
    assert isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in out and "error: " in out, out
    for w in words:
        assert w in out, out
    return out


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def set_config(run_dir: Path, **values) -> None:
    import yaml

    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config.update(values)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def unfinished(run_dir: Path) -> None:
    """What a run stopped by SIGTERM mid-training leaves: config.yaml, last.pt, status interrupted."""
    (run_dir / "eval.json").unlink()
    (run_dir / "status.json").write_text(json.dumps({"state": "interrupted", "epoch": 1}))


# --- 1. names read from disk never send a write outside --out -----------------------------------
@pytest.mark.parametrize("name", ["ABS", "../../escaped", "ok/../../../escaped", "/"])
@pytest.mark.parametrize("command", ["tables", "figures"])
def test_experiment_read_from_disk_never_writes_outside_out(root, tmp_path, name, command):
    target = tmp_path / "elsewhere"
    set_config(root / RUN, experiment=str(target) if name == "ABS" else name)
    out = tmp_path / "a" / "b" / "out"
    extra = ["-d", "synthetic"] if command == "figures" else []
    res = invoke(command, "--runs", root, "--out", out, *extra)
    text = refused(res, "no finished", "experiment name", str(root / RUN))
    assert "skipped" in text
    assert not target.exists() and not (tmp_path / "a" / "escaped").exists() and not (tmp_path / "escaped").exists()
    assert not out.exists() or not any(out.rglob("*.*"))


def test_a_run_with_a_bad_experiment_is_skipped_and_the_others_are_tabled(root, tmp_path):
    shutil.copytree(root / RUN, root / "synthetic" / "cam-avg" / "seed1")
    set_config(root / "synthetic" / "cam-avg" / "seed1", seed=1, experiment="../../x")
    found = discover(root)
    assert [r.path for r in found.finished] == [root / RUN]
    assert "experiment name" in found.skipped[0][1]
    res = invoke("tables", "--runs", root, "--out", tmp_path / "out")
    assert res.exit_code == 0, res.output
    assert "1 run skipped: bad config.yaml" in res.output
    assert not (tmp_path / "x").exists()


def test_experiment_outputs_stay_inside_the_output_folder(tmp_path):
    assert inside(tmp_path, "glas_lite0/ablation") == tmp_path / "glas_lite0" / "ablation"
    for bad in ("/etc", "../x", "a/../../x"):
        with pytest.raises(DataError, match="not a folder name under"):
            inside(tmp_path, bad)


# --- 2. a run folder is written only by the command that owns it ---------------------------------
def test_eval_maps_refuses_to_write_into_a_stopped_run(root, tmp_path):
    run_dir = root / RUN
    unfinished(run_dir)
    before = snapshot(run_dir)
    (tmp_path / "maps").mkdir()
    args = [a if a != "MAPS" else tmp_path / "maps" for a in MAPS_ARGS]
    refused(invoke(*args, "--name", "cam-avg", "--out", run_dir), "is a run folder", "config.yaml", "last.pt")
    assert snapshot(run_dir) == before


def test_eval_run_refuses_while_a_live_lock_is_held(root):
    run_dir = root / RUN
    lock = {"host": socket.gethostname(), "pid": os.getpid()}  # this process: alive
    (run_dir / "run.lock").write_text(json.dumps(lock))
    before = snapshot(run_dir)
    refused(invoke("eval", run_dir), "in use by another run")
    assert snapshot(run_dir) == before


# --- 3. eval RUN applies or refuses every option -------------------------------------------------
def test_eval_run_applies_eval_overrides_and_records_them(root):
    run_dir = root / RUN
    config = (run_dir / "config.yaml").read_bytes()
    res = invoke("eval", run_dir, "--set", "eval.threshold=0.9", "--data-root", "/nonexistent")
    assert res.exit_code == 0, res.output
    ev = json.loads((run_dir / "eval.json").read_text())
    assert ev["threshold"] == 0.9
    assert ev["eval_overrides"] == {"eval.threshold": 0.9, "data.root": "/nonexistent"}
    assert "epochs_run" in ev  # what training recorded is kept
    assert not (run_dir / "run.lock").exists()  # the evaluation's own lock is gone
    assert (run_dir / "config.yaml").read_bytes() == config  # the record of the run is not rewritten


@pytest.mark.parametrize("option", [["--out", "x"], ["--name", "other"], ["--seed", "3"], ["--classes", "c.csv"],
                                    ["--map-normalization", "minmax"], ["--dataset", "synthetic"]])
def test_eval_run_refuses_options_that_only_describe_maps(root, option):
    before = snapshot(root / RUN)
    refused(invoke("eval", root / RUN, *option), option[0], "only with --maps")
    assert snapshot(root / RUN) == before


@pytest.mark.parametrize("setting, words", [("eval.threshold=7", ["eval.threshold", "7"]),
                                             ("eval.bogus=1", ["eval.bogus", "not an option"]),
                                             ("data.scale=0.5", ["data.scale", "only eval.*"]),
                                             ("eval.curve_interval=0", ["eval.curve_interval"])])
def test_eval_run_validates_its_overrides(root, setting, words):
    before = snapshot(root / RUN)
    refused(invoke("eval", root / RUN, "--set", setting), *words)
    assert snapshot(root / RUN) == before


@pytest.mark.parametrize("setting, words", [("eval.threshold=7", ["eval.threshold", "7"]),
                                             ("eval.bogus=1", ["eval.bogus", "not an option"]),
                                             ("eval.curve_interval=0", ["eval.curve_interval"]),
                                             ("data.bogus=1", ["data.bogus"])])
def test_eval_maps_validates_its_config_like_run(tmp_path, setting, words):
    (tmp_path / "maps").mkdir()
    args = [a if a != "MAPS" else tmp_path / "maps" for a in MAPS_ARGS]
    refused(invoke(*args, "--set", setting, "--out", tmp_path / "out"), *words)
    assert not (tmp_path / "out").exists()


# --- 4. damaged bookkeeping files: one line naming the file --------------------------------------
DAMAGED = [
    ("eval.json", "{bad"), ("eval.json", "[1, 2]"), ("eval.json", "{}"),
    ("eval.json", '{"f1_pos": "abc", "f1_neg": 0.5}'), ("eval.json", '{"f1_pos": 0.5, "f1_neg": 0.5, "cls_error": "x"}'),
    ("eval.json", '{"f1_pos": 0.5, "f1_neg": 0.5, "protocol_label": [1]}'),
    ("eval.json", '{"f1_pos": 0.5, "f1_neg": 0.5, "method": "gradcam"}'),
    ("status.json", "{bad"), ("status.json", "[1]"), ("status.json", "{}"),
    ("config.yaml", "method: [unclosed"), ("config.yaml", "- 1\n- 2\n"), ("config.yaml", "SEED"),
    ("config.yaml", "METHOD"), ("config.yaml", "DATA"),
    ("run.lock", "{bad"), ("run.lock", "[1, 2]"),
]


def damage(run_dir: Path, name: str, text: str) -> None:
    if text == "SEED":
        return set_config(run_dir, seed="abc")
    if text == "METHOD":
        return set_config(run_dir, method="../gradcam")
    if text == "DATA":
        return set_config(run_dir, data=[1, 2])
    (run_dir / name).write_text(text)


@pytest.mark.parametrize("name, text", DAMAGED)
def test_damaged_run_files_end_in_one_line_naming_the_file(root, tmp_path, name, text):
    run_dir = root / RUN
    damage(run_dir, name, text)
    before = snapshot(run_dir)
    lock = name == "run.lock"

    res = invoke("tables", "--runs", root, "--out", tmp_path / "tables")
    if lock:  # a lock says nothing about a finished run's scores
        assert res.exit_code == 0, res.output
    else:  # the only run is skipped with its reason
        refused(res, "no finished", str(run_dir))
    res = invoke("figures", "--runs", root, "-d", "synthetic", "--out", tmp_path / "figures")
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert res.exit_code == (0 if lock else 2) and "Traceback" not in res.output, res.output

    refused(invoke("eval", run_dir), str(run_dir / name))
    res = invoke(*RUN_ARGS, "--out", root, "--resume")
    if lock:  # resuming a finished run returns its result and writes nothing: no lock is needed
        assert res.exit_code == 0 and "Traceback" not in res.output, res.output
    else:
        refused(res, str(run_dir / name))
    res = invoke("rescore", root)
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output and str(run_dir / name) in res.output and "not rescored" in res.output
    assert snapshot(run_dir) == before  # nothing rewritten


def test_eval_json_without_scores_is_not_a_finished_run(root):
    from wslbench.io import finished_result

    (root / RUN / "eval.json").write_text("{}")
    assert finished_result(root / RUN) is None
    found = discover(root)
    assert not found.finished and "without scores" in found.skipped[0][1]


def test_the_committed_records_pass_the_run_file_checks():
    """The checks refuse damaged files, not the records the repository ships."""
    from wslbench.runs import check_run_files, find_run_dirs

    records = Path(__file__).resolve().parents[1] / "results"
    dirs = find_run_dirs(records) if records.is_dir() else []
    if not dirs:
        pytest.skip("no committed run records")
    for run_dir in dirs:
        check_run_files(run_dir)
    assert not [s for s in discover(records).skipped if "config.yaml" in s[1] or "eval.json" in s[1]]


# --- 5. an output under a file, or not writable ---------------------------------------------------
@pytest.mark.parametrize("command", ["run", "maps", "tables", "figures"])
def test_out_under_a_file_is_one_line(root, tmp_path, command):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = blocker / "sub"
    (tmp_path / "maps").mkdir()
    args = {"run": RUN_ARGS, "maps": [a if a != "MAPS" else tmp_path / "maps" for a in MAPS_ARGS],
            "tables": ["tables", "--runs", root], "figures": ["figures", "--runs", root, "-d", "synthetic"]}[command]
    refused(invoke(*args, "--out", out), str(blocker), "is a file")
    assert blocker.read_text() == "x"


@pytest.mark.parametrize("command", ["run", "maps", "tables"])
def test_read_only_out_is_one_line(root, tmp_path, command, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == ro else real(p, mode))  # root ignores chmod
    (tmp_path / "maps").mkdir()
    args = {"run": RUN_ARGS, "maps": [a if a != "MAPS" else tmp_path / "maps" for a in MAPS_ARGS],
            "tables": ["tables", "--runs", root]}[command]
    refused(invoke(*args, "--out", ro / "out"), str(ro), "not writable")
    assert not any(ro.iterdir())


def test_a_write_the_file_system_refuses_is_one_line(root, tmp_path, monkeypatch):
    import wslbench.io

    def refuse(path, data):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(wslbench.io, "atomic_write_bytes", refuse)
    refused(invoke("tables", "--runs", root, "--out", tmp_path / "out"), "cannot write", "Permission denied")


# --- 6. long messages are cut ---------------------------------------------------------------------
def test_long_messages_are_cut():
    @click.command()
    @friendly_errors
    def boom():
        raise WslbenchError("x" * 50_000 + "END")

    res = CliRunner().invoke(boom, [])
    assert res.exit_code == 2
    assert len(res.output) < 2200 and "END" not in res.output
    assert "48,003 more characters cut" in res.output


def test_a_long_bad_value_is_cut_in_the_message(tmp_path):
    """A value quoted in a message (here 3,000 learning rates) is shown in part, not in full."""
    res = invoke(*RUN_ARGS, "--set", "optim.lr=[" + ",".join(["1.5"] * 3000) + "]", "--out", tmp_path / "out")
    out = refused(res, "optim.lr", "more characters cut")
    assert len(out) < 2200, len(out)
    assert not (tmp_path / "out").exists()

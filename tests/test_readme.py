"""The README's test command is exactly what CI runs."""
from conftest import REPO


def test_ci_runs_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    marker = ci.index("# --- the README's test command (tests/test_readme.py checks they stay identical) ---")
    command = ci[marker + 1].strip()
    readme = (REPO / "README.md").read_text()
    assert f"HF_HUB_OFFLINE=1 {command}" in readme  # CI exports HF_HUB_OFFLINE=1 just before
    assert "export HF_HUB_OFFLINE=1" in ci
    assert "pip install -q -c constraints.txt -e \".[test]\"" in "\n".join(ci)
    assert "pip install -c constraints.txt -e \".[test]\"" in readme


def test_default_run_folder_is_not_in_git():
    """A clone starts with an empty results/runs/, so the README's first command can run there
    (a finished run is never overwritten); recorded runs live in results/records/."""
    import subprocess

    from conftest import REPO

    tracked = subprocess.run(["git", "-C", str(REPO), "ls-files", "results/runs"], capture_output=True, text=True)
    assert tracked.returncode == 0 and tracked.stdout.strip() == ""
    ignored = subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q", "results/runs/synthetic/minmax/seed0/eval.json"])
    assert ignored.returncode == 0


def test_readme_tables_are_the_generated_ones():
    """The tables the README shows are the files `wslbench tables` wrote from the recorded runs:
    the GlaS comparison with the pretrained trunk (30 and 160 epochs) and the from-scratch floor."""
    from conftest import REPO

    readme = (REPO / "README.md").read_text()
    for marker, experiment in (("table2-glas_lite0", "glas_lite0"), ("table2-glas_lite0_e160", "glas_lite0_e160"),
                               ("table2-cpu_scratch", "cpu_scratch")):
        shown = readme.split(f"<!-- {marker}:begin -->")[1].split(f"<!-- {marker}:end -->")[0].strip()
        assert shown == (REPO / "results" / "tables" / experiment / "table2.md").read_text().strip(), experiment
        assert "GlaS F1+" in shown or "GlaS [paper] F1+" in shown  # [protocol] once a rescore adds another
    assert "from scratch" in readme and "tf_efficientnet_lite0" in readme

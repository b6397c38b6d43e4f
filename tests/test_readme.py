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

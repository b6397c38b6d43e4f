"""A third-party package registers a method through the ``wslbench.methods`` entry point, exactly
as docs/adding_a_method.md describes: pip-install it, see it in ``wslbench list``, build it."""
from __future__ import annotations

import contextlib
import importlib
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PLUGIN = "wslbench-plugin-example"

#: the layout of docs/adding_a_method.md, section 2: pyproject.toml and a package, nothing else
PYPROJECT = """\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "wslbench-plugin-example"
version = "0.0.1"
dependencies = ["wslbench"]

[project.entry-points."wslbench.methods"]
center-prior = "wslbench_plugin_example.center_prior:CenterPrior"
"""

MODULE = '''\
"""A centre Gaussian prior: the localization map every photographer would guess."""
import torch

from wslbench.methods import Method, Prediction


class CenterPrior(Method):
    """Centre Gaussian prior (third-party example plugin)."""

    display_name = "Centre prior"  # its row in tables and figures
    family = "reference"
    contender = False  # a fixed prior, not a weakly supervised method: never bold
    classifies = False
    trainable = False

    def __init__(self, num_classes, width=0.3, **config):
        super().__init__(num_classes, width=width, **config)
        self.width = width

    def predict(self, images):
        b, _, h, w = images.shape
        ys = torch.linspace(-1, 1, h).view(h, 1)
        xs = torch.linspace(-1, 1, w).view(1, w)
        prior = torch.exp(-(xs ** 2 + ys ** 2) / (2 * self.width ** 2))
        return Prediction(logits=None, maps=prior.expand(b, h, w).to(images.device))
'''


def pip(*args):
    return subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def installed_plugin(tmp_path, monkeypatch):
    pkg = tmp_path / "plugin"
    (pkg / "wslbench_plugin_example").mkdir(parents=True)
    (pkg / "pyproject.toml").write_text(PYPROJECT)
    (pkg / "wslbench_plugin_example" / "__init__.py").write_text("")
    (pkg / "wslbench_plugin_example" / "center_prior.py").write_text(textwrap.dedent(MODULE))
    with _installed(pkg, PLUGIN):
        # an editable install takes effect through a .pth file, which only an interpreter started
        # after it reads (the `wslbench list` subprocess does); this one sees the folder this way
        monkeypatch.syspath_prepend(str(pkg))
        yield


@contextlib.contextmanager
def _installed(folder, name):
    """``pip install -e folder`` as docs/adding_a_method.md says, then ``pip uninstall -y name``."""
    done = pip("install", "--no-deps", "--no-build-isolation", "-e", str(folder))
    assert done.returncode == 0, done.stderr
    importlib.invalidate_caches()
    try:
        yield
    finally:
        pip("uninstall", "-y", name)
        importlib.invalidate_caches()


def _doc_block(doc, first_line):
    """The code block of the doc whose first line is ``first_line``, without that line."""
    found = re.search(r"```\w*\n" + re.escape(first_line) + r"\n(.*?)```", doc, re.S)
    assert found, f"docs/adding_a_method.md has no code block starting with {first_line!r}"
    return found.group(1)


def test_the_docs_plugin_layout_installs_and_is_listed(tmp_path):
    """The pyproject.toml and the class of docs/adding_a_method.md, verbatim, laid out as its
    section 2 shows, install with ``pip install -e .``; ``wslbench list`` then shows the method."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "adding_a_method.md").read_text()
    root = tmp_path / "my-wsl"
    (root / "my_wsl").mkdir(parents=True)
    (root / "pyproject.toml").write_text(_doc_block(doc, "# my-wsl/pyproject.toml"))
    (root / "my_wsl" / "__init__.py").write_text("")
    (root / "my_wsl" / "gmp_cam.py").write_text(_doc_block(doc, "# my_wsl/gmp_cam.py"))
    with _installed(root, "my-wsl"):
        out = subprocess.run([sys.executable, "-m", "wslbench.cli", "list"], capture_output=True, text=True,
                             timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    line = next((line for line in out.stdout.splitlines() if line.split()[:1] == ["gem-cam"]), None)
    assert line is not None, out.stdout
    assert line.split(None, 1)[1] == "GeM-pooled class maps (generalised mean with exponent p)."
    assert "failed to load" not in out.stdout


def test_third_party_method_is_discovered(installed_plugin):
    import torch

    out = subprocess.run([sys.executable, "-m", "wslbench.cli", "list"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    line = next(line for line in out.stdout.splitlines() if "center-prior" in line)
    assert "Centre Gaussian prior" in line
    from wslbench import registry

    registry.refresh()
    method = registry.create_method("center-prior", num_classes=2, width=0.5)
    maps = method.predict(torch.zeros(1, 3, 5, 5)).maps
    assert maps[0, 2, 2] == pytest.approx(1.0) and maps[0, 0, 0] < maps[0, 1, 1] < maps[0, 2, 2]


def test_third_party_method_gets_its_declared_row_in_the_tables(installed_plugin, tmp_path):
    """The plugin's row is named and ruled as the plugin declares: no edit to the suite's tables.
    Its F1- is the column's highest, yet it is not bold (it declares itself no contender)."""
    from test_pxap_table import _cell, _run

    from wslbench import registry
    from wslbench.tables import build_tables, collect_runs

    registry.refresh()
    for seed, (prior, cam) in enumerate([(0.9, 0.5), (0.8, 0.6)]):
        _run(tmp_path / "runs", "glas", "center-prior", seed, {"f1_neg": prior})
        _run(tmp_path / "runs", "glas", "cam-avg", seed, {"f1_neg": cam})
    t1, t2 = build_tables(collect_runs(tmp_path / "runs"))[:2]
    assert "Centre prior" in t2.rows and "center-prior" not in t2.rows
    prior = _cell(t2, "Centre prior", "GlaS F1- (%)")
    assert prior.mean == pytest.approx(85.0) and not prior.bold
    assert _cell(t2, "CAM-Avg", "GlaS F1- (%)").bold
    assert _cell(t1, "Centre prior", "GlaS Error (%)").text("markdown") == "n/a"  # it declares classifies = False

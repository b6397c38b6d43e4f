"""The generated verdict (wslbench.summary): who is tied best, where min-max stands, what changed,
and the documents' generated blocks kept in sync."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from wslbench.cli import main
from wslbench.errors import DataError
from wslbench.runs import discover
from wslbench.summary import experiment_verdict, sync_docs


def _run(root, exp, method, seed, f1_pos, f1_neg):
    """A finished GlaS-like run whose 40 per-image scores have the given means (small spread)."""
    run = root / exp / "glas" / method / f"seed{seed}"
    run.mkdir(parents=True)
    rng = np.random.default_rng([seed, *map(ord, method)])  # each method its own noise
    pos = f1_pos + rng.normal(0, 0.02, 40)
    neg = f1_neg + rng.normal(0, 0.02, 40)
    pos, neg = pos - pos.mean() + f1_pos, neg - neg.mean() + f1_neg
    pd.DataFrame({"id": [f"i{k}" for k in range(40)], "label": 0, "pred_label": 0, "f1_pos": pos,
                  "f1_neg": neg}).to_csv(run / "per_image.csv", index=False)
    (run / "config.yaml").write_text(yaml.safe_dump({"method": method, "dataset": "glas", "seed": seed,
                                                     "experiment": exp}))
    (run / "eval.json").write_text(json.dumps({"cls_error": 0.0, "f1_pos": float(pos.mean()),
                                               "f1_neg": float(neg.mean()), "pxap": 0.5}))
    (run / "status.json").write_text(json.dumps({"state": "finished"}))


@pytest.fixture
def records(tmp_path):
    for seed in range(3):
        _run(tmp_path, "short", "cam-avg", seed, 0.30, 0.66)
        _run(tmp_path, "short", "wildcat", seed, 0.30, 0.661)  # indistinguishable from CAM-Avg
        _run(tmp_path, "short", "minmax", seed, 0.30, 0.50)  # clearly below
        _run(tmp_path, "short", "all-ones", seed, 0.66, 0.0)
        _run(tmp_path, "long", "cam-avg", seed, 0.40, 0.66)
        _run(tmp_path, "long", "minmax", seed, 0.30, 0.60)
    return tmp_path


def test_verdict_names_the_tied_best_where_minmax_stands_and_the_change(records):
    found = discover(records)
    text = experiment_verdict(found, "short")
    f1_neg = next(line for line in text.splitlines() if line.startswith("- F1-"))
    assert "Wildcat 66.10" in f1_neg and "CAM-Avg 66.00" in f1_neg and "(2 tied)" in f1_neg
    assert "Ours" not in f1_neg and "All-ones" not in f1_neg
    ours = next(line for line in text.splitlines() if line.startswith("- Ours (min-max)"))
    # mean Dice (30 + 50) / 2 = 40.00, below CAM-Avg's and Wildcat's 48: third of three contenders
    assert "mean Dice 40.00" in ours and "rank 3 of 3" in ours and "below the tied-best set" in ours
    assert "- reference All-ones: F1+ (%) 66.00" in text
    change = experiment_verdict(found, "long", base="short").splitlines()[-1]
    # min-max: (30 + 60)/2 - 40 = +5.0; CAM-Avg: (40 + 66)/2 - 48 = +5.0
    assert change.startswith("- mean Dice, this minus short") and "Ours (min-max) +5.0 (3)" in change
    assert "CAM-Avg +5.0 (3)" in change


def test_sync_docs_fills_the_blocks_and_names_a_missing_one(records, tmp_path):
    out = tmp_path / "tables"
    doc = tmp_path / "doc.md"
    doc.write_text("# Results\n<!-- verdict-short:begin -->\nold\n<!-- verdict-short:end -->\ntext kept\n"
                   "<!-- verdict-long-vs-short:begin -->\n<!-- verdict-long-vs-short:end -->\n"
                   "<!-- table2-short:begin -->\n<!-- table2-short:end -->\n")
    res = CliRunner().invoke(main, ["tables", "--runs", str(records), "--out", str(out), "--sync-docs", str(doc)])
    assert res.exit_code == 0, res.output
    text = doc.read_text()
    assert "\nold\n" not in text and "text kept" in text
    assert (out / "short" / "verdict.md").read_text().strip() in text
    assert (out / "short" / "table2.md").read_text().strip() in text
    assert "this minus short" in text
    again = text
    sync_docs(doc, out, discover(records))
    assert doc.read_text() == again  # idempotent
    doc.write_text("<!-- verdict-nothere:begin -->\n<!-- verdict-nothere:end -->\n")
    with pytest.raises(DataError, match="verdict-nothere"):
        sync_docs(doc, out)


def test_results_page_opens_with_the_generated_verdicts(monkeypatch):
    """results/README.md's first 40 lines hold the verdict blocks, exactly as generated from the
    committed records (a stale block fails here: rerun `wslbench tables --runs results/records
    --sync-docs results/README.md`)."""
    import re

    from conftest import REPO

    monkeypatch.chdir(REPO)
    text = (REPO / "results" / "README.md").read_text()
    head = "\n".join(text.splitlines()[:40])
    assert "<!-- verdict-glas_lite0:begin -->" in head and "<!-- verdict-glas_lite0_e160-vs-glas_lite0:end -->" in head
    found = discover("results/records")
    for exp, base in (("glas_lite0", None), ("glas_lite0_e160", "glas_lite0")):
        marker = f"verdict-{exp}" + (f"-vs-{base}" if base else "")
        shown = re.search(rf"<!-- {marker}:begin -->\n(.*?)\n<!-- {marker}:end -->", text, re.S).group(1)
        assert shown == experiment_verdict(found, exp, base).strip(), marker
    assert shown.splitlines()[-1].startswith("- mean Dice, this minus glas_lite0")

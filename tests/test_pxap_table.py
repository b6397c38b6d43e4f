"""The PxAP table (with and without CRF, mean ± std over seeds) and the protocol in every table."""
from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from wslbench.tables import build_tables, collect_runs


def _run(root, ds, method, seed, ev):
    run = root / ds / method / f"seed{seed}"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"method": method, "dataset": ds, "seed": seed}))
    (run / "eval.json").write_text(json.dumps({"cls_error": 10.0, "f1_pos": 0.5, "f1_neg": 0.5, **ev}))
    (run / "status.json").write_text(json.dumps({"state": "finished"}))


def _cell(table, row, column):
    cols = [f"{g} {c}" for g, cs in table.groups for c in cs]
    return table.cells[table.rows.index(row)][cols.index(column)]


def test_pxap_table_mean_std_with_and_without_crf_and_protocol_caption(tmp_path):
    _run(tmp_path, "glas", "cam-avg", 0, {"pxap": 0.40, "crf_pxap": 0.45, "auc_f1_pos": 0.3, "auc_f1_neg": 0.6})
    _run(tmp_path, "glas", "cam-avg", 1, {"pxap": 0.50, "crf_pxap": 0.47, "auc_f1_pos": 0.3, "auc_f1_neg": 0.6})
    _run(tmp_path, "glas", "deepmil", 0, {"pxap": 0.60})  # no CRF for its maps
    _run(tmp_path, "glas", "elsewhere", 0, {"pxap": 0.20})  # scored with eval --maps: a row of its own
    tables = build_tables(collect_runs(tmp_path))
    pxap = next(t for t in tables if t.number == 7)
    c = _cell(pxap, "CAM-Avg", "GlaS PxAP (%)")
    assert (c.mean, c.n) == (pytest.approx(45.0), 2) and c.std == pytest.approx(np.std([40, 50], ddof=1))
    assert _cell(pxap, "CAM-Avg", "GlaS PxAP + CRF (%)").mean == pytest.approx(46.0)
    assert _cell(pxap, "Deep MIL", "GlaS PxAP + CRF (%)").text("markdown") == "–"
    best_mean_one_seed = _cell(pxap, "Deep MIL", "GlaS PxAP (%)")  # the highest PxAP, but one seed of two
    assert best_mean_one_seed.short and not best_mean_one_seed.bold
    assert best_mean_one_seed.text("markdown") == "60.00 [60.0, 60.0] (1)†"
    assert c.bold  # the best row with every seed
    assert _cell(pxap, "elsewhere", "GlaS PxAP (%)").mean == pytest.approx(20.0)
    assert all("Protocol: paper" in t.caption for t in tables)


def test_two_protocols_side_by_side(tmp_path):
    _run(tmp_path, "glas", "cam-avg", 0, {"pxap": 0.4, "protocol_label": "paper"})
    _run(tmp_path, "glas", "cam-avg", 1, {"pxap": 0.4})  # recorded before protocols: paper
    budget = tmp_path / "b"
    _run(budget, "glas", "cam-avg", 0, {"f1_pos": 0.7, "pxap": 0.4, "protocol_label": "pixel budget (5/class)"})
    import pandas as pd

    runs = pd.concat([collect_runs(tmp_path), collect_runs(budget)], ignore_index=True)
    t2 = build_tables(runs)[1]
    titles = [g for g, _ in t2.groups]
    assert titles == ["GlaS [paper]", "GlaS [pixel budget (5/class)]"]
    assert _cell(t2, "CAM-Avg", "GlaS [paper] F1+ (%)").n == 2
    assert _cell(t2, "CAM-Avg", "GlaS [pixel budget (5/class)] F1+ (%)").mean == pytest.approx(70.0)
    assert "selection protocol" in t2.caption

"""The evaluation path end to end: eval --crf on a synthetic run, the PR curve file, figures."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from wslbench.cli import main
from wslbench.metrics import dice, interpolated_pr


def test_eval_with_crf_writes_raw_and_refined_scores_and_figures(tiny, tmp_path):
    from wslbench.train import run

    run(tiny("cam-avg", epochs=1, extra=["train.max_steps_per_epoch=2"]), out=tmp_path / "runs")
    run_dir = tmp_path / "runs" / "synthetic" / "cam-avg" / "seed0"
    res = CliRunner().invoke(main, ["eval", str(run_dir), "--crf"])
    assert res.exit_code == 0, res.output
    ev = json.loads((run_dir / "eval.json").read_text())
    for k in ("cls_error", "f1_pos", "f1_neg", "crf_f1_pos", "crf_f1_neg"):
        assert k in ev
    assert ev["epochs_run"] == 1  # training facts survive re-evaluation
    per = pd.read_csv(run_dir / "per_image.csv")
    assert len(per) == ev["n_images"] == 12
    assert np.isclose(per["f1_pos"].mean(), ev["f1_pos"]) and np.isclose(per["crf_f1_neg"].mean(), ev["crf_f1_neg"])
    # the saved masks are the scored ones: recompute F1+ from the PNGs and the data set's masks
    from wslbench.registry import create_dataset

    test = create_dataset("synthetic", split="test", n_train=24, n_val=12, n_test=12, image_size=64)
    scores = []
    for i, rec in enumerate(test.records):
        pred = np.array(Image.open(run_dir / "masks" / f"{rec.id}.png")) > 127
        scores.append(dice(pred, test.raw(i)[1]))
    assert np.isclose(np.mean(scores), ev["f1_pos"])
    pr = pd.read_csv(run_dir / "pr_curve.csv")
    assert list(pr.columns) == ["recall", "precision_pos", "precision_neg"] and len(pr) == 101
    assert (run_dir / "pr_curve.png").stat().st_size > 1000 and (run_dir / "pr_curve.pdf").is_file()
    # threshold-free scores: PxAP pooled over the test pixels, curves on the grid, CRF maps too
    curves = pd.read_csv(run_dir / "threshold_curves.csv")
    assert list(curves.columns) == ["threshold", "f1_pos", "f1_neg", "precision", "recall"] and len(curves) == 1001
    at_tau = curves[np.isclose(curves["threshold"], ev["threshold"])]
    assert np.isclose(at_tau["f1_pos"].item(), ev["f1_pos"], atol=1e-8)  # the fixed-tau F1 lies on the curve
    assert 0 <= ev["pxap"] <= 1 and 0 <= ev["crf_pxap"] <= 1 and ev["map_normalization"] == "min-max per image"
    assert np.isclose(per["auc_f1_pos"].mean(), ev["auc_f1_pos"]) and "ap" in per.columns
    assert (run_dir / "threshold_curves.png").stat().st_size > 1000
    res = CliRunner().invoke(main, ["figures", "--runs", str(tmp_path / "runs"), "-d", "synthetic",
                                    "--out", str(tmp_path / "fig"), "--images", "3"])
    assert res.exit_code == 0, res.output
    fig = tmp_path / "fig" / "runs"  # one folder per experiment; runs right under the root: the root's name
    assert (fig / "synthetic_masks.png").is_file() and (fig / "synthetic_pr.pdf").is_file()
    # the training figure's question in numbers, one row per learning-rate phase of the run
    conv = (fig / "synthetic_convergence.md").read_text()
    assert "| Rate ratio | Flat |" in conv and conv.count("| CAM-Avg |") >= 1
    # a run without its masks (a fresh clone: masks/ is not committed) leaves the mask grid as it
    # was and says why, instead of redrawing it as a column of dashes; the PR figure is redrawn
    import shutil

    before = (fig / "synthetic_masks.png").read_bytes()
    (fig / "synthetic_pr.png").unlink()
    shutil.rmtree(run_dir / "masks")
    res = CliRunner().invoke(main, ["figures", "--runs", str(tmp_path / "runs"), "-d", "synthetic",
                                    "--out", str(tmp_path / "fig"), "--images", "3"])
    assert res.exit_code == 0, res.output
    assert "synthetic_masks not drawn: 1 run(s) have no saved masks" in res.output and str(run_dir) in res.output
    assert (fig / "synthetic_masks.png").read_bytes() == before and (fig / "synthetic_pr.png").is_file()


def test_average_curve_is_mean_of_image_curves():
    from wslbench.evaluate import write_pr_curve

    rng = np.random.default_rng(1)
    curves = {"pos": [], "neg": []}
    for _ in range(3):
        prob, mask = rng.random((8, 8)), rng.random((8, 8)) < 0.3
        curves["pos"].append(interpolated_pr(prob, mask))
        curves["neg"].append(interpolated_pr(1 - prob, ~mask))
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        write_pr_curve(Path(d) / "pr.csv", curves)
        df = pd.read_csv(Path(d) / "pr.csv")
    np.testing.assert_allclose(df["precision_pos"], np.mean(curves["pos"], axis=0), atol=1e-6)


def test_figure_masks_saved_at_another_scale_are_shown_at_image_size(tmp_path):
    from wslbench.figures import load_mask

    small = np.array([[0, 255, 0], [255, 255, 0]], dtype=np.uint8)
    Image.fromarray(small).save(tmp_path / "m.png")
    shown = load_mask(tmp_path / "m.png", (4, 6))
    np.testing.assert_array_equal(shown, np.kron(small > 127, np.ones((2, 2), dtype=bool)))
    np.testing.assert_array_equal(load_mask(tmp_path / "m.png", (2, 3)), small > 127)
    assert load_mask(tmp_path / "missing.png", (2, 3)) is None


def test_training_curves_read_every_logged_series_per_seed_and_draw_one_panel_per_method(tmp_path):
    """The figure that shows whether a budget was long enough: its data are metrics.jsonl's own
    numbers (epochs counted from 1), min-max's L+ / L- / L_f only where they were logged."""
    from wslbench.figures import training_curves, training_history

    def fake_run(variant, seed, records):
        d = tmp_path / "runs" / variant / f"seed{seed}"
        d.mkdir(parents=True)
        (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        return d

    mm = [fake_run("minmax", s, [{"epoch": e, "train_loss": 2.0 - e - s / 10, "train_loss_pos": 0.7 - e / 10,
                                  "train_loss_neg": 0.69, "train_loss_loc": 0.6, "val_error": 40.0 - 10 * e}
                                 for e in range(3)]) for s in (0, 1)]
    cam = [fake_run("cam-avg", 0, [{"epoch": 0, "train_loss": 0.7, "val_error": 50.0}, {"epoch": 1, "train_loss": 0.4}])]
    h = training_history(mm)
    assert sorted(h.series.unique()) == ["train_loss", "train_loss_loc", "train_loss_neg", "train_loss_pos", "val_error"]
    seed1 = h[(h.seed == "1") & (h.series == "train_loss")].sort_values("epoch")
    assert seed1.epoch.tolist() == [1, 2, 3] and np.allclose(seed1.value, [1.9, 0.9, -0.1])
    hc = training_history(cam)
    assert sorted(hc.series.unique()) == ["train_loss", "val_error"]
    assert hc[hc.series == "val_error"].epoch.tolist() == [1]  # an epoch without validation has no point
    paths = training_curves({"cam-avg": cam, "minmax": mm}, "synthetic", tmp_path / "fig")
    assert [p.name for p in paths] == ["synthetic_training.png", "synthetic_training.pdf"]
    assert Image.open(paths[0]).size[0] > Image.open(paths[0]).size[1]  # two panels side by side
    assert training_curves({"cam-avg": [tmp_path / "nowhere"]}, "synthetic", tmp_path / "fig2") == []


def test_training_curves_keep_a_diverged_runs_explosion_off_the_loss_axis(tmp_path):
    """A run scored at its kept checkpoint after a non-finite loss: the loss axis ends just above
    the losses up to that checkpoint (other seeds: all epochs), not at the explosion after it."""
    from wslbench.figures import diverged_runs, loss_axis_top, training_curves, training_history

    def fake_run(seed, losses, ev=None):
        d = tmp_path / "runs" / "spg" / f"seed{seed}"
        d.mkdir(parents=True)
        (d / "metrics.jsonl").write_text("".join(json.dumps({"epoch": e, "train_loss": v, "val_error": 0.0}) + "\n"
                                                 for e, v in enumerate(losses)))
        (d / "config.yaml").write_text("method: spg\n")
        (d / "status.json").write_text(json.dumps({"state": "finished"}))
        (d / "eval.json").write_text(json.dumps({"f1_pos": 0.5, "f1_neg": 0.5, **(ev or {})}))  # a finished run has both
        return d

    blown = fake_run(0, [0.9, 0.5, 0.3, 4.0, 266205.0], {"diverged_at_epoch": 6, "checkpoint_epoch": 3})
    calm = fake_run(1, [1.2, 0.6, 0.4, 0.35, 0.3])
    assert list(diverged_runs([blown, calm])) == ["0"]
    h = training_history([blown, calm])
    # seed 0 up to epoch 3 (0.9, 0.5, 0.3), seed 1 every epoch (top 1.2): 1.1 x 1.2
    assert loss_axis_top(h, diverged_runs([blown, calm])) == pytest.approx(1.32)
    assert loss_axis_top(h, {}) is None
    assert [p.suffix for p in training_curves({"spg": [blown, calm]}, "glas", tmp_path / "fig")] == [".png", ".pdf"]


def test_training_history_gives_u_net_its_selection_score_in_percent_and_every_run_its_rates(tmp_path):
    """U-Net has no validation error: its curve shows what its checkpoint is chosen on (mean Dice,
    0-1 in metrics.jsonl, % on the right axis); the logged learning rates mark the steps."""
    from wslbench.figures import training_curves, training_history

    d = tmp_path / "unet" / "seed0"
    d.mkdir(parents=True)
    recs = [{"epoch": e, "lr": 0.01 if e < 2 else 0.001, "train_loss": 0.7 - e / 10, "val_f1_mean": 0.5 + e / 10}
            for e in range(4)]
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    h = training_history([d])
    assert np.allclose(h[h.series == "val_f1_mean"].value, [50, 60, 70, 80])
    assert np.allclose(h[h.series == "lr"].value, [0.01, 0.01, 0.001, 0.001])
    assert [p.suffix for p in training_curves({"unet": [d]}, "glas", tmp_path / "fig")] == [".png", ".pdf"]


def test_method_families_get_figures_of_their_own_beside_their_references():
    from wslbench.figures import figure_sets

    runs = {v: [Path(v)] for v in ["all-ones", "cam-avg", "gradcam", "has", "cutmix", "layercam", "minmax",
                                    "minmax+noerase", "my-plugin"]}
    sets = figure_sets(runs)
    assert list(sets) == ["", "wsol", "posthoc"]
    assert list(sets[""]) == ["all-ones", "cam-avg", "gradcam", "minmax", "minmax+noerase", "my-plugin"]
    assert list(sets["wsol"]) == ["cam-avg", "has", "cutmix", "minmax"]
    assert list(sets["posthoc"]) == ["cam-avg", "gradcam", "layercam", "minmax"]
    assert list(figure_sets({"cam-avg": [Path("a")]})) == [""]  # no family present: the main figure only


def test_a_figure_saved_twice_has_the_same_bytes(tmp_path):
    """Regenerated figures must not show up in `git diff`: the PDF carries no creation date."""
    import time
    from wslbench.figures import _plt, save

    def draw(base):
        plt = _plt()
        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0])
        return save(fig, base)

    first = [p.read_bytes() for p in draw(tmp_path / "a")]
    time.sleep(1.1)  # a PDF date has one-second resolution
    second = [p.read_bytes() for p in draw(tmp_path / "b")]
    assert first == second
    assert b"/CreationDate" not in first[1]

"""The budget rule ("every method's training loss must have flattened by the end") in numbers:
window means of metrics.jsonl's losses per learning-rate phase, checked against hand-worked
examples."""
import json

import numpy as np
import pytest


def _run(tmp_path, name, losses, lrs, **extra):
    d = tmp_path / name / "seed0"
    d.mkdir(parents=True)
    recs = [{"epoch": e, "lr": lr, "train_loss": v, **{k: s[e] for k, s in extra.items()}}
            for e, (v, lr) in enumerate(zip(losses, lrs))]
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return d


def test_learning_rate_phases_are_runs_of_equal_rates_counted_from_epoch_one():
    from wslbench.convergence import lr_phases

    recs = [{"epoch": e, "lr": 0.01 if e < 3 else 0.001} for e in range(5)]
    assert lr_phases(recs[::-1]) == [(1, 3, 0.01), (4, 5, 0.001)]


def test_a_loss_still_falling_at_the_step_is_not_flat_and_one_that_levelled_off_is(tmp_path):
    from wslbench.convergence import loss_plateaus

    # 30 epochs at 0.01 then 20 at 0.001; window means by hand: 1.0 | 0.5 | 0.4 || 0.39 | 0.39
    losses = [1.0] * 10 + [0.5] * 10 + [0.4] * 10 + [0.39] * 20
    lrs = [0.01] * 30 + [0.001] * 20
    p = loss_plateaus(_run(tmp_path, "a", losses, lrs))
    assert p.epochs.tolist() == ["1-30", "31-50"] and p.series.tolist() == ["train loss"] * 2
    first = p.iloc[0]
    assert (first["first"], first.before, first["last"]) == pytest.approx((1.0, 0.5, 0.4))
    # late rate 0.1 / 10 epochs against the run's 0.6 over 20 (window centres 5.5 and 25.5): 1/3
    assert first.rate_ratio == pytest.approx((0.1 / 10) / (0.6 / 20))
    assert first.flat == "no"
    second = p.iloc[1]
    assert second.rate_ratio == pytest.approx(0.0) and second.flat == "yes"
    # 5-epoch windows see the constant-rate phase level off (0.4, 0.4 over epochs 21-30)
    p5 = loss_plateaus(tmp_path / "a" / "seed0", window=5)
    assert p5.flat.tolist() == ["yes", "yes"]


def test_a_straight_line_is_not_flat_however_long_the_run(tmp_path):
    from wslbench.convergence import loss_plateaus

    for n in (40, 400):
        line = (1.0 - 0.002 * np.arange(n)).tolist()
        p = loss_plateaus(_run(tmp_path, f"line{n}", line, [0.01] * n))
        assert p.rate_ratio.tolist() == pytest.approx([1.0]) and p.flat.tolist() == ["no"]


def test_short_phases_and_losses_that_never_fell_get_no_verdict_of_flatness(tmp_path):
    from wslbench.convergence import loss_plateaus

    rng = np.random.default_rng(0)
    noisy = 0.7 + rng.uniform(-0.01, 0.01, 40)  # moves by noise only: its "late share" would be noise
    p = loss_plateaus(_run(tmp_path, "b", noisy.tolist(), [0.01] * 30 + [0.001] * 10))
    assert p.flat.tolist() == ["did not fall", "too short"]
    assert np.isnan(p.rate_ratio).all()
    one = loss_plateaus(_run(tmp_path, "c", [0.7], [0.01]))  # a one-epoch run is listed, not judged
    assert one.flat.tolist() == ["too short"] and np.isnan(one["first"]).all()


def test_min_max_is_judged_on_its_total_loss_and_on_l_plus(tmp_path):
    from wslbench.convergence import convergence_markdown, loss_plateaus

    total = [2.0] * 10 + [1.6] * 10 + [1.5] * 10
    pos = [0.7] * 20 + [0.69] * 5 + [0.4] * 5  # L+ drops late: the last window holds all of its drop
    d = _run(tmp_path, "minmax", total, [1e-3] * 30, train_loss_pos=pos)
    p = loss_plateaus(d)
    assert p.series.tolist() == ["train loss", "L+"]
    # total: 0.1 over the last 10 epochs against 0.5 over 20: 0.4 -> not flat; L+: 0.155 / 10 over 0.155 / 20
    assert p.rate_ratio.tolist() == pytest.approx([(0.1 / 10) / (0.5 / 20), 2.0])
    md = convergence_markdown({"minmax": [d]}, title="t")
    row = [line for line in md.splitlines() if "| L+ |" in line][0]
    assert "| 0 | L+ | 1-30 | 0.001 | 0.700 | 0.700 | 0.545 | 2.00 | **no** |" in row


def test_a_phase_whose_second_to_last_window_overlaps_the_first_is_too_short(tmp_path):
    from wslbench.convergence import loss_plateaus

    # 20 epochs at one rate: the window before the last is the run's first, the ratio would be 1 by
    # construction; 30-epoch runs stepped at 20 (glas_lite0) are too short for 10-epoch windows
    line = (1.0 - 0.01 * np.arange(30)).tolist()
    p = loss_plateaus(_run(tmp_path, "d", line, [0.01] * 20 + [0.001] * 10))
    assert p.flat.tolist() == ["too short", "too short"] and np.isnan(p.rate_ratio).all()

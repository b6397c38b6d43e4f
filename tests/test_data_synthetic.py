"""The embedded synthetic set: deterministic in its seed, balanced, and its region size follows
``region_radius`` (an ellipse of semi-axes a, b has area pi a b)."""
from __future__ import annotations

import math

import numpy as np

from wslbench.data.synthetic import SyntheticDataset, generate


def test_same_seed_same_images_and_balanced_labels():
    a = generate(3, 12, 3, 6, 64, 3)
    b = generate.__wrapped__(3, 12, 3, 6, 64, 3)  # recomputed, not the cached object
    for split in a:
        for (la, ia, ma), (lb, ib, mb) in zip(a[split], b[split]):
            assert la == lb and np.array_equal(ia, ib) and np.array_equal(ma, mb)
    assert np.bincount([lab for lab, _, _ in a["train"]]).tolist() == [4, 4, 4]


def test_region_area_follows_region_radius():
    size = 96
    for lo, hi in ((0.1, 0.15), (0.3, 0.4)):
        data = generate.__wrapped__(0, 30, 3, 3, size, 3, (lo, hi))
        areas = np.array([m.mean() for _, _, m in data["train"]])
        # pixel-counted ellipse areas within the analytical bounds (+- a rim of pixels)
        assert areas.min() >= math.pi * lo * lo - 4 * hi / size
        assert areas.max() <= math.pi * hi * hi + 4 * hi / size
    ds = SyntheticDataset("test", n_train=6, n_val=3, n_test=3, image_size=64, region_radius=[0.3, 0.4])
    assert ds[0]["mask"].float().mean() > math.pi * 0.3 * 0.3 - 0.05


def test_bad_data_options_are_config_errors_from_the_cli(tmp_path):
    from click.testing import CliRunner

    from wslbench.cli import main

    for option, shown in (("data.region_radius=[0.3,0.6]", "region_radius"), ("data.scale=0", "data.scale")):
        res = CliRunner().invoke(main, ["run", "-m", "cam-avg", "--set", option, "--epochs", "1", "--out", str(tmp_path)])
        assert res.exit_code == 2 and "error:" in res.output and shown in res.output, res.output

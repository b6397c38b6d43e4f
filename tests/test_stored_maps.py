"""A run's record carries its maps: every method's recipe remakes the maps its predict gives from
the native ones, and ``wslbench rescore`` recomputes every score without a checkpoint."""
import json
import shutil

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from conftest import tiny_config
from wslbench.cli import main
from wslbench.methods.maps import MapRecipe, minmax_normalize, upsample
from wslbench.registry import create_method, list_methods
from wslbench.rescore import rescore_run
from wslbench.stored_maps import PNG_SCALE, StoredMap, maps_file, read_maps, write_maps
from wslbench.train import run
from wslbench.train.trainer import evaluate_run

SCORE_FILES = ("eval.json", "per_image.csv", "threshold_curves.csv", "pr_curve.csv")


def _method(name):
    torch.manual_seed(0)
    model = dict(tiny_config(name).model)
    model.setdefault("backbone", "test_resnet")
    return create_method(name, num_classes=3, **model).eval()


@pytest.mark.parametrize("name", sorted(list_methods()))
def test_every_methods_recipe_remakes_its_maps_from_the_stored_ones(name, tmp_path):
    method = _method(name)
    x = torch.rand(2, 3, 72, 56)
    with torch.no_grad():
        pred = method.predict(x)
    assert pred.native is not None and isinstance(pred.recipe, MapRecipe), f"{name} declares no map recipe"
    remade = pred.recipe.apply(pred.native.float(), (72, 56))
    assert float((remade - pred.maps.float()).abs().max()) < 1e-6
    if pred.recipe.upsample:  # a map below the input's resolution: that is what is stored
        assert pred.native.shape[-2:] != (72, 56) and pred.native.numel() < pred.maps.numel()
    # through the file and back: float32 maps exactly, full-resolution ones within half an 8-bit step
    labels = pred.logits.argmax(1).tolist() if pred.logits is not None else [None, None]
    stored = [StoredMap(f"im{i}", pred.native[i].float().numpy(), (72, 56), (0, 0, 72, 56), labels[i]) for i in range(2)]
    write_maps(tmp_path / "m.npz", stored, pred.recipe, {"split": "test"})
    meta, recipe, back = read_maps(tmp_path / "m.npz")
    assert recipe == pred.recipe and [m.pred_label for m in back] == labels
    tolerance = 0.0 if meta["encoding"] == "float32" else 0.5 / PNG_SCALE + 1e-7
    for i, m in enumerate(back):
        assert np.abs(m.scored_map(recipe) - pred.maps[i].float().clamp(0, 1).numpy()).max() <= tolerance


def test_the_cam_recipe_by_hand():
    # a 2x2 native map, bilinear (half-pixel centres) to 4x4, then min-max: numpy by hand
    native = np.array([[0.0, 2.0], [4.0, 6.0]], dtype=np.float32)
    out = MapRecipe().apply(torch.from_numpy(native)[None], (4, 4))[0].numpy()
    # half-pixel centres: output x at (i + 0.5) / 2 - 0.5 in input coordinates, clamped to [0, 1]
    pos = np.clip((np.arange(4) + 0.5) / 2 - 0.5, 0, 1)
    rows = (1 - pos)[:, None] * native[0][None, :] + pos[:, None] * native[1][None, :]
    full = (1 - pos)[None, :] * rows[:, [0]] + pos[None, :] * rows[:, [1]]
    expected = (full - full.min()) / (full.max() - full.min())
    np.testing.assert_allclose(out, expected, atol=1e-6)
    # min-max's recipe: sigmoid(omega (m - sigma)) of the min-max normalised map
    mm = MapRecipe(normalize="pseudo_binary", omega=8.0, sigma=0.5, upsample=False)
    got = mm.apply(torch.from_numpy(native)[None], (2, 2))[0].numpy()
    np.testing.assert_allclose(got, 1 / (1 + np.exp(-8 * (native / 6 - 0.5))), atol=1e-6)
    assert torch.equal(MapRecipe().apply(torch.from_numpy(native)[None], (4, 4)),
                       minmax_normalize(upsample(torch.from_numpy(native)[None], (4, 4))))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A tiny finished CAM-Avg run whose test images are padded for evaluation (72 -> 96; stride 16: 6x6 maps)."""
    d = tmp_path_factory.mktemp("rescore") / "run"
    run(tiny_config("cam-avg", epochs=2, extra=["data.image_size=72", "eval.pad_multiple=32"]), run_dir=d)
    return d


def test_a_run_stores_small_maps_with_their_recipe(finished):
    meta, recipe, maps = read_maps(maps_file(finished, "test"))
    assert meta["split"] == "test" and meta["pad_multiple"] == 32 and meta["encoding"] == "float32"
    assert len(maps) == 12 and recipe == MapRecipe()
    assert maps[0].native.shape == (6, 6) and maps[0].size == (96, 96) and maps[0].box == (12, 12, 72, 72)
    _, _, val = read_maps(maps_file(finished, "val"))
    assert len(val) == 12 and val[0].size == (96, 96)  # validation in the test geometry (eval.pad_validation)
    assert maps_file(finished, "test").stat().st_size < 20_000


def test_rescore_without_checkpoints_reproduces_the_evaluation_byte_for_byte(finished, tmp_path):
    d = tmp_path / "run"
    shutil.copytree(finished, d)
    original = {f: (d / f).read_bytes() for f in SCORE_FILES}
    for pt in d.glob("*.pt"):
        pt.unlink()
    for f in SCORE_FILES:
        (d / f).unlink()
    shutil.copy(finished / "eval.json", d / "eval.json")  # what the training recorded stays
    (d / "per_image.csv").write_text("stale")
    done = rescore_run(d)
    assert done.out_dir == d
    for f in SCORE_FILES:
        assert (d / f).read_bytes() == original[f], f


def _evaluated_with(finished, tmp_path, **eval_values):
    """A fresh evaluation of the run's checkpoint with other eval settings."""
    d = tmp_path / "fresh"
    shutil.copytree(finished, d)
    cfg = yaml.safe_load((d / "config.yaml").read_text())
    cfg["eval"].update(eval_values)
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    (d / "eval.json").unlink()
    return evaluate_run(d), d


def test_a_rescore_with_another_threshold_equals_a_fresh_evaluation(finished, tmp_path):
    d = tmp_path / "run"
    shutil.copytree(finished, d)
    done = rescore_run(d, threshold=0.3)
    assert done.out_dir == d / "rescore" / "paper-t0.3"
    assert json.loads((d / "eval.json").read_text()) == json.loads((finished / "eval.json").read_text())  # untouched
    fresh, fd = _evaluated_with(finished, tmp_path, threshold=0.3)
    for k in ("f1_pos", "f1_neg", "pxap", "cls_error", "threshold"):
        assert done.result[k] == fresh[k], k
    assert done.result["f1_pos"] != json.loads((finished / "eval.json").read_text())["f1_pos"]  # 0.3 changes it
    assert (done.out_dir / "per_image.csv").read_bytes() == (fd / "per_image.csv").read_bytes()


def test_a_pixel_budget_rescore_equals_a_fresh_evaluation_under_that_protocol(finished, tmp_path):
    d = tmp_path / "run"
    shutil.copytree(finished, d)
    protocol = {"name": "pixel_budget", "images_per_class": 2}
    done = rescore_run(d, protocol=protocol)
    assert done.out_dir == d / "rescore" / "pixel_budget-2"
    fresh, _ = _evaluated_with(finished, tmp_path, protocol=protocol)
    for k in ("threshold", "threshold_images", "f1_pos", "f1_neg", "pxap", "protocol_label"):
        assert done.result[k] == fresh[k], k


def test_rescore_command_lists_the_runs_it_cannot_rescore(finished, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(finished, root / "a")
    shutil.copytree(finished, root / "b")
    maps_file(root / "b", "test").unlink()  # a record from before maps were stored
    res = CliRunner().invoke(main, ["rescore", str(root), "--set", "eval.protocol.images_per_class=1"])
    assert res.exit_code == 0, res.output
    assert "pixel_budget-1" in res.output and (root / "a" / "rescore" / "pixel_budget-1" / "eval.json").is_file()
    assert "1 run(s) not rescored" in res.output and "no stored maps" in res.output
    bad = CliRunner().invoke(main, ["rescore", str(root), "--set", "optim.lr=1"])
    assert bad.exit_code == 2 and "only eval.protocol" in bad.output and "Traceback" not in bad.output


def test_lossy_maps_are_rescored_beside_the_original_never_over_it(tmp_path):
    d = tmp_path / "unet"
    run(tiny_config("unet", epochs=1), run_dir=d)
    meta, _, _ = read_maps(maps_file(d, "test"))
    assert meta["encoding"] == "png8"
    before = (d / "eval.json").read_bytes()
    done = rescore_run(d)
    assert done.out_dir == d / "rescore" / "paper" and (d / "eval.json").read_bytes() == before
    original = json.loads(before)
    for k in ("f1_pos", "f1_neg", "pxap"):  # 8-bit rounding moves the scores by little
        assert abs(done.result[k] - original[k]) < 1e-3, k
    assert done.result["rescored_from"] == "stored maps (png8, wslbench rescore)"


def test_tables_show_a_rescore_under_another_protocol_as_its_own_column_group(finished, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(finished, root / "exp" / "synthetic" / "cam-avg" / "seed0")
    run_dir = root / "exp" / "synthetic" / "cam-avg" / "seed0"
    rescore_run(run_dir, protocol={"name": "pixel_budget", "images_per_class": 1})
    rescore_run(run_dir, threshold=0.3)  # the run's own protocol: no second row, no clash
    res = CliRunner().invoke(main, ["tables", "--runs", str(root), "--out", str(tmp_path / "tables")])
    assert res.exit_code == 0, res.output
    table = (tmp_path / "tables" / "exp" / "table2.md").read_text()
    assert "Synthetic [pixel budget (1/class)] F1+" in table and "Synthetic [paper] F1+" in table
    pb = json.loads((run_dir / "rescore" / "pixel_budget-1" / "eval.json").read_text())
    assert f"{100 * pb['f1_pos']:.2f}" in table  # the rescore's own numbers fill its column group


def test_a_grad_cam_package_whose_steps_differ_falls_back_to_full_resolution_maps(monkeypatch):
    import wslbench.methods.maps as maps_module

    method = _method("gradcampp")
    x = torch.rand(2, 3, 72, 56)
    with torch.no_grad():
        exact = method.predict(x)
    assert exact.recipe.normalize == "grad_cam_package" and exact.native.shape[-2:] != (72, 56)
    real = maps_module.grad_cam_package_scale
    monkeypatch.setattr(maps_module, "grad_cam_package_scale", lambda native, size: real(native, size) * 0.5)
    with torch.no_grad():
        other = method.predict(x)
    assert other.recipe.normalize == "none" and other.native.shape[-2:] == (72, 56)
    assert torch.equal(other.maps, exact.maps)  # the package's own maps, kept at full resolution


def test_a_split_whose_images_came_with_different_recipes_keeps_each_images_scored_map(tmp_path):
    """The post-hoc methods fall back to full-resolution maps batch by batch: a split then holds
    maps of two recipes. The file holds one recipe, so every map is stored at full resolution, and
    each image reads back as the map evaluation scored (to the 8-bit step), not cropped as a
    full-resolution map (which gave a 6 x 13 'map' of a 522 x 775 image)."""
    from wslbench.methods.maps import CAM_RECIPE, FULL_RESOLUTION
    from wslbench.stored_maps import store_split

    rng = np.random.default_rng(0)
    small = StoredMap("a", rng.random((4, 5)).astype(np.float32), (64, 80), (3, 2, 58, 75), 1)
    full = StoredMap("b", rng.random((64, 80)).astype(np.float32), (64, 80), (3, 2, 58, 75), 0)
    expect = [small.scored_map(CAM_RECIPE), full.scored_map(FULL_RESOLUTION)]
    assert store_split(tmp_path, "test", [small, full], [CAM_RECIPE, FULL_RESOLUTION], classifies=True,
                       crf_applicable=True, map_normalization="min-max per image", pad_multiple=32)
    meta, recipe, maps = read_maps(maps_file(tmp_path, "test"))
    assert recipe == FULL_RESOLUTION and meta["encoding"] == "png8"
    for m, want in zip(maps, expect):
        got = m.scored_map(recipe)
        assert got.shape == want.shape == (58, 75)
        assert np.abs(got - want).max() <= 0.5 / PNG_SCALE + 1e-6
    # one recipe for every image: stored as it came (small and exact)
    assert store_split(tmp_path, "val", [small], [CAM_RECIPE], classifies=True, crf_applicable=True,
                       map_normalization="min-max per image", pad_multiple=32)
    assert read_maps(maps_file(tmp_path, "val"))[1] == CAM_RECIPE

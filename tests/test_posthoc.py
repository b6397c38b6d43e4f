"""Post-hoc map methods (grad-cam package adapter) and ``wslbench run --from``."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from baselines.cam import CamAvg, CamMax
from baselines.gradcam import GradCam
from baselines.posthoc import EigenCam, GradCamPlusPlus, HiResCam, LayerCam, ScoreCam, XGradCam, classifier_state
from tests.conftest import TINY
from wslbench.cli import main

POSTHOC = {"gradcampp": (GradCamPlusPlus, "GradCAMPlusPlus"), "xgradcam": (XGradCam, "XGradCAM"),
           "layercam": (LayerCam, "LayerCAM"), "scorecam": (ScoreCam, "ScoreCAM"),
           "hirescam": (HiResCam, "HiResCAM"), "eigencam": (EigenCam, "EigenCAM")}


class Logits(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, images):
        return self.m.forward_logits(images)


@pytest.mark.parametrize("name", sorted(POSTHOC))
def test_posthoc_map_equals_grad_cam_package(name):
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cls, package_name = POSTHOC[name]
    torch.manual_seed(0)
    method = cls(num_classes=3, backbone="test_resnet", output_stride=16).eval()
    with torch.no_grad():  # a class-discriminative head, so that no map is all zero
        method.fc.weight.copy_(torch.randn(3, method.fc.in_features) * 5)
    x = torch.randn(2, 3, 64, 64)  # 4 x 4 feature maps
    with torch.no_grad():  # evaluation calls predict under no_grad
        pred = method.predict(x)
        classes = method.forward_logits(x).argmax(1)
    torch.testing.assert_close(pred.logits.argmax(1), classes)
    # the package itself, on the same model, layer (the trunk's last feature map) and class
    reference = torch.manual_seed(0) and GradCam(num_classes=3, backbone="test_resnet", output_stride=16).eval()
    reference.load_state_dict(method.state_dict())
    with getattr(pytorch_grad_cam, package_name)(model=Logits(reference), target_layers=[reference.trunk]) as cam:
        ref = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in classes])
    assert pred.maps.shape == (2, 64, 64) and float(pred.maps.max()) > 0
    torch.testing.assert_close(pred.maps, torch.from_numpy(ref), atol=1e-5, rtol=0)
    assert all(p.grad is None for p in method.parameters())  # nothing left behind for an optimiser


def test_cam_avg_classifier_reads_as_gap_linear():
    # mean_hw(W A + b) = W mean_hw(A) + b: the converted weights give the same scores
    torch.manual_seed(0)
    cam = CamAvg(num_classes=3, backbone="test_resnet").eval()
    post = LayerCam(num_classes=3, backbone="test_resnet").eval()
    post.load_classifier(cam.state_dict(), CamAvg)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(post.forward_logits(x), cam.forward_logits(x), atol=1e-5, rtol=1e-5)
    with pytest.raises(Exception, match="GAP"):
        classifier_state(CamMax(num_classes=3, backbone="test_resnet").state_dict(), CamMax)


@pytest.fixture(scope="module")
def gradcam_run(tmp_path_factory):
    """A finished Grad-CAM run on synthetic (one short epoch)."""
    out = tmp_path_factory.mktemp("src")
    r = CliRunner().invoke(main, ["run", "--method", "gradcam", "--dataset", "synthetic", "--epochs", "1", "--out", str(out),
                                  "--seed", "3", *[a for s in TINY for a in ("--set", s)],
                                  "--set", "train.max_steps_per_epoch=2", "--set", "data.n_train=16"])
    assert r.exit_code == 0, r.output
    return out / "synthetic" / "gradcam" / "seed3"


def _from(src, out, method="layercam", dataset="synthetic", *extra):
    return CliRunner().invoke(main, ["run", "--method", method, "--dataset", dataset, "--from", str(src), "--out", str(out),
                                     *[a for s in TINY for a in ("--set", s)], *extra])


def test_from_finished_run_evaluates_without_training(gradcam_run, tmp_path, monkeypatch):
    def no_step(*args, **kwargs):
        raise AssertionError("an optimiser step was taken")

    monkeypatch.setattr(torch.optim.SGD, "step", no_step)
    r = _from(gradcam_run, tmp_path)
    assert r.exit_code == 0, r.output
    run_dir = tmp_path / "synthetic" / "layercam" / "seed3"  # the source's seed
    ev = json.loads((run_dir / "eval.json").read_text())
    assert ev["from_run"] == str(gradcam_run) and ev["from_method"] == "gradcam" and ev["epochs_run"] == 0
    assert str(gradcam_run) in (run_dir / "config.yaml").read_text()
    assert json.loads((run_dir / "status.json").read_text())["state"] == "finished"
    assert not (run_dir / "metrics.jsonl").exists() or not (run_dir / "metrics.jsonl").read_text().strip()
    src = torch.load(gradcam_run / "best.pt", weights_only=False)["method"]
    new = torch.load(run_dir / "best.pt", weights_only=False)["method"]
    assert src.keys() == new.keys() and all(torch.equal(src[k], new[k]) for k in src)  # weights unchanged
    assert 0 <= ev["f1_pos"] <= 1


def test_from_refuses_unfinished_run_other_dataset_and_trained_methods(gradcam_run, tmp_path):
    unfinished = tmp_path / "unfinished"
    shutil.copytree(gradcam_run, unfinished)
    (unfinished / "status.json").write_text(json.dumps({"state": "running"}))
    r = _from(unfinished, tmp_path / "o1")
    assert r.exit_code == 2 and "not finished" in r.output and "Traceback" not in r.output
    r = _from(gradcam_run, tmp_path / "o2", "layercam", "glas")
    assert r.exit_code == 2 and "'synthetic' run cannot be evaluated on 'glas'" in r.output
    r = _from(gradcam_run, tmp_path / "o3", "cam-avg")
    assert r.exit_code == 2 and "--from is for post-hoc" in r.output
    r = _from(tmp_path, tmp_path / "o4")
    assert r.exit_code == 2 and "not a run folder" in r.output
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_from_keeps_the_source_runs_experiment(gradcam_run, tmp_path):
    """A post-hoc map of an experiment's classifier belongs to that experiment's table."""
    import yaml

    src = tmp_path / "src"
    shutil.copytree(gradcam_run, src)
    cfg = yaml.safe_load((src / "config.yaml").read_text())
    (src / "config.yaml").write_text(yaml.safe_dump({**cfg, "experiment": "exp1"}))
    r = _from(src, tmp_path / "out")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out" / "exp1" / "synthetic" / "layercam" / "seed3" / "eval.json").is_file()
    r = _from(src, tmp_path / "out", "layercam", "synthetic", "--set", "experiment=mine")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out" / "mine" / "synthetic" / "layercam" / "seed3" / "eval.json").is_file()


def test_a_stopped_from_run_evaluation_resumes_where_it_stopped(gradcam_run, tmp_path, monkeypatch):
    """Score-CAM takes minutes an image on a CPU: a signal keeps the maps made so far (status
    "interrupted", not "failed") and the same command again predicts only the rest."""
    from baselines.posthoc import PosthocCam
    from wslbench.train import trainer as trainer_module

    monkeypatch.setitem(trainer_module._STOP, "requested", False)
    calls, real = [], PosthocCam.predict

    def predict(self, images, stop_after=None):
        calls.append(images.shape[0])
        if stop_after is not None and len(calls) == stop_after:
            trainer_module._STOP["requested"] = True  # what the SIGTERM handler does
        return real(self, images)

    one = ["--set", "data.eval_batch_size=1"]
    monkeypatch.setattr(PosthocCam, "predict", predict)
    assert _from(gradcam_run, tmp_path / "straight", "layercam", "synthetic", *one).exit_code == 0
    n_test = len(calls)
    calls.clear()
    monkeypatch.setattr(PosthocCam, "predict", lambda self, images: predict(self, images, stop_after=3))
    r = _from(gradcam_run, tmp_path / "broken", "layercam", "synthetic", *one)
    run_dir = tmp_path / "broken" / "synthetic" / "layercam" / "seed3"
    assert r.exit_code == 2 and "maps of 3 images are kept" in r.output and "Traceback" not in r.output
    assert json.loads((run_dir / "status.json").read_text())["state"] == "interrupted"
    trainer_module._STOP["requested"] = False
    calls.clear()
    monkeypatch.setattr(PosthocCam, "predict", predict)
    assert _from(gradcam_run, tmp_path / "broken", "layercam", "synthetic", *one).exit_code == 0
    assert n_test == 12 + 12 and len(calls) == n_test - 3  # 12 test images, then 12 validation maps for the record
    a, b = (json.loads((d / "synthetic" / "layercam" / "seed3" / "eval.json").read_text())
            for d in (tmp_path / "straight", tmp_path / "broken"))
    assert all(a[k] == b[k] for k in ("cls_error", "f1_pos", "f1_neg", "pxap"))
    assert json.loads((run_dir / "status.json").read_text())["state"] == "finished"
    assert not (run_dir / "eval_cache").exists()


def test_score_cam_keeps_each_images_weights_and_reads_them_back(tmp_path):
    """The kept channel weights give the same maps with two forwards an image instead of
    2 + channels; weights kept under another fingerprint are not read."""
    torch.manual_seed(0)
    method = ScoreCam(num_classes=3, backbone="test_resnet", output_stride=16).eval()
    with torch.no_grad():
        method.fc.weight.copy_(torch.randn(3, method.fc.in_features) * 5)
    x = torch.randn(2, 3, 32, 32)
    seen = []  # images through the trunk
    method.trunk.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[0]))
    with torch.no_grad():
        plain = method.predict(x)
    channels = method.fc.in_features
    assert sum(seen) == 2 + 2 + 2 * channels  # logits, activations, one masked input per channel

    def predict_with(folder, fingerprint):
        seen.clear()
        method.keep_progress_in(folder, fingerprint)
        with torch.no_grad():
            return method.predict(x)

    first = predict_with(tmp_path / "p", "weights-A")
    assert torch.equal(first.maps, plain.maps) and sum(seen) == 2 + 2 + 2 * channels
    assert len(list((tmp_path / "p" / "arrays").glob("*.npy"))) == 2  # one per image
    again = predict_with(tmp_path / "p", "weights-A")
    assert torch.equal(again.maps, plain.maps) and sum(seen) == 4  # no masked forward
    other = predict_with(tmp_path / "p", "weights-B")  # other weights: the kept ones are dropped
    assert torch.equal(other.maps, plain.maps) and sum(seen) == 2 + 2 + 2 * channels
    seen.clear()
    with torch.no_grad():  # another image is another key
        method.predict(x.flip(-1))
    assert sum(seen) == 2 + 2 + 2 * channels
    method.keep_progress_in(None, "")  # after the evaluation: nothing kept, nothing read
    seen.clear()
    with torch.no_grad():
        method.predict(x)
    assert sum(seen) == 2 + 2 + 2 * channels


def test_a_stopped_score_cam_evaluation_resumes_in_a_fresh_clone(gradcam_run, tmp_path, monkeypatch):
    """The map cache is git-ignored; the kept Score-CAM weights (eval_progress) are not. With only
    what a commit carries, the same command computes the weights of the images left only, and
    scores exactly what an unbroken evaluation scores."""
    import pytorch_grad_cam

    from wslbench.train import trainer as trainer_module

    monkeypatch.setitem(trainer_module._STOP, "requested", False)
    weighed, real = [], pytorch_grad_cam.ScoreCAM.get_cam_weights

    def get_cam_weights(self, input_tensor, *args, stop_after=None):
        weighed.append(input_tensor.shape[0])
        if stop_after is not None and len(weighed) == stop_after:
            trainer_module._STOP["requested"] = True  # what the SIGTERM handler does
        return real(self, input_tensor, *args)

    one = ["--set", "data.eval_batch_size=1"]
    monkeypatch.setattr(pytorch_grad_cam.ScoreCAM, "get_cam_weights", get_cam_weights)
    assert _from(gradcam_run, tmp_path / "straight", "scorecam", "synthetic", *one).exit_code == 0
    assert len(weighed) == 12 + 12  # the test images, then the validation images whose maps the record stores
    weighed.clear()
    monkeypatch.setattr(pytorch_grad_cam.ScoreCAM, "get_cam_weights",
                        lambda self, x, *args: get_cam_weights(self, x, *args, stop_after=4))
    r = _from(gradcam_run, tmp_path / "broken", "scorecam", "synthetic", *one)
    run_dir = tmp_path / "broken" / "synthetic" / "scorecam" / "seed3"
    assert r.exit_code == 2 and "Traceback" not in r.output
    status = json.loads((run_dir / "status.json").read_text())
    assert (status["state"], status["maps_kept"], status["progress_kept"]) == ("interrupted", 4, 4)
    assert len(list((run_dir / "eval_progress" / "arrays").glob("*.npy"))) == 4
    shutil.rmtree(run_dir / "eval_cache")  # what a fresh clone of the committed records lacks
    trainer_module._STOP["requested"] = False
    weighed.clear()
    monkeypatch.setattr(pytorch_grad_cam.ScoreCAM, "get_cam_weights", get_cam_weights)
    assert _from(gradcam_run, tmp_path / "broken", "scorecam", "synthetic", *one).exit_code == 0
    assert len(weighed) == 12 + 12 - 4
    a, b = (json.loads((d / "synthetic" / "scorecam" / "seed3" / "eval.json").read_text())
            for d in (tmp_path / "straight", tmp_path / "broken"))
    assert all(a[k] == b[k] for k in ("cls_error", "f1_pos", "f1_neg", "pxap"))
    assert (tmp_path / "straight" / "synthetic" / "scorecam" / "seed3" / "per_image.csv").read_bytes() == \
        (run_dir / "per_image.csv").read_bytes()
    assert not (run_dir / "eval_progress").exists() and not (run_dir / "eval_cache").exists()


def test_a_committed_posthoc_record_is_reevaluated_from_its_source_classifier(gradcam_run, tmp_path):
    """A record is committed without the post-hoc run's copy of the classifier (best.pt):
    ``wslbench eval`` reads the source's again, gives the same scores and stores the maps."""
    assert _from(gradcam_run, tmp_path, "gradcampp").exit_code == 0
    run_dir = tmp_path / "synthetic" / "gradcampp" / "seed3"
    before = json.loads((run_dir / "eval.json").read_text())
    (run_dir / "best.pt").unlink()
    (run_dir / "maps-test.npz").unlink()
    r = CliRunner().invoke(main, ["eval", str(run_dir)])
    assert r.exit_code == 0, r.output
    after = json.loads((run_dir / "eval.json").read_text())
    assert {k: v for k, v in after.items() if k != "options_not_recorded"} == before
    assert (run_dir / "maps-test.npz").is_file() and (run_dir / "maps-val.npz").is_file()

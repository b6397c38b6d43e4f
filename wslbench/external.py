"""``wslbench eval --maps``: score localization maps produced by any code (wsolevaluation's
idea of scoring heatmaps written by another codebase) and record them as a run folder, so
``wslbench tables`` and ``wslbench figures`` treat them like our own runs.

One file per test image named by its id: ``<id>.npy`` (2-D float in [0, 1]) or ``<id>.png``
(8- or 16-bit single channel, divided by 255 or 65535), at the evaluation image's size or any
size of the same aspect ratio: such a map is resized bilinearly to the evaluation image, as our
own maps are (wslbench.methods.maps.upsample); a map of another aspect ratio is refused.
Optional class predictions: a CSV with columns ``id`` and ``pred_label`` (index or class name).
Every file is checked before anything is written; the first problem is one message naming it.
"""
from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np
import torch

from wslbench.errors import ConfigError, DataError, WslbenchError
from wslbench.evaluate import ImagePrediction, denormalize, score_predictions

MAP_SUFFIXES = (".npy", ".png")
#: how the maps reached [0, 1] when the user does not say (eval.json's map_normalization)
SUPPLIED = "as supplied by the external code"


def read_map(path: Path) -> np.ndarray:
    """One map file as a 2-D float32 array in [0, 1]; DataError naming the file otherwise."""
    if path.suffix == ".npy":
        try:
            with open(path, "rb") as fh:
                magic = fh.read(6)
        except OSError as exc:
            raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
        if magic != b"\x93NUMPY":  # np.load would take it for a pickle and say so, which misleads
            raise DataError(f"{path}: not a .npy file (no .npy header; write the map with numpy.save)")
        try:
            a = np.load(path, allow_pickle=False)
        except ValueError as exc:
            if "pickle" in str(exc):
                raise DataError(f"{path}: the .npy file holds Python objects, not a numeric array") from exc
            raise DataError(f"{path}: cannot be read as a numeric array ({exc})") from exc
        except (OSError, EOFError) as exc:
            raise DataError(f"{path}: cannot be read as a numeric array ({exc})") from exc
        if a.ndim != 2:
            raise DataError(f"{path}: a map must be 2-D (height x width), this one has shape {a.shape}")
        if not np.issubdtype(a.dtype, np.floating):
            raise DataError(f"{path}: a .npy map must hold floats in [0, 1], this one holds {a.dtype}")
        if a.size == 0:
            raise DataError(f"{path}: empty map")
        if np.isnan(a).any():
            raise DataError(f"{path}: the map holds NaN ({int(np.isnan(a).sum())} pixel(s))")
        lo, hi = float(a.min()), float(a.max())
        if lo < 0 or hi > 1:
            raise DataError(f"{path}: values must lie in [0, 1], found [{lo:g}, {hi:g}]")
        return a.astype(np.float32)
    from PIL import Image

    from wslbench.data.base import bomb_detail

    try:
        with Image.open(path) as im:
            mode = im.mode
            a = np.array(im)
    except Image.DecompressionBombError as exc:
        raise DataError(f"{path}: too large to decode safely: {bomb_detail(exc)}") from exc
    except Exception as exc:  # Pillow raises many types for broken files; all mean "unreadable"
        raise DataError(f"{path}: not a readable PNG ({exc})") from exc
    if a.ndim != 2:
        raise DataError(f"{path}: a map must be a single-channel PNG (height x width), this one has shape {a.shape}")
    if mode == "L":
        return (a / 255.0).astype(np.float32)
    if mode.startswith("I"):  # 16-bit grayscale ("I;16", or "I" on some Pillow versions)
        if a.min() < 0 or a.max() > 65535:
            raise DataError(f"{path}: a 16-bit PNG map must hold values 0..65535")
        return (a / 65535.0).astype(np.float32)
    raise DataError(f"{path}: a PNG map must be 8- or 16-bit grayscale, this one has mode {mode}")


def map_files(maps_dir: Path, ids: list[str]) -> dict[str, Path]:
    """The file of every test id; a missing, extra or doubled file is a DataError naming it."""
    if not maps_dir.is_dir():
        raise DataError(f"--maps {maps_dir}: no such folder")
    found: dict[str, list[Path]] = {}
    for p in sorted(maps_dir.rglob("*")):
        if p.is_dir() or any(part.startswith(".") for part in p.relative_to(maps_dir).parts):
            continue
        rel = p.relative_to(maps_dir).as_posix()
        key = rel[: -len(p.suffix)] if p.suffix in MAP_SUFFIXES else None
        found.setdefault(key, []).append(p)
    wanted = set(ids)
    extra = [p for k, ps in found.items() if k not in wanted for p in ps]
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise DataError(f"{extra[0]}: not a map of a test image (expected <id>.npy or <id>.png for the "
                        f"{len(ids)} test ids){more}")
    missing = [i for i in ids if i not in found]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataError(f"{maps_dir / missing[0]}.npy: missing (no .npy or .png map for test image {missing[0]!r}){more}")
    for i in ids:
        if len(found[i]) > 1:
            raise DataError(f"{found[i][1]}: test image {i!r} has two maps ({', '.join(p.name for p in found[i])})")
    return {i: found[i][0] for i in ids}


def read_classes(path: Path, ids: list[str], class_names: list[str]) -> dict[str, int]:
    """Class predictions per test id from a CSV with columns id, pred_label (a UTF-8 byte-order
    mark, as spreadsheet programs write, is accepted). An id given twice with different labels is
    an error: which one the other code meant cannot be guessed."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise DataError(f"--classes {path}: {exc}") from exc
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}, line {line}: not UTF-8 text") from exc
    except csv.Error as exc:
        raise DataError(f"{path}: not a readable CSV ({exc})") from exc
    if not rows or "id" not in rows[0] or "pred_label" not in rows[0]:
        raise DataError(f"{path}: expected a CSV with columns id and pred_label")
    out: dict[str, int] = {}
    given: dict[str, tuple[int, str]] = {}  # id -> (line, pred_label as written)
    for n, row in enumerate(rows, start=2):
        rid = (row["id"] or "").strip()
        value = (row["pred_label"] or "").strip()
        if not rid:
            raise DataError(f"{path}, line {n}: no id")
        if value in class_names:
            label = class_names.index(value)
        else:
            try:
                label = int(value)
            except ValueError:
                label = -1
        if not 0 <= label < len(class_names):
            raise DataError(f"{path}, line {n}: pred_label {value!r} is neither a class index 0..{len(class_names) - 1} "
                            f"nor a class name")
        if rid in out and out[rid] != label:
            first, was = given[rid]
            raise DataError(f"{path}, line {n}: id {rid!r} is given twice with different labels: {was!r} (line {first}) "
                            f"and {value!r}")
        out[rid] = label
        given.setdefault(rid, (n, value))
    extra = sorted(set(out) - set(ids))
    if extra:
        raise DataError(f"{path}: id {extra[0]!r} is not a test image")
    missing = [i for i in ids if i not in out]
    if missing:
        raise DataError(f"{path}: no pred_label for test image {missing[0]!r}")
    return out


def check_shape(path: Path, shape: tuple[int, int], image: tuple[int, int]) -> None:
    """A map at another resolution is resized to its image, but only a proportional one: one
    scale factor must explain both sides to within a pixel of rounding (a network's stride, or
    maps made at the original size of an image the evaluation rescales). A map of another
    aspect ratio (e.g. 1x5000 for a 128x128 image, or a padded image's map) would be stretched
    into a wrong answer, so it is refused."""
    (h, w), (H, W) = shape, image
    if (h, w) == (H, W):
        return
    lo = max((h - 1) / H, (w - 1) / W)
    hi = min((h + 1) / H, (w + 1) / W)
    if lo > hi:
        raise DataError(f"{path}: map is {h}x{w} (height x width) but its image is {H}x{W}: only a map of the "
                        f"same shape, or of the same aspect ratio (resized), can be scored")


def resize_to(prob: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize to (H, W) as our own maps are upsampled; unchanged at the same size."""
    if prob.shape == tuple(shape):
        return prob
    from wslbench.methods.maps import upsample

    return upsample(torch.from_numpy(prob)[None], shape)[0].clamp(0, 1).numpy()


def evaluate_maps(maps_dir, cfg, out_dir, classes: str | Path | None = None, crf: bool | None = None,
                  map_normalization: str = SUPPLIED) -> dict:
    """Score the maps under ``maps_dir`` on the test split of ``cfg.dataset`` (its data options
    from ``cfg``) and write a finished run folder at ``out_dir``."""
    from wslbench.config import data_root, dataset_options
    from wslbench.io import atomic_write_json, atomic_write_yaml, finished_result
    from wslbench.protocols import PAPER, Protocol
    from wslbench.registry import create_dataset

    maps_dir, out_dir = Path(maps_dir), Path(out_dir)
    protocol = Protocol.from_eval_config(cfg.eval)
    if protocol.cfg.name != PAPER:
        raise ConfigError("eval --maps scores with the paper protocol (tau = eval.threshold): choosing tau on "
                          "validation masks needs validation maps, which --maps does not read")
    if finished_result(out_dir) is not None or (out_dir / "eval.json").exists():
        raise WslbenchError(f"{out_dir} already holds a result; it is never overwritten (choose another --out)")
    test = create_dataset(cfg.dataset, split="test", root=data_root(cfg.dataset, cfg.data.get("root")), augment=False,
                          **dataset_options(cfg.data))
    ids = [r.id for r in test.records]
    from wslbench.data.base import verify_before_training

    verify_before_training([test])  # SHA256SUMS and every test file, as `run` checks them
    files = map_files(maps_dir, ids)
    for k, i in enumerate(ids):  # every map is checked before anything is written
        check_shape(files[i], read_map(files[i]).shape, tuple(test[k]["mask"].shape))
    predicted = read_classes(Path(classes), ids, list(test.class_names)) if classes else None
    ev = cfg.eval
    use_crf = bool(ev.get("crf", False) if crf is None else crf)
    norm = test.transform.normalize.transforms[1]

    def predictions():
        for i, rec in enumerate(test.records):
            item = test[i]
            mask = item["mask"].numpy().astype(bool)
            prob = resize_to(read_map(files[rec.id]), mask.shape)
            image = denormalize(item["image"][None], norm.mean, norm.std)[0] if use_crf else None
            yield ImagePrediction(id=rec.id, label=rec.label, pred_label=predicted[rec.id] if predicted else None,
                                  prob=prob, mask=mask, image=image)

    threshold, info = protocol.threshold(None, None, None)
    info.update({"method": cfg.method, "dataset": cfg.dataset, "seed": cfg.seed, "tag": cfg.tag,
                 "source": {"maps": str(maps_dir), "classes": str(classes) if classes else None}})
    config = cfg.to_dict()
    config["eval"] = {**config["eval"], "maps": str(maps_dir), "classes": str(classes) if classes else None}
    atomic_write_yaml(out_dir / "config.yaml", config)
    atomic_write_json(out_dir / "status.json", {"state": "running", "time": time.time()})
    result = score_predictions(
        predictions(), out_dir, threshold=threshold, classifies=predicted is not None, crf=use_crf,
        crf_params=ev.get("crf_params") or {}, save_masks=bool(ev.get("save_masks", True)),
        map_normalization=map_normalization, curve_interval=float(ev.get("curve_interval", 0.001)),
        split="test", extra=info)
    if ev.get("figures", True):
        from wslbench.figures import run_pr_figure

        run_pr_figure(out_dir)
    atomic_write_json(out_dir / "status.json", {"state": "finished", "time": time.time()})
    return result

"""One evaluation path for every method: predict a split at full resolution, binarise the
maps, score them, write eval.json, the per-image CSV and the predicted masks; the
threshold-free scores (PxAP, areas under F1+(t) and F1-(t), wslbench.curves) beside them.
Maps made by other code enter through ``score_predictions`` (wslbench.external). This module
never imports the trainer: the trainer uses the evaluation, not the reverse.

Evaluation never branches on a method's name; it reads the method's class flags
(``classifies``, ``crf_applicable``) and calls ``predict``.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from wslbench.curves import CURVE_INTERVAL, CurveAccumulator, threshold_grid
from wslbench.errors import RunInterrupted, WslbenchError
from wslbench.eval_padding import crop_to_box, pad_to_multiple
from wslbench.io import atomic_save, atomic_write_bytes, atomic_write_json, atomic_write_text
from wslbench.methods.maps import MapRecipe
from wslbench.metrics import RECALL_GRID, classification_error, f1_pos_neg, interpolated_pr, mean_score
from wslbench.stored_maps import StoredMap, store_split

#: how CAM-style maps reach [0, 1] (wslbench.methods.maps.minmax_normalize); eval.json says it
MINMAX_PER_IMAGE = "min-max per image"


@dataclass
class ImagePrediction:
    id: str
    label: int
    pred_label: int | None
    prob: np.ndarray  # (H, W) float32 in [0, 1]
    mask: np.ndarray  # (H, W) bool ground truth
    image: np.ndarray | None  # (H, W, 3) uint8, as the model saw it (for CRF and figures)
    # the native map and the recipe that made ``prob`` from it (what a run's record stores,
    # wslbench.stored_maps); None for a method that declares no recipe, or maps from other code
    stored: "StoredMap | None" = None
    recipe: "MapRecipe | None" = None


class FingerprintedFolder:
    """Files valid for one ``fingerprint`` (weights, data and evaluation settings): a folder made
    under another fingerprint is emptied first. Subclasses say what the files hold."""

    #: the sub-folder of the entries, which ``len`` and ``kept_in`` count
    entries: str = "entries"

    def __init__(self, folder: str | Path, fingerprint: str):
        self.folder = Path(folder)
        key = self.folder / "fingerprint.txt"
        if self.folder.is_dir() and (not key.is_file() or key.read_text() != fingerprint):
            shutil.rmtree(self.folder)
        if not key.is_file():
            atomic_write_text(key, fingerprint)

    def __len__(self) -> int:
        return self.kept_in(self.folder)

    @classmethod
    def kept_in(cls, folder: str | Path) -> int:
        """How many entries such a folder holds (0 when there is none), read without opening it
        and without the fingerprint check (the sweep's dry run only counts)."""
        where = Path(folder) / cls.entries
        return sum(1 for p in where.rglob("*") if p.is_file() and not p.name.endswith(".tmp")) if where.is_dir() else 0

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class MapCache(FingerprintedFolder):
    """The maps of an evaluation that has not finished, one file per image, so that a stopped
    evaluation resumes where it stopped. The evaluation removes the folder once eval.json is
    written. Full-resolution float maps are large (about 1.6 MB a GlaS image): the folder stays
    out of git, so it serves a resume on the same machine; a method whose maps take hours keeps
    what survives a fresh clone in an ArrayMemo (Method.keep_progress_in)."""

    entries = "maps"

    def _path(self, image_id: str) -> Path:
        return self.folder / self.entries / f"{image_id}.npz"

    def get(self, image_id: str) -> tuple[np.ndarray, int | None, StoredMap | None, MapRecipe | None] | None:
        """(map, predicted label, native map, recipe) of an image predicted before, else None (also
        for a torn file); the last two are None when the method declares no recipe."""
        path = self._path(image_id)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                label = int(z["pred_label"])
                label = None if label < 0 else label
                stored = recipe = None
                if "native" in z:
                    recipe = MapRecipe.from_dict(json.loads(str(z["recipe"])))
                    stored = StoredMap(image_id, z["native"], tuple(z["size"].tolist()), tuple(z["box"].tolist()), label)
                return z["prob"], label, stored, recipe
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile):
            return None

    def put(self, image_id: str, prob: np.ndarray, pred_label: int | None, stored: StoredMap | None = None,
            recipe: MapRecipe | None = None) -> None:
        extra = {}
        if stored is not None and recipe is not None:
            extra = {"native": stored.native, "size": np.array(stored.size), "box": np.array(stored.box),
                     "recipe": np.array(json.dumps(recipe.to_dict()))}
        atomic_save(self._path(image_id), lambda buf: np.savez(
            buf, prob=prob.astype(np.float32), pred_label=np.int64(-1 if pred_label is None else pred_label), **extra))


class ArrayMemo(FingerprintedFolder):
    """Small arrays keyed by a string (a hash of the input), one .npy file each: the exact
    intermediate results of an expensive map method (Score-CAM's channel weights, a few KB an
    image), small enough to commit with a run's records so that a fresh clone resumes."""

    entries = "arrays"

    def _path(self, key: str) -> Path:
        return self.folder / self.entries / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        """The array stored under ``key``, else None (also for a torn file)."""
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None

    def put(self, key: str, array: np.ndarray) -> None:
        atomic_save(self._path(key), lambda buf: np.save(buf, np.asarray(array), allow_pickle=False))


def map_fingerprint(method, settings: dict) -> str:
    """What a method's maps depend on: its weights (every tensor's name and bytes) and the
    ``settings`` (data and evaluation options, as JSON)."""
    import hashlib

    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for name, t in method.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def autocast_for(device: torch.device, amp: bool):
    """bf16 autocast on CUDA or a CPU when ``amp`` (the run's resolved choice: the trainer asks
    wslbench.train.fastpath whether this CPU has native bf16), else fp32."""
    if amp and device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def denormalize(images: torch.Tensor, mean, std) -> np.ndarray:
    """(B,3,H,W) normalised -> (B,H,W,3) uint8."""
    m = torch.tensor(mean, device=images.device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=images.device).view(1, 3, 1, 1)
    x = (images.float() * s + m).clamp(0, 1).mul(255).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def predict_dataset(
    method,
    dataset,
    device: torch.device,
    batch_size: int = 1,
    amp: bool = False,
    channels_last: bool = False,
    keep_images: bool = False,
    num_workers: int = 0,
    pad_multiple: int = 0,
    indices: list[int] | None = None,
    cache: MapCache | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Iterator[ImagePrediction]:
    """Yield one ImagePrediction per image of ``dataset`` (its evaluation transform: whole image),
    or of the images at ``indices`` only. ``pad_multiple``: reflect-pad each batch to sides that
    are multiples of it before ``predict`` and crop the maps back (the authors' evaluation
    geometry, wslbench.eval_padding). With a ``cache``, a batch whose maps are all there is not
    predicted again and every predicted map is stored; ``should_stop`` is asked before each
    prediction and a yes raises RunInterrupted (the cache keeps what was done)."""
    source = dataset if indices is None else Subset(dataset, list(indices))
    loader = DataLoader(source, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    method.eval()
    mean = getattr(dataset.transform.normalize.transforms[1], "mean", None)
    std = getattr(dataset.transform.normalize.transforms[1], "std", None)
    for batch in loader:
        images = batch["image"].to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        cached = [cache.get(i) for i in batch["id"]] if cache is not None else [None]
        if all(c is not None for c in cached):
            probs, labels, stored, recipes = (list(c) for c in zip(*cached))
        else:
            if should_stop is not None and should_stop():
                where = f"; the maps of {len(cache)} images are kept in {cache.folder}" if cache is not None else ""
                raise RunInterrupted(f"evaluation stopped by a signal{where}: run the same command again to "
                                     "predict only the rest")
            padded, box = pad_to_multiple(images, pad_multiple)
            with torch.no_grad(), autocast_for(device, amp):
                pred = method.predict(padded)
            probs = crop_to_box(pred.maps, box).float().clamp(0, 1).cpu().numpy()
            labels = pred.logits.argmax(1).cpu().tolist() if pred.logits is not None else [None] * len(probs)
            stored, recipes = [None] * len(probs), [pred.recipe] * len(probs)
            if pred.native is not None and pred.recipe is not None:
                natives = pred.native.float().cpu().numpy()
                size = tuple(int(v) for v in padded.shape[-2:])
                stored = [StoredMap(i, n, size, tuple(int(v) for v in box), lab)
                          for i, n, lab in zip(batch["id"], natives, labels)]
            if cache is not None:
                for i, prob, label, st, rec in zip(batch["id"], probs, labels, stored, recipes):
                    cache.put(i, prob, label, st, rec)
        raw = denormalize(images, mean, std) if keep_images else [None] * len(probs)
        for i in range(len(probs)):
            yield ImagePrediction(
                id=batch["id"][i],
                label=int(batch["label"][i]),
                pred_label=labels[i],
                prob=probs[i],
                mask=batch["mask"][i].numpy().astype(bool),
                image=raw[i],
                stored=stored[i],
                recipe=recipes[i] if stored[i] is not None else None,
            )


def classification_only(method, dataset, device, batch_size=1, amp=False, channels_last=False) -> float | None:
    """Classification error (%) of ``method`` on ``dataset``; None for methods that do not classify."""
    if not method.classifies:
        return None
    preds, labels = [], []
    for p in predict_dataset(method, dataset, device, batch_size, amp, channels_last):
        preds.append(p.pred_label)
        labels.append(p.label)
    return classification_error(preds, labels)


def _png(mask: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255).save(buf, format="PNG")
    return buf.getvalue()


def score_predictions(
    predictions: Iterable[ImagePrediction],
    out_dir: str | Path,
    threshold: float = 0.5,
    classifies: bool = True,
    crf: bool = False,
    crf_applicable: bool = True,
    crf_params: dict | None = None,
    save_masks: bool = True,
    save_maps: bool = False,
    map_normalization: str = MINMAX_PER_IMAGE,
    curve_interval: float = CURVE_INTERVAL,
    split: str = "test",
    extra: dict | None = None,
    store_maps: bool = False,
    pad_multiple: int = 0,
    kept: dict | None = None,
    before_write: Callable[[], None] | None = None,
) -> dict:
    """Score maps (from any source) against their masks and write the run's evaluation files:
    eval.json, per_image.csv, pr_curve.csv, threshold_curves.csv, masks/ (and maps/*.npy).
    ``store_maps``: also the native maps, when every prediction carries one, in
    ``maps-<split>.npz`` (wslbench.stored_maps; ``pad_multiple`` the geometry), written before
    eval.json. ``kept``: entries of an earlier eval.json that this one keeps where it does not
    compute them itself (a rescore); ``extra`` entries are added last. ``before_write`` is called
    once every map is scored, before any file is written."""
    out_dir = Path(out_dir)
    rows, preds, labels, crf_inputs, stored, recipes = [], [], [], [], [], []
    curves = {"pos": [], "neg": []}
    grid = threshold_grid(curve_interval)
    acc = CurveAccumulator(grid=grid)
    for p in predictions:
        binary = p.prob >= threshold
        f1p, f1n = f1_pos_neg(binary, p.mask)
        for key, scores, target in (("pos", p.prob, p.mask), ("neg", 1 - p.prob, ~p.mask)):
            curve = interpolated_pr(scores, target)
            if curve is not None:
                curves[key].append(curve)
        rows.append({"id": p.id, "label": p.label, "pred_label": p.pred_label, "f1_pos": f1p, "f1_neg": f1n,
                     # Dice undefined (prediction and truth both empty), left out of the means (metrics doc)
                     "empty_both_pos": int(np.isnan(f1p)), "empty_both_neg": int(np.isnan(f1n)),
                     **acc.add(p.prob, p.mask)})
        preds.append(p.pred_label)
        labels.append(p.label)
        if save_masks:
            atomic_write_bytes(out_dir / "masks" / f"{p.id}.png", _png(binary))
        if save_maps:
            atomic_save(out_dir / "maps" / f"{p.id}.npy", lambda buf, a=p.prob: np.save(buf, a.astype(np.float32)))
        if crf:
            crf_inputs.append((p.image, p.prob, p.mask))
        if store_maps:
            stored.append(p.stored)
            recipes.append(p.recipe)
    if not rows:
        raise WslbenchError(f"nothing to evaluate: the {split} split has no image")
    if before_write is not None:
        before_write()
    (f1_pos, n_pos), (f1_neg, n_neg) = (mean_score(r[k] for r in rows) for k in ("f1_pos", "f1_neg"))
    result = {
        **(kept or {}),
        "cls_error": classification_error(preds, labels) if classifies else None,
        "f1_pos": f1_pos,
        "f1_neg": f1_neg,
        **acc.summary(),
        "n_images": len(rows),
        "n_empty_both": {"f1_pos": n_pos, "f1_neg": n_neg},  # images left out of each mean (Dice undefined)
        "threshold": threshold,
        "curve_interval": curve_interval,
        "map_normalization": map_normalization,
        "split": split,
    }
    if crf and crf_applicable:
        from wslbench.crf import refine_many

        refined = refine_many([(img, prob) for img, prob, _ in crf_inputs], **(crf_params or {}))
        crf_acc = CurveAccumulator(grid=grid)
        for row, ref, (_, _, mask) in zip(rows, refined, crf_inputs):
            row["crf_f1_pos"], row["crf_f1_neg"] = f1_pos_neg(ref >= threshold, mask)
            row["crf_ap"] = crf_acc.add(np.clip(ref, 0, 1), mask)["ap"]
        for k in ("crf_f1_pos", "crf_f1_neg"):
            result[k], result["n_empty_both"][k] = mean_score(r[k] for r in rows)
        result.update({f"crf_{k}": v for k, v in crf_acc.summary().items()})
    result.update(extra or {})
    if store_maps:
        store_split(out_dir, split, stored, recipes, classifies=classifies, crf_applicable=crf_applicable,
                    map_normalization=map_normalization, pad_multiple=pad_multiple)
    write_pr_curve(out_dir / "pr_curve.csv", curves)
    write_threshold_curves(out_dir / "threshold_curves.csv", acc.table())
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0].keys()))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(out_dir / "per_image.csv", buf.getvalue().encode())
    atomic_write_json(out_dir / "eval.json", result)
    return result


def evaluate(
    method,
    dataset,
    out_dir: str | Path,
    device: torch.device,
    threshold: float = 0.5,
    batch_size: int = 1,
    amp: bool = False,
    channels_last: bool = False,
    crf: bool = False,
    crf_params: dict | None = None,
    save_masks: bool = True,
    extra: dict | None = None,
    save_maps: bool = False,
    curve_interval: float = CURVE_INTERVAL,
    pad_multiple: int = 0,
    cache: MapCache | None = None,
    should_stop: Callable[[], bool] | None = None,
    store_maps: bool = False,
    before_write: Callable[[], None] | None = None,
) -> dict:
    """Score ``method`` on ``dataset`` and write eval.json, per_image.csv and masks/ under out_dir
    (with ``store_maps``, the native maps too: score_predictions);
    with a ``cache`` (see predict_dataset), a stopped evaluation resumes, and the cache goes once
    eval.json is written."""
    result = score_predictions(
        predict_dataset(method, dataset, device, batch_size, amp, channels_last, keep_images=crf,
                        pad_multiple=pad_multiple, cache=cache, should_stop=should_stop),
        out_dir,
        threshold=threshold,
        classifies=method.classifies,
        crf=crf,
        crf_applicable=method.crf_applicable,
        crf_params=crf_params,
        save_masks=save_masks,
        save_maps=save_maps,
        map_normalization=getattr(method, "map_normalization", MINMAX_PER_IMAGE),
        curve_interval=curve_interval,
        split=dataset.split,
        extra=extra,
        store_maps=store_maps,
        pad_multiple=pad_multiple,
        before_write=before_write,
    )
    if cache is not None:
        cache.clear()
    return result


def write_pr_curve(path: Path, curves: dict[str, list[np.ndarray]]) -> None:
    """Average interpolated precision-recall curves (foreground and background) over the images
    (the paper's Figure 6): recall, precision_pos, precision_neg."""
    lines = ["recall,precision_pos,precision_neg"]
    mean = {k: (np.mean(v, axis=0) if v else np.full_like(RECALL_GRID, np.nan)) for k, v in curves.items()}
    for i, r in enumerate(RECALL_GRID):
        lines.append(f"{r:.4f},{mean['pos'][i]:.6f},{mean['neg'][i]:.6f}")
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())


def write_threshold_curves(path: Path, table: dict[str, np.ndarray]) -> None:
    """F1+(t) and F1-(t) averaged over the images, pooled precision and recall of the
    foreground (PxAP's curve), at every threshold t of the grid."""
    cols = list(table)
    lines = [",".join(cols)]
    for i in range(len(table["threshold"])):
        lines.append(",".join(f"{table[c][i]:.{4 if c == 'threshold' else 8}f}" for c in cols))
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())


__all__ = ["evaluate", "score_predictions", "predict_dataset", "classification_only", "atomic_save", "MapCache",
           "ArrayMemo", "map_fingerprint"]

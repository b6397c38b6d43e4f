"""One evaluation path for every method: predict a split at full resolution, binarise the
maps, score them, write eval.json, the per-image CSV and the predicted masks.

Evaluation never branches on a method's name; it reads the method's class flags
(``classifies``, ``crf_applicable``) and calls ``predict``.
"""
from __future__ import annotations

import contextlib
import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader

from wslbench.io import atomic_save, atomic_write_bytes, atomic_write_json
from wslbench.metrics import RECALL_GRID, classification_error, f1_pos_neg, interpolated_pr


@dataclass
class ImagePrediction:
    id: str
    label: int
    pred_label: int | None
    prob: np.ndarray  # (H, W) float32 in [0, 1]
    mask: np.ndarray  # (H, W) bool ground truth
    image: np.ndarray | None  # (H, W, 3) uint8, as the model saw it (for CRF and figures)


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
) -> Iterator[ImagePrediction]:
    """Yield one ImagePrediction per image of ``dataset`` (its evaluation transform: whole image)."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    method.eval()
    mean = getattr(dataset.transform.normalize.transforms[1], "mean", None)
    std = getattr(dataset.transform.normalize.transforms[1], "std", None)
    for batch in loader:
        images = batch["image"].to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.no_grad(), autocast_for(device, amp):
            pred = method.predict(images)
        probs = pred.maps.float().clamp(0, 1).cpu().numpy()
        labels = pred.logits.argmax(1).cpu().tolist() if pred.logits is not None else [None] * len(probs)
        raw = denormalize(images, mean, std) if keep_images else [None] * len(probs)
        for i in range(len(probs)):
            yield ImagePrediction(
                id=batch["id"][i],
                label=int(batch["label"][i]),
                pred_label=labels[i],
                prob=probs[i],
                mask=batch["mask"][i].numpy().astype(bool),
                image=raw[i],
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
) -> dict:
    """Score ``method`` on ``dataset`` and write eval.json, per_image.csv and masks/ under out_dir."""
    out_dir = Path(out_dir)
    rows, preds, labels, crf_inputs = [], [], [], []
    curves = {"pos": [], "neg": []}
    for p in predict_dataset(method, dataset, device, batch_size, amp, channels_last, keep_images=crf):
        binary = p.prob >= threshold
        f1p, f1n = f1_pos_neg(binary, p.mask)
        for key, scores, target in (("pos", p.prob, p.mask), ("neg", 1 - p.prob, ~p.mask)):
            curve = interpolated_pr(scores, target)
            if curve is not None:
                curves[key].append(curve)
        rows.append({"id": p.id, "label": p.label, "pred_label": p.pred_label, "f1_pos": f1p, "f1_neg": f1n})
        preds.append(p.pred_label)
        labels.append(p.label)
        if save_masks:
            atomic_write_bytes(out_dir / "masks" / f"{p.id}.png", _png(binary))
        if crf:
            crf_inputs.append((p.image, p.prob, p.mask))
    result = {
        "cls_error": classification_error(preds, labels) if method.classifies else None,
        "f1_pos": float(np.mean([r["f1_pos"] for r in rows])),
        "f1_neg": float(np.mean([r["f1_neg"] for r in rows])),
        "n_images": len(rows),
        "threshold": threshold,
        "split": dataset.split,
    }
    if crf and method.crf_applicable:
        from wslbench.crf import refine_many

        refined = refine_many([(img, prob) for img, prob, _ in crf_inputs], **(crf_params or {}))
        for row, ref, (_, _, mask) in zip(rows, refined, crf_inputs):
            row["crf_f1_pos"], row["crf_f1_neg"] = f1_pos_neg(ref >= threshold, mask)
        result["crf_f1_pos"] = float(np.mean([r["crf_f1_pos"] for r in rows]))
        result["crf_f1_neg"] = float(np.mean([r["crf_f1_neg"] for r in rows]))
    result.update(extra or {})
    write_pr_curve(out_dir / "pr_curve.csv", curves)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0].keys()))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(out_dir / "per_image.csv", buf.getvalue().encode())
    atomic_write_json(out_dir / "eval.json", result)
    return result


def write_pr_curve(path: Path, curves: dict[str, list[np.ndarray]]) -> None:
    """Average interpolated precision-recall curves (foreground and background) over the images
    (the paper's Figure 6): recall, precision_pos, precision_neg."""
    lines = ["recall,precision_pos,precision_neg"]
    mean = {k: (np.mean(v, axis=0) if v else np.full_like(RECALL_GRID, np.nan)) for k, v in curves.items()}
    for i, r in enumerate(RECALL_GRID):
        lines.append(f"{r:.4f},{mean['pos'][i]:.6f},{mean['neg'][i]:.6f}")
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())


def evaluate_run(run_dir: str | Path, crf: bool | None = None, device: str | None = None, checkpoint: str = "best.pt") -> dict:
    """``wslbench eval RUN_DIR``: reload the run's config and checkpoint, evaluate on the test set."""
    from wslbench.train.trainer import Trainer

    trainer = Trainer.from_run_dir(run_dir, device=device)
    return trainer.evaluate_test(checkpoint=checkpoint, crf=crf)


__all__ = ["evaluate", "evaluate_run", "predict_dataset", "classification_only", "atomic_save"]

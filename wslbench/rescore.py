"""``wslbench rescore``: every score of a finished run recomputed from the maps its record stores
(wslbench.stored_maps), with no checkpoint and no trunk: a new threshold rule, a CRF pass or a
pixel budget on a finished comparison is a rescore, not a retraining.

Under the protocol and threshold the run was evaluated with, a rescore rewrites the run's own
eval.json, per_image.csv, pr_curve.csv and threshold_curves.csv, byte for byte as the evaluation
wrote them. Under anything else, and for maps stored lossily (8-bit PNG: U-Net's maps), the
results go beside them, in ``rescore/<name>/`` of the run folder (never over the original),
``name`` saying what changed (e.g. ``pixel_budget-1``; ``paper`` for a lossy run's own protocol).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from wslbench.config import RunConfig, from_dict, yaml_load
from wslbench.errors import WslbenchError
from wslbench.evaluate import ImagePrediction, score_predictions
from wslbench.protocols import PAPER, Protocol, protocol_config
from wslbench.runs import RESCORE_FOLDER
from wslbench.stored_maps import maps_file, read_maps

#: eval.json entries that describe how tau was chosen: a rescore states its own
PROTOCOL_KEYS = ("protocol", "protocol_config", "protocol_label", "threshold_source", "threshold_images",
                 "validation_pad_multiple")
#: the folder (in a run) of rescores under other settings (wslbench.runs reads it for the tables)
RESCORE = RESCORE_FOLDER


@dataclass
class Rescored:
    run_dir: Path
    out_dir: Path
    result: dict


def _config(run_dir: Path) -> RunConfig:
    try:
        from wslbench.train.trainer import old_geometry

        return from_dict(old_geometry(yaml_load((run_dir / "config.yaml").read_text())))
    except FileNotFoundError:
        raise WslbenchError(f"{run_dir} is not a run folder (no config.yaml)") from None


def variant_name(protocol: dict, threshold: float | None, crf: bool) -> str:
    """The ``rescore/`` folder name of a rescore's settings."""
    name = protocol.get("name", PAPER)
    if protocol.get("images_per_class") is not None:
        name += f"-{protocol['images_per_class']}"
    if protocol.get("criterion", "f1_mean") != "f1_mean":
        name += f"-{protocol['criterion']}"
    if protocol.get("seed", 0):
        name += f"-seed{protocol['seed']}"
    if threshold is not None:
        name += f"-t{threshold:g}"
    return name + ("-crf" if crf else "")


def _predictions(dataset, maps: dict, recipe, keep_images: bool, indices=None):
    """ImagePredictions of ``dataset``'s images (at ``indices``) from the stored ``maps`` (by id),
    masks and images as evaluation sees them (the data set's evaluation transform)."""
    from wslbench.evaluate import denormalize

    norm = dataset.transform.normalize.transforms[1]
    for i in (range(len(dataset)) if indices is None else indices):
        item = dataset[i]
        m = maps.get(item["id"])
        if m is None:
            raise WslbenchError(f"the stored maps have no map of image {item['id']} ({dataset.split} split): the "
                                "data set differs from the one the run was evaluated on")
        image = denormalize(item["image"][None], norm.mean, norm.std)[0] if keep_images else None
        yield ImagePrediction(id=item["id"], label=int(item["label"]), pred_label=m.pred_label,
                              prob=m.scored_map(recipe), mask=item["mask"].numpy().astype(bool), image=image)


def rescore_run(run_dir: str | Path, protocol: dict | str | None = None, threshold: float | None = None,
                crf: bool | None = None) -> Rescored:
    """Rescore one run (see the module doc); ``protocol``/``threshold``/``crf`` None: the run's own."""
    from wslbench.train.trainer import build_dataset

    run_dir = Path(run_dir)
    cfg = _config(run_dir)
    try:
        old = json.loads((run_dir / "eval.json").read_text())
    except FileNotFoundError:
        raise WslbenchError(f"{run_dir} has no eval.json: the run has not finished") from None
    meta, recipe, stored = read_maps(maps_file(run_dir, "test"))
    own = protocol_config(cfg.eval)
    eval_cfg = dict(cfg.eval)
    if protocol is not None:
        eval_cfg["protocol"] = protocol
    if threshold is not None:
        eval_cfg["threshold"] = float(threshold)
    proto = Protocol.from_eval_config(eval_cfg)
    own_crf = bool(cfg.eval.get("crf", False))
    crf = own_crf if crf is None else bool(crf)
    same = proto.cfg == own and (threshold is None or float(threshold) == float(cfg.eval.get("threshold", 0.5))) \
        and crf == own_crf
    # lossy maps (8-bit PNG) do not give the evaluation's numbers back exactly: never over the original
    exact = meta.get("encoding") == "float32"
    out_dir = run_dir if same and exact else run_dir / RESCORE / variant_name(
        {k: v for k, v in vars(proto.cfg).items() if k not in ("ties", "select_checkpoint")},
        None if threshold is None else float(threshold), crf)
    if proto.cfg.select_checkpoint and not own.select_checkpoint:
        raise WslbenchError("a rescore cannot choose another checkpoint (eval.protocol.select_checkpoint): "
                            "the record stores the maps of the checkpoint the run kept")
    if proto.cfg.name == PAPER:
        tau, info = proto.paper_threshold, proto.describe()
    else:
        _, val_recipe, val_stored = read_maps(maps_file(run_dir, "val"))
        val_set = build_dataset(cfg, "val")
        idx = proto.budget_indices(val_set)
        tau, info = proto.threshold_from(val_set, _predictions(val_set, {m.id: m for m in val_stored}, val_recipe,
                                                               False, idx))
    test_set = build_dataset(cfg, "test", augment=False)
    kept = {k: v for k, v in old.items() if k not in PROTOCOL_KEYS and not k.startswith("crf_")}
    if out_dir != run_dir:
        kept["rescored_from"] = f"stored maps ({meta.get('encoding')}, wslbench rescore)"
    result = score_predictions(
        _predictions(test_set, {m.id: m for m in stored}, recipe, keep_images=crf),
        out_dir, threshold=tau, classifies=bool(meta["classifies"]), crf=crf,
        crf_applicable=bool(meta["crf_applicable"]), crf_params=eval_cfg.get("crf_params") or {}, save_masks=False,
        map_normalization=meta["map_normalization"], curve_interval=float(eval_cfg.get("curve_interval", 0.001)),
        split="test", extra=info, kept=kept)
    return Rescored(run_dir, out_dir, result)


def without_maps_reason(run_dir: Path) -> str | None:
    """Why a run cannot be rescored (None: it can)."""
    if not (run_dir / "eval.json").is_file():
        return "not finished (no eval.json)"
    if not maps_file(run_dir, "test").is_file():
        return "no stored maps (evaluated before records stored maps, or its method declares no map recipe)"
    return None


__all__ = ["rescore_run", "without_maps_reason", "variant_name", "Rescored", "RESCORE"]

"""A run's maps in its record: the native map of every evaluated image, with the recipe that turns
it into the scored map, so that every score can be recomputed without a checkpoint or a trunk
(``wslbench rescore``, wslbench.rescore).

One file per split, ``maps-<split>.npz`` (numpy's zip of plain arrays, no pickle):

- ``meta``: JSON text: the format version, the split, the method's recipe
  (wslbench.methods.maps.MapRecipe), its evaluation flags (``classifies``, ``crf_applicable``,
  ``map_normalization``), the geometry (``pad_multiple``) and the encoding;
- ``ids``, ``pred_label`` (-1: the method does not classify), ``size`` (the (H, W) the recipe
  upsamples to: the padded input), ``box`` (top, left, height, width of the image in it) and
  ``shape`` (the native map's (h, w)), one row per image;
- the maps themselves, concatenated: ``float32`` values, exact (a stride-32 GlaS map is about 400
  values; the grad-cam package's maps too, stored before its resize), or, for a map that only
  exists at the input's resolution (U-Net), ``png8``: each map rounded to a multiple of 1/255 and stored as an 8-bit PNG,
  off by at most 0.5/255 (0.002) per pixel. (16-bit PNG was tried first: 347 KB a GlaS image
  against 45 KB, 35 MB for one run's maps against the 10 MB a record may take.)
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from wslbench.errors import WslbenchError
from wslbench.eval_padding import crop_to_box
from wslbench.io import atomic_save
from wslbench.methods.maps import MapRecipe

FORMAT = 1
#: the 8-bit PNG's scale: a map value v is stored as round(v * PNG_SCALE)
PNG_SCALE = 255


def maps_file(run_dir: str | Path, split: str) -> Path:
    return Path(run_dir) / f"maps-{split}.npz"


@dataclass
class StoredMap:
    """One image's native map and where it goes: ``size`` is what the recipe upsamples to,
    ``box`` (top, left, h, w) the image inside that (padded) size."""

    id: str
    native: np.ndarray  # (h, w) float32
    size: tuple[int, int]
    box: tuple[int, int, int, int]
    pred_label: int | None

    def scored_map(self, recipe: MapRecipe) -> np.ndarray:
        """The (h, w) map in [0, 1] that evaluation scores, by the same steps as evaluation:
        recipe, crop to the image, clamp (wslbench.evaluate.predict_dataset)."""
        native = torch.from_numpy(np.ascontiguousarray(self.native))[None]
        return crop_to_box(recipe.apply(native, self.size), self.box).float().clamp(0, 1).numpy()[0]


def encoding_for(recipe: MapRecipe) -> str:
    """float32 for maps below the input's resolution (small, exact), png8 for full-resolution ones."""
    return "float32" if recipe.upsample else "png8"


def _png8(values: np.ndarray) -> bytes:
    from PIL import Image

    q = np.round(np.clip(values, 0, 1) * PNG_SCALE).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(q).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _from_png8(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return (np.asarray(im, dtype=np.float64) / PNG_SCALE).astype(np.float32)


def write_maps(path: str | Path, maps: list[StoredMap], recipe: MapRecipe, meta: dict) -> None:
    """Write one split's maps (atomically); ``meta`` adds to what the file says of itself."""
    if not maps:
        raise WslbenchError(f"no map to store in {path}")
    encoding = encoding_for(recipe)
    head = {"format": FORMAT, "recipe": recipe.to_dict(), "encoding": encoding, **meta}
    arrays = {
        "meta": np.array(json.dumps(head, sort_keys=True)),
        "ids": np.array([m.id for m in maps]),
        "pred_label": np.array([-1 if m.pred_label is None else int(m.pred_label) for m in maps], dtype=np.int64),
        "size": np.array([m.size for m in maps], dtype=np.int64).reshape(-1, 2),
        "box": np.array([m.box for m in maps], dtype=np.int64).reshape(-1, 4),
        "shape": np.array([m.native.shape for m in maps], dtype=np.int64).reshape(-1, 2),
    }
    if encoding == "float32":
        arrays["values"] = np.concatenate([np.asarray(m.native, dtype=np.float32).ravel() for m in maps])
    else:
        blobs = [_png8(m.native) for m in maps]
        arrays["png"] = np.frombuffer(b"".join(blobs), dtype=np.uint8)
        arrays["png_offsets"] = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
    atomic_save(path, lambda buf: np.savez_compressed(buf, **arrays))


def store_split(run_dir: str | Path, split: str, stored: list, recipes: list, *, classifies: bool,
                crf_applicable: bool, map_normalization: str, pad_multiple: int) -> bool:
    """``maps-<split>.npz`` of a run when every image has a native map (a method with a recipe);
    False, and nothing written, otherwise. ``recipes``: each image's recipe (one file holds one:
    a split whose images came with different recipes is stored at full resolution, see
    ``one_recipe``). The header says how evaluation scored the maps."""
    if not stored or any(m is None for m in stored) or any(r is None for r in recipes):
        return False
    stored, recipe = one_recipe(stored, recipes)
    write_maps(maps_file(run_dir, split), stored, recipe, {
        "split": split, "classifies": classifies, "crf_applicable": crf_applicable,
        "map_normalization": map_normalization, "pad_multiple": pad_multiple})
    return True


def one_recipe(stored: list[StoredMap], recipes: list[MapRecipe]) -> tuple[list[StoredMap], MapRecipe]:
    """The split's maps under a single recipe. When the images came with different recipes (the
    post-hoc methods fall back to the package's full-resolution maps batch by batch when its steps
    cannot be replayed exactly), every map is brought to full resolution by its own recipe, so
    each image keeps the map evaluation scored (8-bit PNG, as U-Net's)."""
    from wslbench.methods.maps import FULL_RESOLUTION

    if all(r == recipes[0] for r in recipes):
        return stored, recipes[0]
    full = []
    for m, r in zip(stored, recipes):
        native = torch.from_numpy(np.ascontiguousarray(m.native))[None]
        padded = r.apply(native, m.size).float().clamp(0, 1).numpy()[0]
        full.append(StoredMap(m.id, padded, m.size, m.box, m.pred_label))
    return full, FULL_RESOLUTION


def read_maps(path: str | Path) -> tuple[dict, MapRecipe, list[StoredMap]]:
    """(meta, recipe, maps) of a ``maps-<split>.npz``; WslbenchError naming the file when it
    cannot be read."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            ids, labels = z["ids"].tolist(), z["pred_label"].tolist()
            sizes, boxes, shapes = z["size"].tolist(), z["box"].tolist(), z["shape"].tolist()
            if meta.get("encoding") == "float32":
                values = z["values"]
                ends = np.cumsum([h * w for h, w in shapes])
                natives = [values[e - h * w:e].reshape(h, w) for e, (h, w) in zip(ends, shapes)]
            else:
                png, offsets = z["png"].tobytes(), z["png_offsets"].tolist()
                natives = [_from_png8(png[a:b]) for a, b in zip(offsets[:-1], offsets[1:])]
    except FileNotFoundError:
        raise WslbenchError(f"no stored maps: {path} does not exist") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise WslbenchError(f"cannot read the stored maps {path}: {exc}") from None
    if meta.get("format") != FORMAT:
        raise WslbenchError(f"{path}: stored-maps format {meta.get('format')!r}, this version reads {FORMAT}")
    maps = [StoredMap(i, n, tuple(s), tuple(b), None if lab < 0 else int(lab))
            for i, n, s, b, lab in zip(ids, natives, sizes, boxes, labels)]
    return meta, MapRecipe.from_dict(meta["recipe"]), maps


__all__ = ["StoredMap", "write_maps", "store_split", "read_maps", "maps_file", "encoding_for", "FORMAT"]

"""The data-set contract every loader implements, and the shared machinery behind it.

A data set plugin subclasses :class:`WSLDataset`, lists its samples as :class:`Record` rows in
``_records(split)`` and decodes one row in ``_load(record)``. The base class owns everything
that must be identical across data sets: the decoded-image cache, the joint image/mask
transforms, normalisation and the sample format the trainer and evaluation read.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from wslbench.errors import DataError
from wslbench.options import Annotated, Field, Literal, NonNegativeFloat, PositiveFloat, PositiveInt

#: torchvision ColorJitter's keyword arguments
ColorJitter = Annotated[
    dict[Literal["brightness", "contrast", "saturation", "hue"], NonNegativeFloat | tuple[float, float]],
    Field(description="a mapping of brightness/contrast/saturation/hue to a number >= 0 or [min, max]"),
]

SPLITS = ("train", "val", "test")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Record:
    """One sample: an id unique in the data set, its class index and where its pixels live."""

    id: str
    label: int
    image: Any = None  # a Path, or anything _load understands
    mask: Any = None


class WSLDataset(Dataset):
    """Base class. Items are dicts: image (3,H,W float, normalised), mask (H,W uint8 in {0,1}),
    label (int), id (str), index (int)."""

    class_names: ClassVar[list[str]] = []
    default_root_name: ClassVar[str] = ""

    def __init__(
        self,
        split: str = "train",
        root: str | Path | None = None,
        augment: bool | None = None,
        patch_size: PositiveInt | None = None,
        hflip: bool = False,
        vflip: bool = False,
        rot90: bool = False,
        color_jitter: ColorJitter | None = None,
        affine: dict | None = None,  # torchvision RandomAffine's keyword arguments
        resize_min_side: PositiveInt | None = None,
        scale: PositiveFloat | None = None,
        pad_fraction: Annotated[float, Field(ge=0, lt=1)] | None = None,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[PositiveFloat, PositiveFloat, PositiveFloat] = IMAGENET_STD,
        cache: Literal["memory", "disk", None] = "memory",
        cache_dir: str | None = None,
        **options: Any,
    ):
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        self.split = split
        self.root = Path(root).expanduser() if root is not None else None
        self.options = options
        self.augment = (split == "train") if augment is None else augment
        self.cache_mode = cache
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.aug_seed: int | None = None  # set by the trainer: augmentation seeded per (seed, epoch, sample)
        self.epoch = 0
        from wslbench.data.transforms import build_transform

        self.transform = build_transform(
            train=self.augment,
            patch_size=patch_size,
            hflip=hflip,
            vflip=vflip,
            rot90=rot90,
            color_jitter=color_jitter,
            affine=affine,
            resize_min_side=resize_min_side,
            scale=scale,
            pad_fraction=pad_fraction,
            mean=mean,
            std=std,
        )
        self.records: list[Record] = list(self._records(split))
        if not self.records:
            raise DataError(f"{type(self).__name__}: split {split!r} is empty (root: {self.root})")

    # --- to implement -------------------------------------------------------------------
    def _records(self, split: str) -> list[Record]:
        raise NotImplementedError

    def _load(self, record: Record) -> tuple[np.ndarray, np.ndarray]:
        """Return (image uint8 HxWx3, mask bool HxW) for one record; raise DataError naming
        the file when it cannot be read or the sizes disagree."""
        raise NotImplementedError

    # --- shared machinery ---------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def labels(self) -> list[int]:
        return [r.label for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def raw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Decoded (image uint8 HWC, mask bool HW), untransformed; cached when enabled."""
        if index in self._cache:
            return self._cache[index]
        rec = self.records[index]
        disk = self._disk_path(rec) if self.cache_mode == "disk" else None
        if disk is not None and disk.is_file() and self._fresh(disk, rec):
            with np.load(disk) as z:
                return z["image"], z["mask"]
        image, mask = self._load_checked(rec)
        if self.cache_mode == "memory":
            self._cache[index] = (image, mask)
        elif disk is not None:
            from wslbench.io import atomic_save

            atomic_save(disk, lambda buf: np.savez(buf, image=image, mask=mask))
        return image, mask

    def _load_checked(self, rec: Record) -> tuple[np.ndarray, np.ndarray]:
        """``_load`` plus the check every loader needs: the mask covers the image exactly."""
        image, mask = self._load(rec)
        if image.shape[:2] != mask.shape[:2]:
            raise DataError(
                f"mask/image size mismatch for {rec.id}: image {image.shape[1]}x{image.shape[0]}, "
                f"mask {mask.shape[1]}x{mask.shape[0]} ({rec.mask})"
            )
        return image, mask

    # --- on-disk cache of decoded arrays (``cache: disk``), for sets too large for memory ----
    def _disk_path(self, rec: Record) -> Path:
        import hashlib

        base = self.cache_dir or cache_base()
        key = hashlib.sha1(f"{self.root}|{rec.id}".encode()).hexdigest()[:16]
        return base / (getattr(self, "name", "") or type(self).__name__) / f"{key}.npz"

    @staticmethod
    def _fresh(cached: Path, rec: Record) -> bool:
        """The cached arrays are newer than the image and mask files they came from."""
        t = cached.stat().st_mtime
        return all(not isinstance(p, Path) or not p.exists() or p.stat().st_mtime <= t for p in (rec.image, rec.mask))

    def set_epoch(self, epoch: int, seed: int) -> None:
        """Seed the augmentation of every sample from (seed, epoch, index): the patch, flips and
        jitter a sample gets do not depend on the number of workers or processes, nor on where
        in the epoch a resumed run starts."""
        self.aug_seed, self.epoch = int(seed), int(epoch)

    def __getitem__(self, index: int) -> dict:
        image, mask = self.raw(index)
        img_t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
        mask_t = torch.from_numpy(np.ascontiguousarray(mask).astype(np.uint8))
        if self.augment and self.aug_seed is not None:
            from wslbench.train.seeding import derive_seed

            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(derive_seed(self.aug_seed, self.epoch, index))
                img_t, mask_t = self.transform(img_t, mask_t)
        else:
            img_t, mask_t = self.transform(img_t, mask_t)
        rec = self.records[index]
        return {"image": img_t, "mask": mask_t, "label": rec.label, "id": rec.id, "index": index}

    @classmethod
    def check(cls, root: str | Path | None, **options: Any) -> list[str]:
        """Problems found in the layout under ``root`` (empty list when all is well)."""
        problems = []
        for split in SPLITS:
            try:
                cls(split=split, root=root, augment=False, cache=None, **options)
            except DataError as exc:
                if str(exc) not in problems:
                    problems.append(str(exc))
        return problems

    def preload(self, progress: bool = False) -> None:
        """Decode every sample now (memory cache only): a corrupt file fails before training,
        and data-loader workers forked afterwards share the decoded arrays instead of each
        decoding its own copy."""
        if self.cache_mode != "memory":
            return
        from tqdm import tqdm

        for i in tqdm(range(len(self)), desc=f"decode {self.split}", disable=not progress, leave=False):
            self.raw(i)


# --- reading files: every failure names the file ------------------------------------------------
def open_image(path: Path, what: str = "image"):
    """PIL's Image.open with every failure as one DataError naming the file: a missing file, an
    undecodable one, or a header claiming more pixels than PIL's decompression-bomb limit (a
    hostile or broken file would otherwise exhaust memory)."""
    from PIL import Image

    try:
        return Image.open(path)
    except FileNotFoundError as exc:
        raise DataError(f"missing {what} file {path}") from exc
    except Image.DecompressionBombError as exc:
        raise DataError(f"{what} {path} is too large to decode safely: {bomb_detail(exc)}") from exc
    except Exception as exc:  # Pillow raises many types for broken files; all mean "unreadable"
        raise DataError(f"corrupt or unreadable {what} {path}: {exc}") from exc


def bomb_detail(exc: Exception) -> str:
    """PIL's decompression-bomb message (it states the pixel count and the limit) and where the
    limit comes from."""
    return f"{str(exc).rstrip('.')} (twice PIL's Image.MAX_IMAGE_PIXELS)"


def _decode(path: Path, what: str, convert) -> np.ndarray:
    from PIL import Image

    with open_image(path, what) as im:
        try:
            return convert(im)
        except Image.DecompressionBombError as exc:
            raise DataError(f"{what} {path} is too large to decode safely: {bomb_detail(exc)}") from exc
        except Exception as exc:  # truncated or corrupt pixel data surfaces only when decoding
            raise DataError(f"corrupt or unreadable {what} {path}: {exc}") from exc


def read_rgb(path: Path) -> np.ndarray:
    """An image file as uint8 HxWx3 RGB; DataError naming the file when it cannot be decoded."""
    return _decode(path, "image", lambda im: np.array(im.convert("RGB")))


def read_gray(path: Path) -> np.ndarray:
    """A mask file as a 2-D array (palette/instance ids kept, RGB converted to luminance)."""

    def convert(im):
        if im.mode in ("RGB", "RGBA", "LA"):
            im = im.convert("L")
        return np.array(im)

    arr = _decode(path, "mask", convert)
    return arr if arr.ndim == 2 else arr[..., 0]


class OfficialLayoutDataset(WSLDataset):
    """A data set read from its official release folder. Subclasses implement ``scan(root)``,
    which lists every sample with its *official* split ("train", "val" or "test"); this class
    carves the validation set out of the official train set when the protocol says so
    (``carve_validation``), checks the result against ``experiments/splits/<name>.csv`` and
    serves one split."""

    name: ClassVar[str] = ""
    carve_validation: ClassVar[bool] = True
    #: options read from ``**options`` (name -> annotation), checked with the signature's
    extra_options: ClassVar[dict] = {"verify_split": bool}  # compare with experiments/splits/<name>.csv
    #: the expected folder tree and where to download it, shown when the layout is wrong
    layout_help: ClassVar[str] = ""

    @classmethod
    def scan(cls, root: Path) -> list[tuple[Record, str]]:
        raise NotImplementedError

    @classmethod
    def help_text(cls) -> str:
        """The expected tree, where to download it and the archives' checksums."""
        from wslbench.data.archives import describe

        return "\n".join(t for t in (cls.layout_help, describe(cls.name)) if t)

    @classmethod
    def require_root(cls, root) -> Path:
        if root is None:
            raise DataError(f"{cls.name}: no data root given: pass --data-root PATH or set $WSLBENCH_DATA.\n{cls.help_text()}")
        root = Path(root).expanduser()
        if not root.is_dir():
            raise DataError(f"{cls.name}: data root {root} does not exist.\n{cls.help_text()}")
        return root

    @classmethod
    def require_file(cls, path: Path) -> Path:
        if not path.is_file():
            raise DataError(f"{cls.name}: missing {path}.\n{cls.help_text()}")
        return path

    @classmethod
    def _scan_and_split(cls, root) -> tuple[list[tuple[Record, str]], pd.DataFrame]:
        from wslbench.data.splits import split_table, stratified_split

        rows = cls.scan(cls.require_root(root))
        official_train = [(r.id, r.label) for r, s in rows if s == "train"]
        carved = stratified_split([i for i, _ in official_train], [y for _, y in official_train]) if cls.carve_validation else {}
        return rows, split_table([(r.id, r.label, carved.get(r.id, s)) for r, s in rows])

    @classmethod
    def split_table(cls, root) -> pd.DataFrame:
        """(id, label, split) of every sample under ``root``: what experiments/splits/ records."""
        return cls._scan_and_split(root)[1]

    def _records(self, split: str) -> list[Record]:
        from wslbench.data.splits import verify_against_record

        rows, table = self._scan_and_split(self.root)
        if self.options.get("verify_split", True):
            verify_against_record(self.name, table)
        wanted = set(table.loc[table["split"] == split, "id"])
        return sorted((r for r, _ in rows if r.id in wanted), key=lambda r: r.id)

    @classmethod
    def check(cls, root, deep: bool = False, progress: bool = False, **options: Any) -> list[str]:
        """Layout, counts and split record; with ``deep``, decode every image and mask (sizes
        must agree) and verify SHA256SUMS when the folder ships one."""
        problems = super().check(root, **options)
        if problems or not deep:
            return problems
        root = Path(root)
        cache = CheckCache(root, trust=False)  # hashes and decodes anew; what passes, later runs skip
        problems += verify_checksums(root, progress, cache)
        from tqdm import tqdm

        for split in SPLITS:
            ds = cls(split=split, root=root, augment=False, cache=None, **options)
            for i in tqdm(range(len(ds)), desc=f"decode {split}", disable=not progress):
                try:
                    ds.raw(i)
                except DataError as exc:
                    problems.append(str(exc))
                    continue
                rec = ds.records[i]
                if isinstance(rec.image, Path) and isinstance(rec.mask, Path):
                    cache.mark_decoded(rec)
        cache.save()
        return problems


def cache_base() -> Path:
    """The user cache folder ($WSLBENCH_CACHE, else ~/.cache/wslbench): never the data root,
    which may be read-only or shared."""
    import os

    return Path(os.environ.get("WSLBENCH_CACHE", Path.home() / ".cache" / "wslbench"))


class CheckCache:
    """What earlier checks established about the files under one data root, keyed by absolute
    path, size and modification time (ns): a file whose stat is unchanged is not hashed or
    decoded again, so the checks before every run cost almost nothing after the first. The cache
    only saves time; an unwritable cache folder just means hashing again."""

    def __init__(self, root: Path, trust: bool = True):
        import hashlib
        import json

        self.trust = trust  # False (data check): hash and decode anew, then record the results
        key = hashlib.sha1(str(Path(root).absolute()).encode()).hexdigest()[:16]
        self.path = cache_base() / "checked" / f"{key}.json"
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            data = {}
        self.sha256 = data.get("sha256") if isinstance(data.get("sha256"), dict) else {}
        self.decoded = data.get("decoded") if isinstance(data.get("decoded"), dict) else {}
        self.changed = False

    @staticmethod
    def stamp(*paths: Path) -> list[int]:
        out = []
        for p in paths:
            st = Path(p).stat()
            out += [st.st_size, st.st_mtime_ns]
        return out

    def digest(self, path: Path) -> str:
        from wslbench.data.archives import file_digest

        key, stamp = str(Path(path).absolute()), self.stamp(path)
        hit = self.sha256.get(key)
        if self.trust and isinstance(hit, list) and hit[:-1] == stamp:
            return hit[-1]
        digest = file_digest(path, "sha256")
        self.sha256[key] = [*stamp, digest]
        self.changed = True
        return digest

    def decoded_ok(self, rec: Record) -> bool:
        key = f"{Path(rec.image).absolute()}|{Path(rec.mask).absolute()}"
        try:
            return self.trust and self.decoded.get(key) == self.stamp(rec.image, rec.mask)
        except OSError:
            return False

    def mark_decoded(self, rec: Record) -> None:
        self.decoded[f"{Path(rec.image).absolute()}|{Path(rec.mask).absolute()}"] = self.stamp(rec.image, rec.mask)
        self.changed = True

    def save(self) -> None:
        if not self.changed:
            return
        from wslbench.io import atomic_write_json

        try:
            atomic_write_json(self.path, {"sha256": self.sha256, "decoded": self.decoded})
        except OSError:
            pass  # a read-only home: the next run hashes again, nothing else changes


def read_checksums(sums: Path) -> tuple[list[tuple[str, str]], list[str]]:
    """(digest, file name) pairs of a ``sha256sum`` file, and one problem per malformed line
    (naming the file and line)."""
    import re

    try:
        text = sums.read_bytes().decode("utf-8")
    except OSError as exc:
        return [], [f"cannot read {sums}: {exc}"]
    except UnicodeDecodeError as exc:
        line = sums.read_bytes()[: exc.start].count(b"\n") + 1
        return [], [f"{sums}, line {line}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x})"]
    pairs, problems = [], []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or not re.fullmatch(r"[0-9a-fA-F]{64}", parts[0]) or not parts[1].strip().lstrip("*"):
            problems.append(f"{sums}, line {n}: expected '<64 hex digits>  <file name>', got {line[:80]!r}")
            continue
        name = parts[1].strip().lstrip("*")
        if Path(name).is_absolute() or ".." in Path(name).parts:
            problems.append(f"{sums}, line {n}: {name!r} lies outside the data folder")
            continue
        pairs.append((parts[0].lower(), name))
    return pairs, problems


def verify_checksums(root: Path, progress: bool = False, cache: CheckCache | None = None) -> list[str]:
    """Compare files with ``root/SHA256SUMS`` (``sha256sum`` format) when present; with ``cache``,
    a file whose size and modification time are unchanged since it was last hashed is not read."""
    from wslbench.data.archives import file_digest

    sums = Path(root) / "SHA256SUMS"
    if not sums.is_file():
        return []
    lines, problems = read_checksums(sums)
    from tqdm import tqdm

    for digest, name in tqdm(lines, desc="sha256", disable=not progress, leave=False):
        path = Path(root) / name
        if not path.is_file():
            problems.append(f"missing file listed in SHA256SUMS: {path}")
            continue
        try:
            found = cache.digest(path) if cache is not None else file_digest(path, "sha256")
        except OSError as exc:
            problems.append(f"cannot read {path}: {exc}")
            continue
        if found != digest:
            problems.append(f"checksum mismatch (corrupt or modified file): {path}")
    if cache is not None:
        cache.save()
    return problems


def verify_before_training(datasets: list[WSLDataset], progress: bool = False, limit: int = 10) -> None:
    """``data check --deep`` on the splits a run reads, before anything is trained or written: the
    folder's SHA256SUMS, and every file-backed image and mask decodes with matching sizes (a
    sample already decoded by ``preload`` is not decoded again). Results are cached per file
    (:class:`CheckCache`); every problem found is listed in one DataError."""
    caches: dict[Path, CheckCache] = {}
    problems: list[str] = []
    for ds in datasets:
        if ds.root is not None and ds.root.is_dir() and ds.root not in caches:
            caches[ds.root] = CheckCache(ds.root)
            problems += verify_checksums(ds.root, progress, caches[ds.root])
    from tqdm import tqdm

    for ds in datasets:
        cache = caches.get(ds.root)
        todo = [i for i, r in enumerate(ds.records)
                if i not in ds._cache and isinstance(r.image, Path) and isinstance(r.mask, Path)]
        for i in tqdm(todo, desc=f"check {ds.split}", disable=not progress or not todo, leave=False):
            rec = ds.records[i]
            if cache is not None and cache.decoded_ok(rec):
                continue
            try:
                ds._load_checked(rec)
            except DataError as exc:
                problems.append(str(exc))
                continue
            if cache is not None:
                cache.mark_decoded(rec)
    for cache in caches.values():
        cache.save()
    if problems:
        shown = problems[:limit] + ([f"... and {len(problems) - limit} more"] if len(problems) > limit else [])
        where = ", ".join(str(r) for r in caches) or type(datasets[0]).__name__
        if len(problems) == 1:
            raise DataError(f"{problems[0]} (found before anything was written)")
        raise DataError(f"{len(problems)} problem(s) in the data under {where}, found before anything "
                        "was written:\n" + "\n".join(f"  - {p}" for p in shown))

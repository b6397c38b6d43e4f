"""The official download archives of each data set, with the checksums their publishers (or
torchvision, for Oxford Flowers) list, so a user with a network can verify what they fetched:
``wslbench data check NAME --archives DIR``."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Archive:
    filename: str
    url: str
    md5: str | None  # None: no published checksum known to us


ARCHIVES: dict[str, list[Archive]] = {
    "cub": [
        Archive("CUB_200_2011.tgz", "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz",
                "97eceeb196236b17998738112f37df78"),
        Archive("segmentations.tgz", "https://data.caltech.edu/records/w9d68-gec53/files/segmentations.tgz",
                "4d47ba1228eae64f2fa547c47bc65255"),
    ],
    "oxf": [
        Archive("102flowers.tgz", "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/102flowers.tgz",
                "52808999861908f626f3c1f4e79d11fa"),
        Archive("102segmentations.tgz", "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/102segmentations.tgz", None),
        Archive("imagelabels.mat", "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/imagelabels.mat",
                "e0620be6f572b9609742df49c70aed4d"),
        Archive("setid.mat", "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/setid.mat",
                "a5357ecc9cb78c4bef273ce3793fc85c"),
    ],
    "glas": [  # the extracted folder ships SHA256SUMS in our copy; the zip has no published checksum
        Archive("warwick_qu_dataset_released_2016_07_08.zip",
                "https://warwick.ac.uk/fac/cross_fac/tia/data/glascontest/download", None),
    ],
}
ARCHIVES["cub5"] = ARCHIVES["cub"]


def file_digest(path: Path, algorithm: str = "md5", chunk: int = 1 << 20) -> str:
    """Hex digest of a file, read in chunks (archives are GBs)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def describe(name: str) -> str:
    """Download lines with checksums, for error messages and `data check`."""
    lines = [f"  {a.url}" + (f"  (md5 {a.md5})" if a.md5 else "") for a in ARCHIVES.get(name, [])]
    return "official downloads:\n" + "\n".join(lines) if lines else ""


def verify_archives(name: str, folder: str | Path) -> tuple[list[str], list[str]]:
    """(verified, problems) for the archives of ``name`` found in ``folder``."""
    folder = Path(folder)
    ok, problems = [], []
    for a in ARCHIVES.get(name, []):
        path = folder / a.filename
        if not path.is_file():
            problems.append(f"archive not found: {path} (download {a.url})")
        elif a.md5 is None:
            ok.append(f"{a.filename}: present (no published checksum)")
        elif file_digest(path, "md5") != a.md5:
            problems.append(f"checksum mismatch for {path}: expected md5 {a.md5} (corrupt or partial download)")
        else:
            ok.append(f"{a.filename}: md5 OK")
    return ok, problems

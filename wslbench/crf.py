"""Dense CRF post-processing (Krähenbühl & Koltun 2011) of foreground probability maps, with
pydensecrf (distribution ``pydensecrf2``): unary = -log of the two-class probability, one
Gaussian (position) and one bilateral (position + colour) pairwise term. Compatibilities 3 and
10, symmetric normalisation and diagonal kernels as in the authors' tools.py; iterations and
kernel widths per data set in experiments/<dataset>/dataset.yaml (their crf_params.py)."""
from __future__ import annotations

import multiprocessing
import os

import numpy as np

from wslbench.options import NonNegativeFloat, PositiveFloat, PositiveInt

EPS = 1e-6


def refine(image: np.ndarray, prob: np.ndarray, iterations: PositiveInt = 5, gaussian_sxy: PositiveFloat = 3,
           bilateral_sxy: PositiveFloat = 13, bilateral_srgb: PositiveFloat = 3, gaussian_compat: NonNegativeFloat = 3,
           bilateral_compat: NonNegativeFloat = 10) -> np.ndarray:
    """(H, W, 3) uint8 image, (H, W) foreground probability -> refined (H, W) foreground probability."""
    import pydensecrf.densecrf as dcrf

    h, w = prob.shape
    if image.shape[:2] != (h, w):
        raise ValueError(f"crf: image {image.shape[:2]} and probability {prob.shape} sizes differ")
    p = np.clip(prob.astype(np.float32), EPS, 1 - EPS)
    two = np.stack([1 - p, p]).reshape(2, -1)
    d = dcrf.DenseCRF2D(w, h, 2)
    d.setUnaryEnergy(np.ascontiguousarray(-np.log(two)).astype(np.float32))
    d.addPairwiseGaussian(sxy=gaussian_sxy, compat=gaussian_compat, kernel=dcrf.DIAG_KERNEL,
                          normalization=dcrf.NORMALIZE_SYMMETRIC)
    d.addPairwiseBilateral(sxy=bilateral_sxy, srgb=bilateral_srgb, rgbim=np.ascontiguousarray(image, dtype=np.uint8),
                           compat=bilateral_compat, kernel=dcrf.DIAG_KERNEL, normalization=dcrf.NORMALIZE_SYMMETRIC)
    q = np.array(d.inference(int(iterations))).reshape(2, h, w)
    return q[1].astype(np.float32)


def _refine_star(args):
    (image, prob), params = args
    return refine(image, prob, **params)


def refine_many(pairs: list[tuple[np.ndarray, np.ndarray]], workers: int | None = None, progress: bool = False,
                **params) -> list[np.ndarray]:
    """``refine`` over a test set, in a process pool over the CPU cores (order kept)."""
    from tqdm import tqdm

    workers = workers or min(len(pairs), os.cpu_count() or 1)
    jobs = [(pair, params) for pair in pairs]
    if workers <= 1 or len(pairs) < 2:
        return [_refine_star(j) for j in tqdm(jobs, desc="crf", disable=not progress)]
    pool = multiprocessing.Pool(workers)
    try:
        out = list(tqdm(pool.imap(_refine_star, jobs, chunksize=max(1, len(jobs) // (8 * workers))),
                        total=len(jobs), desc="crf", disable=not progress))
    except BaseException:  # Ctrl-C / a second SIGTERM: stop the workers now, not after their chunks
        pool.terminate()
        raise
    else:
        pool.close()
    finally:
        pool.join()
    return out

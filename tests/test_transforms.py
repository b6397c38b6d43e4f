"""Joint transforms: the mask moves exactly with the image (pixels encode their coordinates),
evaluation never crops, the upscale keeps the aspect ratio, normalisation is per channel."""
from __future__ import annotations

import numpy as np
import torch

from wslbench.data.transforms import build_transform

H, W = 12, 16


def coordinate_image():
    """uint8 image whose channels are (row, col, 0) and a mask that is the same (row, col) code."""
    rows, cols = np.mgrid[:H, :W]
    image = np.stack([rows * 10, cols * 10, np.zeros_like(rows)], axis=0).astype(np.uint8)
    mask = (rows * W + cols).astype(np.uint8)  # unique per pixel (H*W = 192 < 256)
    return torch.from_numpy(image), torch.from_numpy(mask)


def decode(img, mean, std):
    """Undo the normalisation, back to the (row, col) code of every pixel."""
    px = (img * torch.tensor(std).view(3, 1, 1) + torch.tensor(mean).view(3, 1, 1)) * 255
    rows, cols = torch.round(px[0] / 10).long(), torch.round(px[1] / 10).long()
    return rows * W + cols


def test_crop_flips_and_rot90_move_mask_with_image():
    mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    t = build_transform(train=True, patch_size=8, hflip=True, vflip=True, rot90=True, mean=mean, std=std)
    image, mask = coordinate_image()
    seen = set()
    for seed in range(40):
        torch.manual_seed(seed)
        img, msk = t(image, mask)
        assert img.shape == (3, 8, 8) and msk.shape == (8, 8)
        torch.testing.assert_close(decode(img, mean, std), msk.long(), rtol=0, atol=0)
        seen.add(tuple(msk[0, :2].tolist()))
    assert len(seen) > 10  # the augmentation does vary


def test_eval_transform_keeps_whole_image_and_normalises_per_channel():
    mean, std = (0.2, 0.4, 0.6), (0.5, 0.25, 0.125)
    t = build_transform(train=False, patch_size=8, hflip=True, mean=mean, std=std)
    image, mask = coordinate_image()
    img, msk = t(image, mask)
    assert img.shape == (3, H, W)
    torch.testing.assert_close(msk, mask)
    expected = (image.float() / 255 - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    torch.testing.assert_close(img, expected)


def test_upscale_min_side_keeps_ratio_and_leaves_large_images():
    t = build_transform(train=False, resize_min_side=24)
    image, mask = coordinate_image()
    img, msk = t(image, (mask > 100).to(torch.uint8))
    assert img.shape[1:] == (24, 32) and msk.shape == (24, 32)  # 12x16 -> 24x32
    assert set(torch.unique(msk).tolist()) <= {0, 1}  # nearest for the mask
    big = build_transform(train=False, resize_min_side=10)
    assert big(image, mask)[0].shape[1:] == (H, W)


def test_scale_resizes_image_and_mask_together_in_every_split():
    image = torch.zeros(3, H, W, dtype=torch.uint8)
    mask = torch.zeros(H, W, dtype=torch.uint8)
    mask[:6, :8] = 1  # the top-left quarter
    image[:, :6, :8] = 255
    for train in (False, True):
        img, msk = build_transform(train=train, scale=0.5, mean=(0, 0, 0), std=(1, 1, 1))(image, mask)
        assert img.shape[1:] == (6, 8) and msk.shape == (6, 8)
        expected = torch.zeros(6, 8, dtype=torch.uint8)
        expected[:3, :4] = 1
        torch.testing.assert_close(msk, expected, rtol=0, atol=0)  # nearest: still the quarter
        assert torch.all(img[:, :2, :3] == 1.0) and torch.all(img[:, 4:, 5:] == 0.0)  # away from the edge


def test_glas_like_crop_can_hold_reflected_pixels_beyond_the_border():
    """pad_fraction 0.5 (the authors' GlaS padding_size): a 4x6 image becomes 8x12 by mirroring
    (without repeating the edge pixel), image and mask together, before the random crop."""
    from torchvision import tv_tensors

    from wslbench.data.transforms import ReflectPadFraction

    image = torch.arange(24, dtype=torch.uint8).view(1, 4, 6).repeat(3, 1, 1)
    mask = torch.arange(24, dtype=torch.uint8).view(4, 6)
    pad = ReflectPadFraction(0.5)
    padded_img, padded_mask = pad(tv_tensors.Image(image), tv_tensors.Mask(mask))
    # independent reference: numpy's "reflect" mode mirrors about the edge pixel, like torch's
    expected = np.pad(mask.numpy(), ((2, 2), (3, 3)), mode="reflect")
    assert padded_mask.shape == (8, 12)
    np.testing.assert_array_equal(padded_mask.numpy(), expected)
    np.testing.assert_array_equal(padded_img[0].numpy(), expected)
    # a crop the size of the image, from the padded one: some crops reach beyond the image
    mean, std = (0.0, 0.0, 0.0), (1 / 255, 1 / 255, 1 / 255)  # keep raw pixel values
    t = build_transform(train=True, patch_size=4, pad_fraction=0.5, mean=mean, std=std)
    crops_beyond = 0
    for seed in range(30):
        torch.manual_seed(seed)
        img, msk = t(image, mask)
        assert img.shape == (3, 4, 4)
        torch.testing.assert_close(img[0].round().to(torch.uint8), msk, rtol=0, atol=0)  # moved together
        rows = [tuple(r) for r in msk.tolist()]
        inside = {tuple(mask[i, j:j + 4].tolist()) for i in range(4) for j in range(3)}
        crops_beyond += any(r not in inside for r in rows)  # a row no crop of the image itself has
    assert crops_beyond > 0
    # without padding every crop lies inside the image
    t0 = build_transform(train=True, patch_size=4, mean=mean, std=std)
    torch.manual_seed(0)
    _, msk = t0(image, mask)
    assert all(tuple(r) in {tuple(mask[i, j:j + 4].tolist()) for i in range(4) for j in range(3)} for r in msk.tolist())


def test_pad_fraction_out_of_range_is_a_config_error():
    import pytest

    from wslbench.errors import ConfigError

    with pytest.raises(ConfigError, match="data.pad_fraction"):
        build_transform(train=True, patch_size=4, pad_fraction=1.0)

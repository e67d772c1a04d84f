"""Image sources, splits, pair detection, decoding errors and patch sampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from acla_nas.core.errors import UserError
from acla_nas.data.images import IMAGE_CACHE, load_image, load_image_u8
from acla_nas.data.patches import PatchSampler, fixed_patches
from acla_nas.data.sources import (
    EMBEDDED_SPLIT,
    ImageList,
    ImageRef,
    embedded_source,
    find_pairs,
    make_source,
    source_for_dir,
    split_by_fraction,
)
from acla_nas.tasks import make_task


def _png(path: Path, h: int = 24, w: int = 20, seed: int = 0, mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = (h, w, 3) if mode == "RGB" else (h, w)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)
    return path


# --------------------------------------------------------------------------- embedded


def test_embedded_split_is_fixed_disjoint_and_bounded():
    src = embedded_source()
    names = {s: [r.hr.name for r in src.splits[s]] for s in ("train", "val", "test")}
    assert names == {s: list(v) for s, v in EMBEDDED_SPLIT.items()}  # every listed photograph ships with skimage
    flat = sum(names.values(), [])
    assert len(flat) == len(set(flat)) == 13
    assert len(names["test"]) >= 2 and len(names["val"]) >= 2
    assert {"astronaut.png", "coffee.png", "chelsea.png"} == set(names["test"])
    assert [r.hr.name for r in embedded_source().splits["test"]] == names["test"]  # deterministic


def test_embedded_large_images_downscaled_and_grey_replicated():
    src = embedded_source()
    train = src.split("train")
    retina = train[train.names.index("retina")]
    assert retina.dtype == torch.uint8 and tuple(retina.shape) == (3, 512, 512)
    moon = train[train.names.index("moon")]
    assert torch.equal(moon[0], moon[1]) and torch.equal(moon[1], moon[2])


# --------------------------------------------------------------------------- folders


def test_split_by_fraction_is_deterministic_and_disjoint():
    items = [f"{i:04d}" for i in range(20)]
    parts = split_by_fraction(items, 0.1, 0.2)
    assert parts == {"train": items[:14], "val": items[14:16], "test": items[16:]}
    tiny = split_by_fraction(items[:3], 0.1, 0.1)
    assert [len(tiny[s]) for s in ("train", "val", "test")] == [1, 1, 1]
    assert split_by_fraction(items[:5], 0, 1.0)["test"] == items[:5]


def test_folder_source_split_by_name(tmp_path):
    for i in range(10):
        _png(tmp_path / f"img{i:02d}.png", seed=i)
    (tmp_path / "notes.txt").write_text("not an image")
    src = make_source({"kind": "folder", "path": str(tmp_path)})
    names = {s: [r.name for r in src.splits[s]] for s in ("train", "val", "test")}
    assert names == {"train": [f"img{i:02d}" for i in range(8)], "val": ["img08"], "test": ["img09"]}
    img = src.split("test")[0]
    assert img.shape == (3, 24, 20) and img.dtype == torch.uint8


def test_folder_source_explicit_subfolders(tmp_path):
    for i in range(4):
        _png(tmp_path / "train" / f"t{i}.png", seed=i)
    _png(tmp_path / "val" / "v0.png")
    _png(tmp_path / "test" / "x0.jpg")
    src = make_source({"kind": "folder", "path": str(tmp_path)})
    assert [r.name for r in src.splits["train"]] == ["t0", "t1", "t2", "t3"]
    assert [r.name for r in src.splits["val"]] == ["v0"]
    assert [r.name for r in src.splits["test"]] == ["x0"]


def test_missing_or_empty_folder_names_the_field(tmp_path):
    with pytest.raises(UserError, match="does not exist") as info:
        make_source({"kind": "folder", "path": str(tmp_path / "nope")})
    assert info.value.field == "data.path"
    with pytest.raises(UserError, match="no images") as info:
        make_source({"kind": "folder", "path": str(tmp_path)})
    assert info.value.field == "data.path"
    with pytest.raises(UserError) as info:
        make_source({"kind": "lmdb"})
    assert info.value.field == "data.kind"


def test_corrupt_image_names_the_file(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(UserError, match="cannot read image") as info:
        load_image(bad)
    assert info.value.file == str(bad)
    assert str(bad) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(UserError) as info:
        ImageList([ImageRef(bad)])[0]
    assert info.value.file == str(bad)


def test_decoded_images_are_cached(tmp_path):
    p = _png(tmp_path / "a.png")
    first = load_image_u8(p)
    assert load_image_u8(p) is first
    assert len(IMAGE_CACHE) >= 1


# --------------------------------------------------------------------------- pairs


def test_pairs_div2k_naming(tmp_path):
    for name in ("0001", "0002"):
        _png(tmp_path / "HR" / f"{name}.png", 16, 16)
        _png(tmp_path / "LR" / "X2" / f"{name}x2.png", 8, 8)
    _png(tmp_path / "LR" / "X3" / "0001x3.png", 5, 5)
    pairs = find_pairs(tmp_path / "HR", tmp_path / "LR", scale=2)
    assert [(h.name, lr.name) for h, lr in pairs] == [("0001.png", "0001x2.png"), ("0002.png", "0002x2.png")]
    with pytest.raises(UserError, match="no LR partner"):  # X3 holds only 0001
        find_pairs(tmp_path / "HR", tmp_path / "LR", scale=3)


def test_pairs_benchmark_naming(tmp_path):
    _png(tmp_path / "hr" / "baby.png", 16, 16)
    _png(tmp_path / "lr" / "baby.png", 8, 8)  # same name
    _png(tmp_path / "hr" / "bird.png", 16, 16)
    _png(tmp_path / "lr" / "birdx2.png", 8, 8)  # BasicSR's NAMEx2
    pairs = find_pairs(tmp_path / "hr", tmp_path / "lr", scale=2)
    assert [(h.stem, lr.stem) for h, lr in pairs] == [("baby", "baby"), ("bird", "birdx2")]
    srf = tmp_path / "image_SRF_2"
    _png(srf / "img_001_SRF_2_HR.png", 16, 16)
    _png(srf / "img_001_SRF_2_LR.png", 8, 8)
    pairs = find_pairs(srf, srf, scale=2)
    assert [(h.stem, lr.stem) for h, lr in pairs] == [("img_001_SRF_2_HR", "img_001_SRF_2_LR")]


def test_pair_without_partner_names_the_file(tmp_path):
    _png(tmp_path / "hr" / "baby.png", 16, 16)
    _png(tmp_path / "hr" / "lonely.png", 16, 16)
    _png(tmp_path / "lr" / "babyx2.png", 8, 8)
    with pytest.raises(UserError, match="no LR partner") as info:
        find_pairs(tmp_path / "hr", tmp_path / "lr", 2)
    assert info.value.file.endswith("lonely.png")


def test_paired_source_mod_crops_hr_and_sampler_aligns(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "HR").mkdir()
    (tmp_path / "LR").mkdir()
    for i in range(3):
        hr = rng.integers(0, 256, (33, 41, 3), dtype=np.uint8)  # not a multiple of 2: mod-crop
        Image.fromarray(hr).save(tmp_path / "HR" / f"{i}.png")
        Image.fromarray(np.ascontiguousarray(hr[:32:2, :40:2])).save(tmp_path / "LR" / f"{i}.png")
    src = source_for_dir(tmp_path, scale=2)
    items = src.all()
    lq, hr = items[0]
    assert lq.shape == (3, 16, 20) and hr.shape == (3, 32, 40)
    task = make_task({"name": "sr", "scale": 2})
    lq_b, hr_b = PatchSampler(items, task, patch=8, batch=4, seed=3, augment=False).batch_at(0)
    assert lq_b.shape == (4, 3, 4, 4) and hr_b.shape == (4, 3, 8, 8)
    assert torch.equal(lq_b, hr_b[..., ::2, ::2])  # the LR file's pixels, aligned with the HR patch


# --------------------------------------------------------------------------- sampling


@pytest.fixture(scope="module")
def photos() -> list[torch.Tensor]:
    hr = load_image_u8(_astronaut())
    return [hr[:, :96, :96], hr[:, 200:280, 100:200]]


def _astronaut() -> Path:
    from acla_nas.data.images import embedded_dir

    return embedded_dir() / "astronaut.png"


def test_sampler_reproducible_resumable_and_shaped(photos):
    task = make_task({"name": "denoise", "sigma": 25})
    a = PatchSampler(photos, task, patch=16, batch=3, seed=7)
    batches = [next(a) for _ in range(5)]
    assert batches[0][0].shape == batches[0][1].shape == (3, 3, 16, 16)
    b = PatchSampler(photos, task, patch=16, batch=3, seed=7)
    assert all(torch.equal(x, y) for x, y in zip(next(b), batches[0]))
    resumed = PatchSampler(photos, task, patch=16, batch=3, seed=0)
    resumed.load_state_dict(a.state_dict() | {"step": 3})
    lq, hr = next(resumed)
    assert torch.equal(lq, batches[3][0]) and torch.equal(hr, batches[3][1])
    assert resumed.state_dict() == {"seed": 7, "step": 4}
    other = PatchSampler(photos, task, patch=16, batch=3, seed=8)
    assert not torch.equal(next(other)[1], batches[0][1])


def test_sampler_sr_sizes_and_patch_checks(photos):
    task = make_task({"name": "sr", "scale": 4})
    lq, hr = next(PatchSampler(photos, task, patch=32, batch=2, seed=0))
    assert lq.shape == (2, 3, 8, 8) and hr.shape == (2, 3, 32, 32)
    with pytest.raises(UserError) as info:
        PatchSampler(photos, task, patch=30, batch=2)
    assert info.value.field == "train.patch"
    with pytest.raises(UserError, match="larger than image"):
        next(PatchSampler(photos, task, patch=128, batch=2))


def test_fixed_patches_deterministic(photos):
    task = make_task({"name": "sr", "scale": 2})
    lq, hr = fixed_patches(photos, task, n=5, patch=24, seed=1)
    assert lq.shape == (5, 3, 12, 12) and hr.shape == (5, 3, 24, 24)
    lq2, hr2 = fixed_patches(photos, task, n=5, patch=24, seed=1)
    assert torch.equal(lq, lq2) and torch.equal(hr, hr2)
    assert not torch.equal(hr, fixed_patches(photos, task, n=5, patch=24, seed=2)[1])
    small = fixed_patches(photos, task, n=2, patch=500, seed=0)[1]
    assert small.shape[-1] == 80  # shrunk to the smallest image side

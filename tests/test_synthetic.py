"""Generated self-similar images and the embedded texture set."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from acla_nas.core.errors import UserError
from acla_nas.data.patches import PatchSampler
from acla_nas.data.sources import make_source
from acla_nas.data.synthetic import mean_period, parse_params, render
from acla_nas.space.schema import parse_spec
from acla_nas.tasks import make_task

SMALL = {"kind": "synthetic", "size": 64, "n_train": 3, "n_val": 1, "n_test": 2, "supersample": 2, "periods": [12, 30]}


def test_images_are_a_pure_function_of_seed_split_and_index() -> None:
    p = parse_params(SMALL)
    a, info = render(p, "train", 0)
    assert a.shape == (64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, render(parse_params(dict(SMALL)), "train", 0)[0])
    assert not np.array_equal(a, render(p, "train", 1)[0])
    assert not np.array_equal(a, render(p, "test", 0)[0])
    assert not np.array_equal(a, render(parse_params({**SMALL, "seed": 1}), "train", 0)[0])
    assert 1 <= len(info) <= 3 and all(12 <= q <= 30 for lat in info for q in lat["periods"])


def test_one_lattice_repeats_at_its_non_integer_period() -> None:
    """Without jitter and brightness variation, every repeat shows the same colour at the same
    point of the motif: the spread over the lattice points is far below the image's own spread."""
    spec = {
        **SMALL,
        "size": 128,
        "lattices": [1, 1],
        "periods": [17.3, 23.9],
        "jitter": 0.0,
        "brightness": 0.0,
        "motifs": "photo",
        "supersample": 4,
    }  # photo motifs are opaque at the centre
    p = parse_params(spec)
    rng = np.random.default_rng(0)
    for i in range(3):
        img, (lat,) = render(p, "test", i)
        assert any(abs(q - round(q)) > 1e-3 for q in lat["periods"])  # repeats at other sub-pixel phases
        o, (a1, a2) = np.array(lat["origin_px"]), np.array(lat["vectors_px"])
        pts = [o + i * a1 + j * a2 for i in range(-12, 13) for j in range(-12, 13)]
        pts = [q for q in pts if 8 <= q[0] <= 119 and 8 <= q[1] <= 119]
        assert len(pts) >= 12
        t = torch.from_numpy(img).float().permute(2, 0, 1)[None]

        def sample(xy: np.ndarray, t: torch.Tensor = t) -> np.ndarray:
            g = torch.tensor(xy, dtype=torch.float32).view(1, 1, -1, 2) * 2 / 127 - 1
            return F.grid_sample(t, g, align_corners=True)[0, :, 0].T.numpy()  # (N, 3)

        at_lattice = sample(np.array(pts)).std(0).mean()
        anywhere = sample(rng.uniform(8, 119, (len(pts), 2))).std(0).mean()
        assert at_lattice < 0.25 * anywhere, (at_lattice, anywhere)


@pytest.mark.parametrize("periods", [[24, 24], [16, 32]])
def test_square_geometry_repeats_exactly_at_whole_pixel_periods(periods: list[int]) -> None:
    """geometry: square (the lattice family): axis-aligned, whole-pixel periods, origin on the pixel
    grid, so with jitter and brightness 0 every repeat of the motif's opaque centre is the same pixels."""
    spec = {**SMALL, "size": 96, "lattices": [1, 1], "periods": periods, "jitter": 0, "brightness": 0}
    p = parse_params({**spec, "geometry": "square", "motifs": "photo", "supersample": 4})
    seen = set()
    for i in range(3):
        img, (lat,) = render(p, "train", i)
        per = lat["periods"][0]
        seen.add(per)
        assert lat["periods"] == (per, per) and per == int(per) and periods[0] <= per <= periods[1]
        assert np.allclose(lat["vectors_px"], [[per, 0], [0, per]], atol=1e-9)
        r, n = max(1, int(0.2 * lat["motif_px"])), 0
        o = np.round(np.array(lat["origin_px"])).astype(int)
        per = int(per)
        for cy in range(o[1] % per, 96, per):
            for cx in range(o[0] % per, 96 - per, per):
                if r <= cy < 96 - r and r <= cx < 96 - per - r:
                    a = img[cy - r : cy + r + 1, cx - r : cx + r + 1]
                    assert np.array_equal(a, img[cy - r : cy + r + 1, cx + per - r : cx + per + r + 1])
                    n += 1
        assert n >= 2
    oblique, _ = render(parse_params({**spec, "motifs": "photo", "supersample": 4}), "train", 0)
    assert not np.array_equal(oblique, render(p, "train", 0)[0])
    if periods[0] != periods[1]:
        assert len(seen) > 1  # the variable-period variant: each image its own period


def test_source_splits_sampler_and_mean_period() -> None:
    src = make_source(SMALL)
    assert [len(src.split(s)) for s in ("train", "val", "test")] == [3, 1, 2]
    assert src.split("test").name(1) == "synthetic_test_001"
    hr = src.split("train")[2]
    assert hr.shape == (3, 64, 64) and hr.dtype == torch.uint8
    lq, hr_b = PatchSampler(src.split("train"), make_task({"name": "denoise", "sigma": 50}), 32, 4, seed=0).batch_at(0)
    assert lq.shape == hr_b.shape == (4, 3, 32, 32)
    assert 12 <= mean_period(parse_params(SMALL)) <= 40


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"periods": [30, 12]}, "data.periods"),
        ({"periods": [1, 5]}, "data.periods"),
        ({"size": 8}, "data.size"),
        ({"motifs": "cats"}, "data.motifs"),
        ({"lattices": [0, 2]}, "data.lattices"),
        ({"jitter": -1}, "data.jitter"),
        ({"n_test": 0}, "data.n_test"),
        ({"colour": 1}, "data.colour"),
        ({"geometry": "hexagonal"}, "data.geometry"),
    ],
)
def test_bad_parameters_name_the_field(bad: dict, field: str) -> None:
    with pytest.raises(UserError, match=field.replace(".", r"\.")):
        make_source({**SMALL, **bad})


def test_space_file_checks_generator_parameters_up_front() -> None:
    doc = {
        "backbone": {"name": "edsr"},
        "task": {"name": "denoise", "sigma": 50},
        "keys": [0, 4],
        "data": {"kind": "synthetic", "periods": [40, 10]},
    }
    with pytest.raises(UserError, match=r"s\.yaml: data\.periods"):
        parse_spec(doc, file="s.yaml")
    doc["data"] = {"kind": "synthetic", "seed": 3}
    assert parse_spec(doc, file="s.yaml").data == {"kind": "synthetic", "seed": 3}


def test_texture_set_quadrants_are_disjoint() -> None:
    src = make_source({"kind": "embedded", "set": "textures"})
    names = {s: src.split(s).names for s in ("train", "val", "test")}
    assert len(names["train"]) == 6 and len(names["val"]) == 3 and len(names["test"]) == 3
    assert not set(names["train"]) & set(names["test"])
    img = src.split("test")[0]
    assert img.shape == (3, 256, 256)
    with pytest.raises(UserError, match="data.set"):
        make_source({"kind": "embedded", "set": "cats"})


def test_square_geometry_repeats_exactly_on_the_pixel_grid() -> None:
    """geometry: square, whole-pixel period, no jitter or brightness change: the pixels of a
    motif one period away are the same pixels (the lattice benchmark's exact repeats)."""
    p = parse_params(
        {
            "geometry": "square",
            "periods": [24, 24],
            "jitter": 0,
            "brightness": 0,
            "motifs": "procedural",
            "lattices": [1, 1],
        }
    )
    img, info = render(p, "train", 0)
    assert info[0]["periods"] == (24.0, 24.0) and abs(info[0]["angle_deg"]) < 1e-9
    a = img.astype(int)
    same_x = (a[:, :-24] == a[:, 24:]).all(-1).mean()
    oblique = render(parse_params({"jitter": 0, "brightness": 0, "lattices": [1, 1]}), "train", 0)[0].astype(int)
    assert same_x > 0.1 and same_x > 10 * (oblique[:, :-24] == oblique[:, 24:]).all(-1).mean()
    # a variable period is still a whole number of pixels per lattice
    q = parse_params({"geometry": "square", "periods": [16, 32], "jitter": 0, "brightness": 0})
    for i in range(3):
        for lat in render(q, "train", i)[1]:
            assert lat["periods"][0] == lat["periods"][1] == round(lat["periods"][0]) and 16 <= lat["periods"][0] <= 32
    with pytest.raises(UserError, match="data.geometry"):
        parse_params({"geometry": "hexagonal"})

"""Trainer: learning, exact resume, non-finite loss, completed runs; evaluation; tiled restore."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from acla_nas.core.errors import UserError
from acla_nas.data.images import embedded_dir, load_image_u8
from acla_nas.data.patches import PatchSampler, fixed_patches
from acla_nas.tasks import make_task
from acla_nas.train.checkpoint import load_checkpoint
from acla_nas.train.config import TrainConfig
from acla_nas.train.evaluate import evaluate_model
from acla_nas.train.inference import restore_image
from acla_nas.train.trainer import NonFiniteLossError, Trainer

TASK = make_task({"name": "sr", "scale": 2})


class TinySR(nn.Module):
    """Bicubic upsampling plus a learned residual (receptive-field radius 3 in LR pixels)."""

    def __init__(self, scale: int = 2, width: int = 8) -> None:
        super().__init__()
        self.scale = scale
        self.body = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 3 * scale * scale, 3, padding=1),
        )
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.body(x)) + x.repeat_interleave(self.scale, -1).repeat_interleave(self.scale, -2)


class Bicubic(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)


@pytest.fixture(scope="module")
def photos() -> list[torch.Tensor]:
    hr = load_image_u8(embedded_dir() / "astronaut.png")
    return [hr[:, :96, :96], hr[:, 160:256, 200:296], hr[:, 300:396, 300:396]]


def _trainer(photos, out_dir=None, steps=12, seed=0, init_seed=0, cfg_kw=None, **kw) -> Trainer:
    torch.manual_seed(init_seed)
    cfg = TrainConfig(
        steps=steps,
        patch=16,
        batch=4,
        lr=kw.pop("lr", 2e-3),
        seed=seed,
        val_every=4,
        val_patches=4,
        ckpt_every=4,
        progress=False,
        device="cpu",
        **(cfg_kw or {}),
    )
    sampler = PatchSampler(photos, TASK, cfg.patch, cfg.batch, seed=cfg.seed)
    val = fixed_patches(photos, TASK, cfg.val_patches, 32, seed=0)
    return Trainer(TinySR(), TASK, sampler, cfg, out_dir, val_data=val, **kw)


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_loss_decreases(photos):
    losses = []
    result = _trainer(photos, steps=30, lr=3e-3, after_step=lambda s, loss: losses.append(loss)).fit()
    assert len(losses) == 30
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5
    assert result["completed"] and result["val_psnr"] > 20
    assert [h["step"] for h in result["history"]] == [4, 8, 12, 16, 20, 24, 28, 30]


@pytest.mark.parametrize("stop_in", ["before_step", "after_step"])
def test_resume_after_interrupt_matches_uninterrupted(photos, tmp_path, stop_in):
    full = _trainer(photos, tmp_path / "full")
    full.fit()

    def stop(step, *_):
        if step == 6:
            raise KeyboardInterrupt

    cut = _trainer(photos, tmp_path / "cut", **{stop_in: stop})
    with pytest.raises(KeyboardInterrupt):
        cut.fit()
    saved = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")
    # before the update of step 6: saved exactly there; after it: only the periodic step-4 checkpoint
    assert saved["step"] == (6 if stop_in == "before_step" else 4)
    assert not (tmp_path / "cut" / "metrics.json").exists()
    resumed = _trainer(photos, tmp_path / "cut", init_seed=123)  # other init: weights must come from the checkpoint
    result = resumed.fit()
    assert _same_weights(resumed.model, full.model)
    assert result["val_psnr"] == pytest.approx(json.loads((tmp_path / "full" / "metrics.json").read_text())["val_psnr"])


def test_checkpoint_contents_load_weights_only(photos, tmp_path):
    _trainer(photos, tmp_path, steps=4).fit()
    ckpt = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    for key in ("model", "optimizer", "scheduler", "sampler", "step", "rng", "config", "task"):
        assert key in ckpt
    assert ckpt["step"] == 4 and ckpt["sampler"]["step"] == 4 and ckpt["config"]["steps"] == 4
    assert not list((tmp_path / "checkpoints").glob("*.tmp"))


def test_non_finite_loss_keeps_previous_checkpoint(photos, tmp_path):
    ckpt = tmp_path / "checkpoints" / "last.pt"
    snapshot = {}

    def poison(step):
        if step == 7:
            snapshot["bytes"] = ckpt.read_bytes()
            with torch.no_grad():
                next(trainer.model.parameters()).fill_(float("nan"))

    trainer = _trainer(photos, tmp_path, before_step=poison)
    with pytest.raises(NonFiniteLossError, match="step 7") as info:
        trainer.fit()
    assert isinstance(info.value, UserError) and "step 4" in str(info.value)
    assert ckpt.read_bytes() == snapshot["bytes"]
    assert load_checkpoint(ckpt)["step"] == 4
    assert not (tmp_path / "metrics.json").exists()


def test_completed_run_is_not_overwritten(photos, tmp_path):
    first = _trainer(photos, tmp_path, steps=4)
    result = first.fit()
    stored = {p: p.read_bytes() for p in [tmp_path / "metrics.json", tmp_path / "checkpoints" / "last.pt"]}
    called = []
    again = _trainer(photos, tmp_path, steps=4, init_seed=99, before_step=called.append)
    assert again.fit() == json.loads(json.dumps(result))
    assert called == []  # no training step ran
    assert all(p.read_bytes() == b for p, b in stored.items())
    assert _same_weights(again.model, first.model)  # the stored weights are loaded
    with pytest.raises(UserError, match="another config"):
        _trainer(photos, tmp_path, steps=6).fit()


def test_train_config_validation():
    assert TrainConfig.from_dict({"lr": "2e-4", "schedule": "step"}).lr == pytest.approx(2e-4)
    with pytest.raises(UserError) as info:
        TrainConfig.from_dict({"stepz": 3}, file="a.yaml")
    assert info.value.field == "train.stepz" and info.value.file == "a.yaml"
    with pytest.raises(UserError) as info:
        TrainConfig.from_dict({"batch": 0})
    assert info.value.field == "train.batch"


def test_train_config_from_recipe_layers_and_names_where_a_value_came_from():
    cfg = TrainConfig.from_recipe(
        {"steps": 20, "batch": 4, "lr": "1e-3"},
        defaults={"steps": 10, "batch": 2, "patch": 24},
        overrides={"batch": 8, "seed": None},  # None: the flag was not given
        fixed={"seed": 5, "progress": False},
    )
    assert (cfg.steps, cfg.batch, cfg.patch, cfg.lr, cfg.seed, cfg.progress) == (20, 8, 24, 1e-3, 5, False)
    with pytest.raises(UserError) as info:  # a bad section value: the file and <section>.<key>
        TrainConfig.from_recipe({"steps": 0}, section="proxy", file="p.yaml")
    assert (info.value.file, info.value.field) == ("p.yaml", "proxy.steps")
    with pytest.raises(UserError) as info:  # a bad flag: the flag, not the file
        TrainConfig.from_recipe({"steps": 3}, overrides={"val_every": -1}, file="a.yaml")
    assert (info.value.file, info.value.field) == (None, "--val-every")
    with pytest.raises(UserError) as info:
        TrainConfig.from_recipe(overrides={"patch": 0}, flag=lambda key: f"--retrain-{key}")
    assert info.value.field == "--retrain-patch"


def test_step_schedule_and_param_groups(photos):
    extra = nn.Parameter(torch.zeros(3))
    lrs = []
    t = _trainer(
        photos,
        steps=8,
        cfg_kw={"schedule": "step", "milestones": (0.5, 0.75), "gamma": 0.5},
        param_groups=[{"params": [extra], "lr": 1e-2}],
        before_step=lambda s: lrs.append(t.optimizer.param_groups[0]["lr"]),
    )
    t.fit()
    assert lrs == pytest.approx([2e-3] * 4 + [1e-3] * 2 + [5e-4] * 2)
    assert len(t.optimizer.param_groups) == 2 and t.optimizer.param_groups[1]["lr"] == pytest.approx(1e-2 * 0.25)
    cos = []
    c = _trainer(photos, steps=4, before_step=lambda s: cos.append(c.optimizer.param_groups[0]["lr"]))
    c.fit()
    assert (
        cos[0] == pytest.approx(2e-3) and cos[2] == pytest.approx(1e-3, rel=1e-3) and cos == sorted(cos, reverse=True)
    )


def test_evaluate_model_protocol_and_floor(photos):
    res = evaluate_model(Bicubic(), photos, TASK, "cpu")
    assert res["n"] == 3 and len(res["per_image"]) == 3
    assert res["psnr"] == pytest.approx(res["floor_psnr"], abs=1e-9)
    assert res["ssim"] == pytest.approx(res["floor_ssim"], abs=1e-9)
    assert 20 < res["psnr"] < 45
    noisy = evaluate_model(nn.Identity(), photos, make_task({"name": "denoise", "sigma": 25}), "cpu")
    assert noisy["psnr"] == pytest.approx(noisy["floor_psnr"], abs=1e-9) and noisy["psnr"] < 25


@pytest.mark.parametrize("scale", [1, 2])
def test_tiled_restore_equals_full_inference(scale):
    torch.manual_seed(0)
    net = TinySR(scale).eval()  # receptive-field radius 3 <= overlap / 4
    lq = torch.rand(1, 3, 45, 70)
    with torch.no_grad():
        full = net(lq)
        tiled = restore_image(net, lq, scale, tile=24, overlap=16)
    assert tiled.shape == full.shape == (1, 3, 45 * scale, 70 * scale)
    assert (tiled - full).abs().max() < 1e-5
    assert torch.equal(restore_image(net, lq, scale, tile=None), full)


def test_trainer_adds_the_model_auxiliary_loss(photos):
    class WithAux(TinySR):
        def auxiliary_loss(self) -> torch.Tensor:
            return torch.tensor(10.0)

    losses = []
    torch.manual_seed(0)
    cfg = TrainConfig(steps=2, patch=16, batch=4, lr=1e-3, seed=0, val_every=0, progress=False, device="cpu")
    Trainer(
        WithAux(), TASK, PatchSampler(photos, TASK, 16, 4, seed=0), cfg, after_step=lambda s, loss: losses.append(loss)
    ).fit()
    assert len(losses) == 2 and all(10.0 < v < 11.0 for v in losses)  # L1 of [0,1] images + 10


def test_evaluate_model_reports_keys_kept_by_acla_modules(photos):
    from acla_nas.nn.arch import Arch
    from acla_nas.nn.network import build

    arch = Arch.from_dict(
        {
            "backbone": {"name": "edsr", "kwargs": {"n_feats": 8, "n_resblocks": 2}},
            "task": {"name": "sr", "scale": 2},
            "modules": {"body.1": {"keys": 4}},
        }
    )
    torch.manual_seed(0)
    net = build(arch)
    with torch.no_grad():
        net.acla_modules()["body.1"].gate.bias.copy_(torch.tensor([3.0, 3.0, -3.0, -3.0]))  # keep the first two keys
    res = evaluate_model(net, photos, TASK, "cpu")
    assert res["keys_used"] == {"body.1": pytest.approx(2.0)}
    assert "keys_used" not in evaluate_model(Bicubic(), photos, TASK, "cpu")

"""A pretrained backbone as input (issue 21): weights named in a space or arch file, modules at
identity on top of them, and the training options a fine-tune needs (frozen backbone, its own
learning rate, gradient clipping per parameter group)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from acla_nas.cli.main import main
from acla_nas.core.errors import UserError
from acla_nas.nn.arch import Arch, load_arch_file
from acla_nas.nn.network import build
from acla_nas.space import SearchSpace
from acla_nas.train.model_file import save_model_file

PLAIN = {
    "backbone": {"name": "edsr", "kwargs": {"n_feats": 4, "n_resblocks": 2}},
    "task": {"name": "denoise", "sigma": 25},
}
CHILD = {**PLAIN, "modules": {"body.1": {"keys": 2, "scope": 1}}}


@pytest.fixture()
def plain_model(tmp_path: Path) -> Path:
    torch.manual_seed(3)
    arch = Arch.from_dict(PLAIN)
    net = build(arch)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.1)  # "trained": not the initialisation any seed gives
    save_model_file(tmp_path / "plain.pt", net, arch.to_dict(), arch.task)
    return tmp_path / "plain.pt"


def _arch_file(folder: Path, doc: dict, weights: str) -> Path:
    doc = yaml.safe_load(yaml.safe_dump(doc))
    doc["backbone"]["weights"] = weights
    f = folder / "arch.yaml"
    f.write_text(yaml.safe_dump(doc))
    return f


def test_a_child_starts_as_the_pretrained_plain_network(tmp_path: Path, plain_model: Path) -> None:
    arch, _ = load_arch_file(_arch_file(tmp_path, CHILD, "plain.pt"))  # relative to the file's folder
    assert arch.weights == str(plain_model.resolve()) and len(arch.weights_sha256) == 64
    plain = build(Arch.from_dict(PLAIN))
    plain.backbone.load_state_dict(
        {k[len("backbone.") :]: v for k, v in torch.load(plain_model, weights_only=True)["state_dict"].items()}
    )
    child = build(arch)
    x = torch.rand(1, 3, 16, 16)
    assert torch.equal(child.eval()(x), plain.eval()(x))  # ACLA at identity on the trained weights
    again = Arch.from_dict(yaml.safe_load(yaml.safe_dump(arch.to_dict())))
    assert again == arch  # the path and sha256 travel with the architecture


def test_a_space_names_weights_and_its_supernet_starts_from_them(tmp_path: Path, plain_model: Path) -> None:
    space_doc = {**PLAIN, "keys": [0, 2], "sites": ["body.0", "body.1"], "scopes": [1]}
    space_doc["backbone"] = {**PLAIN["backbone"], "weights": str(plain_model)}
    space = SearchSpace.from_dict(space_doc, file=str(tmp_path / "space.yaml"))
    sn = space.supernet()
    want = torch.load(plain_model, weights_only=True)["state_dict"]["backbone.head.weight"]
    assert torch.equal(sn.backbone.head.weight, want)
    assert space.template().weights == str(plain_model)


@pytest.mark.parametrize(
    "change,needle",
    [
        (lambda sd: {k: v for k, v in sd.items() if "tail" not in k}, "missing"),
        (lambda sd: {**sd, "backbone.extra.weight": torch.ones(1)}, "unexpected"),
        (lambda sd: {**sd, "backbone.head.weight": torch.ones(1, 1, 1, 1)}, "head.weight"),
    ],
)
def test_weights_that_do_not_fit_are_one_line(tmp_path: Path, plain_model: Path, capsys, change, needle) -> None:
    payload = torch.load(plain_model, weights_only=True)
    payload["state_dict"] = change(payload["state_dict"])
    torch.save(payload, tmp_path / "bad.pt")
    f = _arch_file(tmp_path, CHILD, "bad.pt")
    code = main(["train", str(f), "--out", str(tmp_path / "run"), "--steps", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "backbone.weights" in err[0] and needle in err[0], err


def test_weights_of_a_child_with_modules_or_a_changed_file_are_refused(tmp_path: Path, plain_model: Path) -> None:
    arch = Arch.from_dict(CHILD)
    save_model_file(tmp_path / "child.pt", build(arch), arch.to_dict(), arch.task)
    with pytest.raises(UserError, match="holds a child with ACLA modules"):
        build(load_arch_file(_arch_file(tmp_path, CHILD, "child.pt"))[0])
    doc = Arch.from_dict(
        yaml.safe_load(_arch_file(tmp_path, CHILD, "plain.pt").read_text()), file=str(tmp_path / "arch.yaml")
    ).to_dict()
    plain_model.write_bytes(plain_model.read_bytes() + b"\0")  # the file changed since
    with pytest.raises(UserError, match="not the file this architecture was made with"):
        Arch.from_dict(doc)
    with pytest.raises(UserError, match="no such weights file"):
        Arch.from_dict({**PLAIN, "backbone": {**PLAIN["backbone"], "weights": str(tmp_path / "none.pt")}})


def test_a_bare_state_dict_works_for_any_backbone(tmp_path: Path) -> None:
    net = build(Arch.from_dict(PLAIN))
    torch.save(net.backbone.state_dict(), tmp_path / "sd.pt")
    child = build(load_arch_file(_arch_file(tmp_path, CHILD, "sd.pt"))[0])
    assert torch.equal(child.backbone.head.weight, net.backbone.head.weight)


def _trainer(net, **cfg):
    from acla_nas.data.patches import PatchSampler
    from acla_nas.data.sources import make_source
    from acla_nas.tasks import make_task
    from acla_nas.train.config import TrainConfig
    from acla_nas.train.trainer import Trainer

    task = make_task(PLAIN["task"])
    items = make_source({"kind": "embedded"}).split("train")
    config = TrainConfig.from_dict({"steps": 3, "batch": 2, "patch": 24, "val_every": 0, "progress": False, **cfg})
    return Trainer(net, task, PatchSampler(items, task, 24, 2, seed=0), config)


def test_freeze_backbone_trains_the_modules_only() -> None:
    torch.manual_seed(0)
    net = build(Arch.from_dict(CHILD))
    before = {k: v.clone() for k, v in net.backbone.state_dict().items()}
    t = _trainer(net, freeze_backbone=True, lr=1e-2)
    acla_before = [p.clone() for p in net.acla.parameters()]
    for step in range(3):
        t._train_step(*t.sampler.batch_at(step), step)
    assert all(torch.equal(v, net.backbone.state_dict()[k]) for k, v in before.items())
    assert any(not torch.equal(a, b) for a, b in zip(acla_before, net.acla.parameters()))
    with pytest.raises(UserError, match="nothing to train"):
        _trainer(build(Arch.from_dict(PLAIN)), freeze_backbone=True)


def test_backbone_lr_mult_and_clipping_per_group() -> None:
    net = build(Arch.from_dict(CHILD))
    t = _trainer(net, backbone_lr_mult=0.1, lr=1e-3, clip_groups=True, grad_clip=1.0)
    lrs = {g["lr"] for g in t.optimizer.param_groups}
    assert 1e-4 in {round(x, 10) for x in lrs} and 1e-3 in lrs
    ids = {id(p) for p in net.backbone.parameters()}
    assert [all(id(p) in ids for p in ps) for ps in t.clip_sets] == [True, False]
    # exploding module gradients no longer rescale the backbone's
    for p in net.parameters():
        p.grad = torch.full_like(p, 1e-6 if id(p) in ids else 1e3)
    backbone_grads = [p.grad.clone() for p in net.backbone.parameters()]
    for ps in t.clip_sets:
        torch.nn.utils.clip_grad_norm_(ps, 1.0)
    assert all(torch.equal(a, p.grad) for a, p in zip(backbone_grads, net.backbone.parameters()))


@pytest.mark.parametrize("bad", [{"freeze_backbone": "yes"}, {"backbone_lr_mult": 0}, {"clip_groups": 1}])
def test_new_training_options_are_checked(bad: dict) -> None:
    from acla_nas.train.config import TrainConfig

    with pytest.raises(UserError, match=f"train.{next(iter(bad))}"):
        TrainConfig.from_dict(bad)

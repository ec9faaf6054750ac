"""ConvAutoencoder(checkpoints=...): parameters and learning rates saved during
training (for TracIn), in memory or in a folder read back with weights_only=True."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from xeval.adapters._torch import checkpoint_epochs, load_checkpoint
from xeval.adapters.autoencoder import ConvAutoencoder
from xeval.errors import InputError


def _images(n=6, size=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.2, 0.8, size=(n, 3, size, size)).astype(np.float32)


def _ae(**kw):
    base = dict(input_size=16, epochs=6, width=4, bottleneck=2, downsample=1, batch_size=4)
    return ConvAutoencoder(**{**base, **kw})


def test_default_saves_nothing_and_leaves_the_config_alone():
    det = _ae().fit([_images()])
    assert det.checkpoints_ == []
    assert "checkpoints" not in det.config() and "checkpoint_dir" not in det.config()


def test_checkpoints_hold_the_epoch_lr_and_parameters():
    images = _images()
    plain = _ae().fit([images])
    det = _ae(checkpoints=3).fit([images])
    assert [c.epoch for c in det.checkpoints_] == [2, 4, 6]
    # CosineAnnealingLR (eta_min 0): lr of epoch e = lr0 (1 + cos(pi (e - 1) / T)) / 2
    lr0 = det.lr
    for c in det.checkpoints_:
        assert c.lr == pytest.approx(lr0 * (1 + math.cos(math.pi * (c.epoch - 1) / 6)) / 2)
    last = det.checkpoints_[-1].load()
    for name, p in det.torch_module().state_dict().items():
        torch.testing.assert_close(last[name], p, rtol=0, atol=0)
    # saving changes nothing in the training itself
    for name, p in plain.torch_module().state_dict().items():
        torch.testing.assert_close(det.torch_module().state_dict()[name], p, rtol=0, atol=0)
    assert det.config()["checkpoints"] == 3
    # earlier checkpoints differ from the final parameters
    first = det.checkpoints_[0].load()
    assert any(not torch.equal(first[k], last[k]) for k in last)


def test_checkpoint_dir_writes_weights_only_files(tmp_path):
    images = _images()
    mem = _ae(checkpoints=[1, 5]).fit([images])
    folder = tmp_path / "ckpts"
    det = _ae(checkpoints=[1, 5], checkpoint_dir=str(folder), name="ae/1").fit([images])
    assert sorted(p.name for p in folder.iterdir()) == ["ae_1-epoch0001.pt", "ae_1-epoch0005.pt"]
    for a, b in zip(mem.checkpoints_, det.checkpoints_, strict=True):
        assert b.state is None and b.path is not None
        raw = torch.load(b.path, weights_only=True)
        assert raw["epoch"] == a.epoch and raw["lr"] == pytest.approx(a.lr)
        ck = load_checkpoint(b.path)
        for k, v in a.state.items():
            torch.testing.assert_close(ck.state[k], v, rtol=0, atol=0)
            torch.testing.assert_close(b.load()[k], v, rtol=0, atol=0)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"checkpoints": 0}, r"checkpoints must lie in \[1, epochs=6\]"),
        ({"checkpoints": 7}, r"checkpoints must lie in \[1, epochs=6\]"),
        ({"checkpoints": [0, 2]}, "every epoch must be an integer in"),
        ({"checkpoints": [2, 9]}, "every epoch must be an integer in"),
        ({"checkpoints": "3"}, "checkpoints must be None, an int or a non-empty list"),
        ({"checkpoints": True}, "checkpoints must be None, an int or a list"),
        ({"checkpoints": []}, "non-empty list"),
        ({"checkpoint_dir": "/tmp/x"}, "checkpoint_dir is given without checkpoints"),
        ({"checkpoints": 2, "checkpoint_dir": 5}, "checkpoint_dir must be a folder path"),
    ],
)
def test_bad_options(kw, match):
    with pytest.raises(InputError, match=match):
        _ae(**kw)


def test_checkpoint_epochs_spacing():
    assert checkpoint_epochs(None, 10) == []
    assert checkpoint_epochs(1, 10) == [10]
    assert checkpoint_epochs(3, 10) == [4, 7, 10]
    assert checkpoint_epochs(10, 10) == list(range(1, 11))
    assert checkpoint_epochs([5, 1, 5], 10) == [1, 5]


def test_load_checkpoint_refuses_other_files(tmp_path):
    path = tmp_path / "x.pt"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(InputError, match="not an xeval checkpoint"):
        load_checkpoint(path)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(InputError, match="cannot read checkpoint"):
        load_checkpoint(bad)

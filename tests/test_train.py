"""The main job: LeNet-5 on scikit-learn's digits with classic_ops layers."""
import pytest
import torch

pytest.importorskip("sklearn")

from classic_ops import train  # noqa: E402
from classic_ops import nn as cnn  # noqa: E402


def test_digits_are_32x32_and_split_without_overlap():
    train_x, train_y, test_x, test_y = train.load_digits_32x32()
    assert train_x.shape[1:] == test_x.shape[1:] == (1, 32, 32)
    assert len(train_x) + len(test_x) == 1797
    assert set(train_y.tolist()) == set(test_y.tolist()) == set(range(10))


def test_main_job_reaches_97_percent(tmp_path, capsys):
    checkpoint = tmp_path / "lenet5.pt"
    results = train.main(checkpoint=str(checkpoint), device="cpu")
    (name, accuracy, seconds), = results
    assert name == "classic_ops" and accuracy >= 0.97
    saved = torch.load(checkpoint)
    assert saved["test_accuracy"] == accuracy and len(saved["history"]) == 15
    out = capsys.readouterr().out
    assert "confusion matrix" in out and "test acc" in out


def test_lenet5_uses_our_layers_everywhere():
    from classic_ops.models import lenet5

    model = lenet5()
    kinds = {type(m) for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.MaxPool2d))}
    assert kinds == {cnn.Conv2d, cnn.MaxPool2d}

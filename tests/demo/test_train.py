"""The training script: deterministic from a seed (tiny setting), saves a loadable checkpoint, checks args."""

import json

import pytest
from safetensors.torch import load_file

from pidcore.demo import train

TINY_ARGS = ["--steps", "3", "--batch-size", "8", "--train-questions", "300", "--eval-every", "3",
             "--eval-questions", "50", "--threads", "1", "--patch-size", "16", "--vision-hidden", "32",
             "--vision-layers", "1", "--text-hidden", "32", "--text-layers", "6", "--text-intermediate", "64",
             "--vision-epochs", "1", "--vision-batch-size", "1000"]


def test_training_is_deterministic_from_the_seed(tmp_path):
    first = train.train(train.parse_args([*TINY_ARGS, "--out", str(tmp_path / "a"), "--seed", "7"]))
    again = train.train(train.parse_args([*TINY_ARGS, "--out", str(tmp_path / "b"), "--seed", "7"]))
    weights_a = load_file(tmp_path / "a" / "model.safetensors")
    weights_b = load_file(tmp_path / "b" / "model.safetensors")
    assert weights_a.keys() == weights_b.keys()
    assert all((weights_a[name] == weights_b[name]).all() for name in weights_a)
    assert first["final_loss"] == again["final_loss"] and first["test_accuracy"] == again["test_accuracy"]
    meta = json.loads((tmp_path / "a" / "pidflow.json").read_text())
    assert meta["training"]["seed"] == 7 and meta["training"]["steps"] == 3
    assert meta["architecture"]["text_layers"] == 6


def test_a_step_changes_the_weights(tmp_path):
    trained = train.train(train.parse_args([*TINY_ARGS, "--steps", "1", "--no-save", "--seed", "7"]))
    from pidcore.demo.build import DemoArchitecture, build_llava

    fresh, _ = build_llava(DemoArchitecture(patch_size=16, vision_hidden=32, vision_layers=1, text_hidden=32,
                                            text_layers=6, text_intermediate=64), seed=7)
    trained_weight = trained["model"].model.multi_modal_projector.linear_1.weight
    assert not (trained_weight == fresh.model.multi_modal_projector.linear_1.weight).all()


@pytest.mark.parametrize(("argv", "message"), [
    (["--steps", "0"], "--steps must be >= 1"),
    (["--lr", "2"], "--lr must be in (0, 1)"),
    (["--patch-size", "7"], "--patch-size must divide"),
])
def test_bad_arguments_exit_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as error:
        train.parse_args(argv)
    assert error.value.code == 2 and message in capsys.readouterr().err

"""Training-only helpers of the demo recipe: question labels, probes, mirroring, the vision stage."""

import pytest
import torch

from pidcore.demo.auxiliary import AnswerPositionProbes, question_labels
from pidcore.demo.build import build_tokenizer
from pidcore.demo.train import mirror_half, parse_args


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def test_question_labels_name_the_asked_shape_colour_and_negation(tokenizer):
    questions = ["is there not a red shape?", "what shape is present?", "is there a circle?",
                 "is no blue triangle present?", "what color is the rectangle?"]
    encoded = tokenizer(questions, padding=True, return_tensors="pt")["input_ids"]
    labels = question_labels(encoded, tokenizer)
    # shapes: circle 0, rectangle 1, triangle 2, none 3; colours: red 0, blue 2, none 8
    assert labels["shape"].tolist() == [3, 3, 0, 2, 1]
    assert labels["color"].tolist() == [0, 8, 8, 2, 8]
    assert labels["negated"].tolist() == [1, 0, 0, 1, 0]


def test_probes_read_the_answer_position_of_the_chosen_layers():
    torch.manual_seed(0)
    probes = AnswerPositionProbes(hidden=4, layers=(1,), targets=("shape",))
    labels = {"shape": torch.tensor([0, 2])}
    states = [torch.zeros(2, 3, 4), torch.zeros(2, 3, 4)]
    with torch.no_grad():
        probes.heads["shape"][0].weight.zero_()
        probes.heads["shape"][0].bias.zero_()
    # all-zero logits: cross-entropy is ln 3 whatever the states before the last position hold
    states[1][:, :-1] = 5.0
    assert probes.loss(states, labels).item() == pytest.approx(torch.log(torch.tensor(3.0)).item())
    with torch.no_grad():
        probes.heads["shape"][0].weight.copy_(torch.eye(3, 4) * 20)
    states[1][0, -1, 0] = 1.0
    states[1][1, -1, 2] = 1.0
    assert probes.loss(states, labels).item() < 1e-6
    ignored = {"shape": torch.tensor([-100, 2])}
    assert probes.loss(states, ignored).item() < 1e-6


def test_mirror_half_flips_whole_images_left_right():
    pixels = torch.arange(8 * 3 * 4 * 4, dtype=torch.float32).reshape(8, 3, 4, 4)
    mirrored = mirror_half(pixels, torch.Generator().manual_seed(0))
    flipped = [torch.equal(m, p.flip(-1)) for m, p in zip(mirrored, pixels, strict=True)]
    kept = [torch.equal(m, p) for m, p in zip(mirrored, pixels, strict=True)]
    assert all(f != k for f, k in zip(flipped, kept, strict=True))
    assert 0 < sum(flipped) < 8


@pytest.mark.parametrize(("argv", "message"), [
    (["--probe-layers", "2,x"], "--probe-layers must be comma-separated integers"),
    (["--probe-layers", "0"], "--probe-layers must lie in 1..6"),
    (["--vision-epochs", "-1"], "--vision-epochs must be >= 0"),
])
def test_bad_recipe_arguments_exit_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as error:
        parse_args(argv)
    assert error.value.code == 2 and message in capsys.readouterr().err

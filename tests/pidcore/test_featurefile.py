"""Pooled-features files: round trips in every format, clear errors, and an analysis with a known answer."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from pidcore.features.files import FeaturesFileError, read_features, write_features
from pidcore.features.uploaded import analyze_features, features_request, select_features

N, LAYERS = 300, 4


def known_system(seed=0):
    """Y = (Y1, Y2) independent N(0, 1); vision at layer l = (l + 1) Y1 + noise (+ 5 noise coordinates),
    language = Y2 + noise. Truth (bits): R = S = 0, U_vision = log2(1 + (l + 1)^2) / 2, U_language = 1/2."""
    rng = np.random.default_rng(seed)
    y = rng.normal(size=(N, 2))
    vision = np.stack([np.c_[(layer + 1) * y[:, :1] + rng.normal(size=(N, 1)), rng.normal(size=(N, 5))]
                       for layer in range(LAYERS)])
    language = np.stack([np.c_[y[:, 1:] + rng.normal(size=(N, 1)), rng.normal(size=(N, 5))] for _ in range(LAYERS)])
    return vision, language, y


@pytest.fixture(scope="module")
def system():
    return known_system()


@pytest.mark.parametrize("suffix", [".npz", ".safetensors", ".pt"])
def test_round_trip_in_every_format(tmp_path, system, suffix):
    vision, language, y = system
    images = np.random.default_rng(1).integers(0, 255, (N, 8, 8, 3), dtype=np.uint8)
    texts = {"qids": [f"toy.{i}" for i in range(N)], "tasks": ["a", "b"] * (N // 2),
             "questions": [f"question {i}?" for i in range(N)], "answers": ["yes", "no", "yes"] * (N // 3),
             "predicted": ["yes"] * N}
    path = tmp_path / f"features{suffix}"
    sha = write_features(path, vision=list(vision), language=language, target=y, images=images,
                         meta={"model": "toy-vlm", "language_pooling": "last"}, **texts)
    loaded = read_features(path.read_bytes())  # from bytes, format sniffed
    assert loaded.sha256 == sha and loaded.format == suffix[1:]
    features = loaded.features
    np.testing.assert_array_equal(features.vision, vision.astype(np.float32))
    np.testing.assert_array_equal(features.language, language.astype(np.float32))
    np.testing.assert_array_equal(features.target, y.astype(np.float32))
    np.testing.assert_array_equal(loaded.images, images)
    for name, values in texts.items():
        assert features.__getattribute__(name).tolist() == values, name
    assert features.correct.tolist() == [a == "yes" for a in texts["answers"]]
    assert features.meta["language_pooling"] == "last" and features.meta["target"] == "hidden"
    assert loaded.describe()["tasks"] == {"a": N // 2, "b": N // 2}
    assert features.meta["model"]["name"] == f"features:{sha}" and features.meta["source_model"] == "toy-vlm"


def test_known_answer_through_the_library(tmp_path, system):
    vision, language, y = system
    path = tmp_path / "toy.npz"
    write_features(path, vision=vision, language=language, target=y)
    document = analyze_features(path, dims=[2, 2, 2], gaussianize=False)
    assert document["schema"] == "pidflow.result/1" and document["model"]["name"].startswith("features:")
    assert document["request"]["model"] == document["model"]["name"] and document["n_questions"] == N
    layers = document["runs"]["baseline"]["layers"]
    assert [entry["layer"] for entry in layers] == list(range(LAYERS))
    for layer, entry in enumerate(layers):
        assert entry["unique_vision"] == pytest.approx(np.log2(1 + (layer + 1) ** 2) / 2, abs=0.12)
        assert entry["unique_language"] == pytest.approx(0.5, abs=0.12)
        assert abs(entry["redundancy"]) < 0.06 and abs(entry["synergy"]) < 0.06
    question = document["questions"][0]
    assert question["baseline"] == {"predicted": None, "p_correct": None, "correct": None}
    assert document["runs"]["baseline"]["accuracy"] is None
    json.dumps(document, allow_nan=False)  # no NaN anywhere: valid JSON


def test_selection_by_task_count_and_correctness(tmp_path, system):
    vision, language, y = system
    answers = ["red", "blue"] * (N // 2)
    predicted = ["red"] * N
    target = np.log(np.full((N, 2), 0.5))
    path = tmp_path / "sel.pt"
    write_features(path, vision=vision, language=language, target=target, answers=answers, predicted=predicted,
                   tasks=["color"] * 200 + ["shape"] * 100, answer_set=["red", "blue"])
    loaded = read_features(path)
    assert loaded.features.meta["target"] == "logprobs"
    np.testing.assert_allclose(loaded.features.p_correct, 0.5)  # derived: exp(target[gold])
    request = features_request(loaded, correct_only=True, tasks=["color"], n_questions=50)
    from pidcore.pipeline.analysis import AnalysisRequest

    chosen = select_features(loaded, AnalysisRequest.from_dict(request))["baseline"]
    assert chosen.n == 50 and set(chosen.tasks) == {"color"} and chosen.correct.all()
    with pytest.raises(ValueError, match="not in the file"):
        select_features(loaded, AnalysisRequest.from_dict({**request, "tasks": ["count"]}))
    with pytest.raises(ValueError, match="language_pooling"):
        select_features(loaded, AnalysisRequest.from_dict({**request, "language_pooling": "last"}))


def _npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


@pytest.mark.parametrize(("arrays", "message"), [
    ({"language": np.zeros((3, 10, 4)), "target": np.zeros(10)}, "missing 'vision'"),
    ({"vision": np.zeros((3, 10, 4)), "language": np.zeros((2, 10, 4)), "target": np.zeros(10)},
     "vision has 3 layers, language 2"),
    ({"vision": np.zeros((3, 10, 4)), "language": np.zeros((3, 10, 4)), "target": np.zeros(9)},
     "target has 9 rows for 10 questions"),
    ({"vision": np.zeros((10, 4)), "language": np.zeros((3, 10, 4)), "target": np.zeros(10)},
     r"vision must be \(layers, questions, hidden\)"),
    ({"vision": np.full((3, 10, 4), np.nan), "language": np.zeros((3, 10, 4)), "target": np.zeros(10)},
     r"vision has 120 NaN or infinite value\(s\) \(first at index \(0, 0, 0\)\)"),
    ({"vision.0": np.zeros((10, 4)), "vision.2": np.zeros((10, 4)), "language": np.zeros((2, 10, 4)),
      "target": np.zeros(10)}, r"must run 0..L-1, got layers \[0, 2\]"),
    ({"vision": np.zeros((3, 10, 4)), "language": np.zeros((3, 10, 4)), "target": np.zeros(10),
      "qids": np.array(["a/1"] * 10)}, "qids must be unique; qids must be non-empty and contain no '/'"),
    ({"vision": np.zeros((3, 10, 4)), "language": np.zeros((3, 10, 4)), "target": np.zeros(10),
      "extra": np.zeros(1)}, r"unknown key\(s\) \['extra'\]"),
    ({"vision": np.zeros((3, 10, 4)), "language": np.zeros((3, 10, 4)), "target": np.zeros(10),
      "meta": np.array('{"target": "probs"}')}, "meta.target must be one of logprobs, hidden"),
])
def test_clear_errors(arrays, message):
    with pytest.raises(FeaturesFileError, match=message):
        read_features(_npz(**arrays))


def test_not_a_features_file(tmp_path):
    with pytest.raises(FeaturesFileError, match="expected npz, safetensors or a torch .pt"):
        read_features(b"hello world, not an archive")
    with pytest.raises(FeaturesFileError, match="not a readable safetensors"):
        read_features(b"garbage", filename="x.safetensors")
    with pytest.raises(FileNotFoundError, match="no features file"):
        read_features(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="suffix"):
        write_features(tmp_path / "x.h5", vision=np.zeros((1, 2, 1)), language=np.zeros((1, 2, 1)), target=[0, 1])


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_a_knocked_out_run_in_the_file(tmp_path, system, suffix):
    """Window = decoder layers [1, 2] = file layers 2, 3: there vision loses Y1; layers 0, 1 are identical
    in both runs, so their deltas are exactly zero."""
    vision, language, y = system
    cut = vision.copy()
    cut[2:, :, 0] = np.random.default_rng(5).normal(size=(2, N))
    answers, p_base, p_cut = ["red"] * N, np.full(N, 0.9), np.full(N, 0.6)
    path = tmp_path / f"ko{suffix}"
    write_features(path, vision=vision, language=language, target=y, answers=answers, predicted=answers,
                   p_correct=p_base, knockout={"vision": cut, "language": language, "target": y,
                                               "predicted": ["blue"] * N, "p_correct": p_cut,
                                               "edges": ["image->question"], "layers": [1, 2]})
    loaded = read_features(path)
    assert loaded.describe()["knockout"] == {"edges": ["image->question"], "layers": [1, 2]}
    np.testing.assert_array_equal(loaded.knockout.vision, cut.astype(np.float32))
    document = analyze_features(loaded, dims=[2, 2, 2], gaussianize=False)
    assert document["request"]["knockout"] == {"edges": ["image->question"], "layers": [1, 2]}
    per_layer = document["effects"]["per_layer"]
    for layer in (0, 1):
        assert all(per_layer[layer][term] == 0.0 for term in ("redundancy", "unique_vision", "synergy", "total"))
    assert per_layer[3]["unique_vision"] == pytest.approx(-np.log2(1 + 16) / 2, abs=0.15)
    assert document["effects"]["answer_probability_change"] == pytest.approx(-0.3)
    assert document["effects"]["accuracy_change"] == -1.0
    assert document["questions"][0]["knockout"] == {"predicted": "blue", "p_correct": pytest.approx(0.6),
                                                    "correct": False}
    with pytest.raises(ValueError, match="knockout must be"):
        analyze_features(loaded, request={**document["request"], "knockout": None})


def test_knockout_errors():
    base = {"vision": np.zeros((3, 10, 4)), "language": np.zeros((3, 10, 4)), "target": np.zeros(10)}
    knocked = {"knockout.vision": np.zeros((3, 10, 4)), "knockout.language": np.zeros((3, 10, 5)),
               "knockout.target": np.zeros(10)}
    with pytest.raises(FeaturesFileError, match=r"knockout.language has shape \(3, 10, 5\), language \(3, 10, 4\)"
                                                r".*needs meta.knockout"):
        read_features(_npz(**base, **knocked))
    meta = np.array(json.dumps({"knockout": {"edges": ["image->question"], "layers": [0, 2]}}))
    with pytest.raises(FeaturesFileError, match=r"last <= 1 .*got \[0, 2\]"):
        read_features(_npz(**base, **{**knocked, "knockout.language": np.zeros((3, 10, 4))}, meta=meta))
    with pytest.raises(FeaturesFileError, match="no knockout.vision"):
        read_features(_npz(**base, meta=meta))


@pytest.mark.parametrize("suffix", [".safetensors", ".pt", ".npz"])
def test_float16_stays_float16(tmp_path, system, suffix):
    vision, language, y = system
    half = vision.astype(np.float16)
    path = tmp_path / f"half{suffix}"
    write_features(path, vision=half, language=language.astype(np.float16), target=y)
    loaded = read_features(path).features
    assert loaded.vision.dtype == np.float16 and loaded.target.dtype == np.float32
    np.testing.assert_array_equal(loaded.vision, half)


@pytest.mark.parametrize("suffix", [".npz", ".safetensors", ".pt"])
def test_damaged_files_give_a_features_error(tmp_path, suffix):
    """Truncated or corrupted files of every format: a FeaturesFileError (HTTP 422), nothing else."""
    path = tmp_path / f"small{suffix}"
    rng = np.random.default_rng(0)
    write_features(path, vision=rng.normal(size=(3, 20, 4)), language=rng.normal(size=(3, 20, 4)),
                   target=rng.normal(size=20), tasks=["a"] * 20, meta={"model": "m"})
    data = path.read_bytes()
    damaged = [data[:cut] for cut in np.linspace(0, len(data) - 1, 12).astype(int)]
    for index in rng.integers(0, len(data), 24):
        flipped = bytearray(data)
        flipped[index] ^= 0xFF
        damaged.append(bytes(flipped))
    for blob in damaged:
        for name in (None, path.name):
            try:
                read_features(blob, filename=name)
            except FeaturesFileError:
                pass

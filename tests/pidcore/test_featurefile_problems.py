"""Every problem of a features file is reported at once (issue 18.6): a NaN no longer hides the checks of
the array's shape (its layers against the other source's, its questions against the target's, the knockout
window against its depth)."""

import io
import json

import numpy as np
import pytest

from pidcore.features.files import FeaturesFileError, read_features


def _npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _broken() -> dict:
    vision = np.zeros((3, 10, 4))
    vision[1, 2, 3] = np.nan
    return {"vision": vision, "language": np.zeros((2, 10, 4)), "target": np.zeros(9)}


def _problems(exc: pytest.ExceptionInfo) -> list[str]:
    message = str(exc.value)
    assert message.startswith("features file: ")
    return message.removeprefix("features file: ").split("; ")


def test_a_nan_and_a_layer_mismatch_are_both_reported():
    with pytest.raises(FeaturesFileError) as exc:
        read_features(_npz(**_broken()))
    assert _problems(exc) == ["vision has 1 NaN or infinite value(s) (first at index (1, 2, 3))",
                              "vision has 3 layers, language 2", "target has 9 rows for 10 questions"]


def test_every_problem_at_once_read_lazily_and_in_the_knockout_run(tmp_path):
    arrays = _broken()
    knocked = np.zeros((3, 10, 4))
    knocked[0, 0, 0] = np.inf
    meta = json.dumps({"knockout": {"edges": ["image->question"], "layers": [0, 2]}})
    path = tmp_path / "broken.npz"
    path.write_bytes(_npz(**arrays, **{"knockout.vision": knocked, "knockout.language": np.zeros((3, 10, 4)),
                                       "knockout.target": np.zeros(9)}, meta=np.array(meta)))
    with pytest.raises(FeaturesFileError) as exc:
        read_features(path, lazy=True)
    problems = _problems(exc)
    assert problems[:3] == ["vision has 1 NaN or infinite value(s) (first at index (1, 2, 3))",
                            "vision has 3 layers, language 2", "target has 9 rows for 10 questions"]
    assert "knockout.vision has 1 NaN or infinite value(s) (first at index (0, 0, 0))" in problems
    assert "knockout.language has shape (3, 10, 4), language (2, 10, 4)" in problems
    assert any(p.startswith("meta.knockout.layers must be [first, last]") and p.endswith("got [0, 2]")
               for p in problems)  # checked against the NaN-holding vision's 3 layers: last <= 1


def test_one_source_missing_still_checks_the_other_against_the_target():
    with pytest.raises(FeaturesFileError) as exc:
        read_features(_npz(vision=np.zeros((3, 10, 4)), target=np.zeros(9)))
    problems = _problems(exc)
    assert problems[0].startswith("missing 'language'") and "target has 9 rows for 10 questions" in problems


def test_check_values_false_skips_only_the_value_check_and_only_for_that_call(tmp_path):
    """A file checked before (a study part's, when it was planned) is re-read without looking at every value;
    its other problems are still found, and the next read checks values again."""
    arrays = _broken()
    path = tmp_path / "features.npz"
    path.write_bytes(_npz(**arrays))
    with pytest.raises(FeaturesFileError) as exc:
        read_features(path, lazy=True, check_values=False)
    assert not any("NaN" in problem for problem in _problems(exc))
    arrays["language"], arrays["target"] = np.zeros((3, 10, 4)), np.zeros(10)
    path.write_bytes(_npz(**arrays))
    read_features(path, lazy=True, check_values=False)  # only the NaN is wrong: not looked at
    with pytest.raises(FeaturesFileError, match="NaN or infinite"):
        read_features(path, lazy=True)

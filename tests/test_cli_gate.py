"""`pidflow analyze` (local) refuses what the server's gate refuses (issue 18, point 4): the same feasibility
check (app.precheck), before any model loads, with the field and its flag named and exit status 2."""

import pytest

from app import cli
from app.precheck import Refused, check


@pytest.fixture
def no_model(monkeypatch):
    import pidcore.pipeline.analysis as analysis

    def refuse(*_args, **_kwargs):
        raise AssertionError("the model ran: the request should have been refused first")

    monkeypatch.setattr(analysis, "run_analysis", refuse)


def _server_message(request: dict) -> str:
    with pytest.raises(Refused) as exc:
        check({**cli.DEFAULTS, **request})
    return str(exc.value)


@pytest.mark.parametrize(("argv", "field", "request_fields"), [
    (["--n-questions", "20"], "n_questions (--n-questions)", {"n_questions": 20}),  # too few for 8+8+4 dims
    (["--n-questions", "200", "--dims", "8", "8", "99"], "dims (--dims)", {"n_questions": 200, "dims": [8, 8, 99]}),
])
def test_the_cli_refuses_what_the_server_refuses(no_model, capsys, tmp_path, argv, field, request_fields):
    status = cli.main(["analyze", *argv, "-o", str(tmp_path / "r.json")])
    err = capsys.readouterr().err
    assert status == 2 and not (tmp_path / "r.json").exists()
    assert err == f"pidflow: error: {field}: {_server_message(request_fields)}\n"


def test_a_window_outside_the_model_is_refused_with_its_flag(no_model, capsys):
    status = cli.main(["analyze", "--n-questions", "200", "--knockout", "image->question",
                       "--knockout-layers", "2", "9"])
    err = capsys.readouterr().err
    assert status == 2 and err == ("pidflow: error: knockout (--knockout/--knockout-layers): knockout.layers [2, 9] "
                                   "is outside the model: decoder layers are 0..5\n")


def test_a_feasible_request_goes_through_the_gate(no_model, capsys):
    with pytest.raises(AssertionError, match="the model ran"):  # past the gate, the run starts
        cli.main(["analyze", "--n-questions", "200"])

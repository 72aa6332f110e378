"""Fixtures shared by every test folder."""
import pytest
import torch


@pytest.fixture
def one_thread():
    """Tiny models run fastest on one thread; the setting is restored for the tests that follow."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- the conformance suite's table (tests/pidcore/test_conformance.py) ---------------------------------

_CONFORMANCE: dict = {}


def pytest_runtest_logreport(report):
    """Collect (estimator, check) outcomes of the conformance suite (also from pytest-xdist workers)."""
    marker = "test_conformance.py::test_conformance["
    if marker not in report.nodeid or (report.when != "call" and not report.skipped and report.passed):
        return
    name, _, check = report.nodeid.split(marker, 1)[1].rstrip("]").partition("-")
    outcome = "xfail (gap)" if hasattr(report, "wasxfail") else report.outcome
    if report.when == "call" or outcome != "passed":
        _CONFORMANCE[(name, check)] = outcome


def pytest_terminal_summary(terminalreporter):
    """Print the conformance table: one row per estimator, one column per check."""
    if not _CONFORMANCE:
        return
    names = list(dict.fromkeys(name for name, _ in _CONFORMANCE))
    checks = list(dict.fromkeys(check for _, check in _CONFORMANCE))
    terminalreporter.section("conformance: estimator x check")
    for index, check in enumerate(checks):
        terminalreporter.write_line(f"  c{index + 1}: {check}")
    terminalreporter.write_line(f"  {'estimator':22s}" + "".join(f"{f'c{i + 1}':>13s}" for i in range(len(checks))))
    for name in names:
        cells = [_CONFORMANCE.get((name, check), "n/a") for check in checks]
        terminalreporter.write_line(f"  {name:22s}" + "".join(f"{cell:>13s}" for cell in cells))

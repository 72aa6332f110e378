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

import pytest
import torch


@pytest.fixture
def one_torch_thread():
    """Small LSTM and conv models run faster, and steadier, on one thread of a 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

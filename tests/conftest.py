import os
import shutil
import tempfile

import pytest
import torch

# torch.compile's on-disk caches key a compiled graph by the graph, not by the schemas of the custom ops it calls:
# code compiled against an earlier fastgan::bias_act_backward signature would be reused and fail. Each test
# session compiles into a fresh folder (child processes inherit it).
_INDUCTOR_CACHE = None if "TORCHINDUCTOR_CACHE_DIR" in os.environ else tempfile.mkdtemp(prefix="fastgan-tests-inductor-")
if _INDUCTOR_CACHE is not None:
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = _INDUCTOR_CACHE


def pytest_sessionfinish(session, exitstatus):
    if _INDUCTOR_CACHE is not None:
        shutil.rmtree(_INDUCTOR_CACHE, ignore_errors=True)


@pytest.fixture
def one_torch_thread():
    """Small LSTM and conv models run faster, and steadier, on one thread of a 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

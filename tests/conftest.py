"""Session-wide synthetic stores, made once and shared read-only by every test module."""

import pytest

from sltdata.testing import synth_store


@pytest.fixture(scope="session")
def islr_store(tmp_path_factory):
    """A kaggle-islr store: 240 sequences, 6 signs, 6 participants."""
    return synth_store("kaggle-islr", tmp_path_factory.mktemp("islr"), sequences=240, classes=6, participants=6)


@pytest.fixture(scope="session")
def fingerspelling_store(tmp_path_factory):
    """A kaggle-fingerspelling store: 3 files x 40 sequences, 6 participants."""
    return synth_store("kaggle-fingerspelling", tmp_path_factory.mktemp("fs"), files=3, sequences_per_file=40,
                       participants=6)


@pytest.fixture(scope="session")
def pose_store(tmp_path_factory):
    """A pose (uid,text + .pose) store: 60 sequences, 4 participants."""
    return synth_store("pose", tmp_path_factory.mktemp("pose"), sequences=60, participants=4)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Two cores shared with other test processes: one torch thread avoids oversubscription."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

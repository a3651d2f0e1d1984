import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Never read or write the user's ~/.cache/edgecnn from tests (one shared cache per test session)."""
    monkeypatch.setenv("EDGECNN_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "edgecnn-cache"))

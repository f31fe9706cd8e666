import pytest


@pytest.fixture(autouse=True)
def _in_a_fresh_folder(tmp_path, monkeypatch):
    """The main job writes its default results file into the working folder."""
    monkeypatch.chdir(tmp_path)

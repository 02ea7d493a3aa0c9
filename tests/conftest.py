"""Fixtures shared by several test modules, and the skip of `gpu` tests without CUDA.
Plain helpers live in checkpoints.py; torch and transformers load only for the tests that use them."""
import pytest


def pytest_runtest_setup(item):
    # a machine without CUDA skips `gpu` tests instead of failing them
    if item.get_closest_marker("gpu"):
        import torch
        if not torch.cuda.is_available():
            pytest.skip("needs a CUDA device")


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory):
    """name -> the folder of checkpoints.TINY[name], written once per session (tests only read it)."""
    from checkpoints import tiny_checkpoint
    folders = {}

    def folder(name: str):
        if name not in folders:
            folders[name] = tiny_checkpoint(tmp_path_factory.mktemp(name), name)
        return folders[name]
    return folder

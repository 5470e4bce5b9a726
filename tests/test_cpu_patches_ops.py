"""tests/e2e/cpu_patches P7: DeepSpeed's CPU ops live in the environment's own folder, and the lock of a build
whose process was killed is removed, while a lock a live builder holds stays (torch's FileBaton keeps it open)."""

import importlib.util
import os
import sys
from pathlib import Path

PATCHES = Path(__file__).parent / "e2e" / "cpu_patches" / "sitecustomize.py"


def _patches(monkeypatch):
    monkeypatch.delenv("RERULE_CPU_E2E", raising=False)  # import the module without activating its hooks
    spec = importlib.util.spec_from_file_location("cpu_patches_under_test", PATCHES)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_default_folder_is_the_environments_own(monkeypatch):
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR", raising=False)
    _patches(monkeypatch)._ops_in_this_environment()
    assert os.environ["TORCH_EXTENSIONS_DIR"] == os.path.join(sys.prefix, "torch_extensions")


def test_stale_lock_removed_held_lock_kept(tmp_path, monkeypatch, capsys):
    stale, held = tmp_path / "py311_cpu" / "fused_adam" / "lock", tmp_path / "py311_cpu" / "shm_comm" / "lock"
    for lock in (stale, held):
        lock.parent.mkdir(parents=True)
    stale.touch()  # what a killed builder leaves: the file, no open descriptor
    fd = os.open(held, os.O_CREAT | os.O_EXCL)  # what a live builder holds: FileBaton.try_acquire
    try:
        monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
        _patches(monkeypatch)._ops_in_this_environment()
        assert not stale.exists() and held.exists()
        assert f"removed {stale}" in capsys.readouterr().err
    finally:
        os.close(fd)

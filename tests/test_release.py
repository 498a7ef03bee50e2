"""One release, copied everywhere a learner meets it: the chapters' setup cells, `_config.yml`, the wheel."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from mini_medclip import __version__
from mini_medclip.release import REPOSITORY, VERSION, install_specs, setup_cell_source

ROOT = Path(__file__).resolve().parents[1]


def test_every_chapter_and_the_book_config_carry_the_release():
    result = subprocess.run([sys.executable, "tools/stamp_release.py", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
    assert __version__ == VERSION and f"url: {REPOSITORY}" in (ROOT / "_config.yml").read_text()


def _run_setup_cell(monkeypatch, installed: bool, pip_results: list[int]) -> list[str]:
    import importlib.util
    import subprocess as sp

    calls = []
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object() if installed else None)
    monkeypatch.setattr(sp, "run", lambda cmd, **kw: calls.append(cmd[-1]) or sp.CompletedProcess(cmd, pip_results.pop(0)))
    exec(setup_cell_source(), {})
    return calls


def test_the_setup_cell_does_nothing_where_the_package_is_installed(monkeypatch):
    assert _run_setup_cell(monkeypatch, installed=True, pip_results=[]) == []


def test_the_setup_cell_installs_the_pinned_release_then_falls_back_to_the_repository(monkeypatch):
    release, fallback = install_specs()
    assert release == f"mini-medclip=={VERSION}" and fallback.endswith(f"@v{VERSION}")
    assert _run_setup_cell(monkeypatch, installed=False, pip_results=[0]) == [release]
    assert _run_setup_cell(monkeypatch, installed=False, pip_results=[1, 0]) == [release, fallback]
    with pytest.raises(RuntimeError, match="could not install mini-medclip"):
        _run_setup_cell(monkeypatch, installed=False, pip_results=[1, 1])


def test_the_wheel_carries_every_package_file_the_chapters_read(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)], check=True)
    (wheel,) = tmp_path.glob("mini_medclip-*.whl")
    assert wheel.name.startswith(f"mini_medclip-{VERSION}-")
    tracked = subprocess.run(["git", "ls-files", "mini_medclip"], cwd=ROOT, capture_output=True, text=True, check=True)
    expected = {line for line in tracked.stdout.splitlines() if not line.endswith("__pycache__")}
    with zipfile.ZipFile(wheel) as archive:
        shipped = set(archive.namelist())
    assert expected - shipped == set()
    assert "mini_medclip/reference_results/chapter_times.json" in shipped

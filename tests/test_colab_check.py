"""The learner-environment check fails a chapter that leans on the repository tree, and passes one that does not."""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from colab_check import STAMP, _base_stamp, run_chapters  # noqa: E402


def _notebook(folder: Path, name: str, source: str) -> Path:
    path = folder / f"{name}.ipynb"
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, path)
    return path


@pytest.mark.parametrize("source", [
    "import json, pathlib\njson.loads((pathlib.Path('..') / 'mini_medclip' / 'reference_results' / 'chapter_times.json').read_text())",
    "import tools.stamp_release",
    "import benchmarks.chapter_times",
])
def test_a_chapter_that_reads_the_repository_tree_fails(tmp_path, source):
    chapter = _notebook(tmp_path, "leaning", source)
    with pytest.raises(SystemExit, match="1 of 1 chapters failed: leaning"):
        run_chapters(Path(sys.executable), [chapter])


def test_a_chapter_that_needs_only_the_package_passes(tmp_path):
    chapter = _notebook(tmp_path, "alone", "from mini_medclip.notebook import chapter_times, glue\n"
                                           "glue('x', 1, display=False)\nassert chapter_times()['seconds']")
    run_chapters(Path(sys.executable), [chapter])


def _venv(folder: Path, home: str, stamp: str | None) -> Path:
    folder.mkdir()
    (folder / "pyvenv.cfg").write_text(f"home = {home}\ninclude-system-site-packages = false\n")
    if stamp is not None:
        (folder / STAMP).write_text(stamp)
    return folder


def test_the_oldest_end_starts_only_from_a_finished_environment_of_the_same_interpreter(tmp_path):
    interpreter = str(Path(sys.executable).parent / "python")
    same = _venv(tmp_path / "same", str(Path(sys.executable).parent), "digest")
    assert _base_stamp(same, interpreter) == "digest"
    with pytest.raises(SystemExit, match="not a finished environment"):
        _base_stamp(_venv(tmp_path / "unfinished", str(Path(sys.executable).parent), None), interpreter)
    with pytest.raises(SystemExit, match="uses the interpreter in /elsewhere/bin"):
        _base_stamp(_venv(tmp_path / "other", "/elsewhere/bin", "digest"), interpreter)

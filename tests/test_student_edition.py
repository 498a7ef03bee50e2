"""The student edition drops exactly the cells tagged as solutions, and refuses to leak or lose one."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from student_edition import (  # noqa: E402
    INSTRUCTOR_PART, is_solution, student_toc, toc_files, with_glue, without_solutions, write_edition,
)


def _chapter(*cells):
    return nbformat.v4.new_notebook(cells=list(cells))


def _solution(source, markdown=False):
    cell = nbformat.v4.new_markdown_cell(source) if markdown else nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = ["hide-input", "solution"]
    return cell


def test_solution_cells_go_and_everything_else_stays():
    chapter = _chapter(nbformat.v4.new_markdown_cell("## Exercises\n1. Do it."), nbformat.v4.new_code_cell("x = 1"),
                       _solution("# Solution 1\nprint(x)"), _solution("Because x is 1.", markdown=True))
    student = without_solutions(chapter, "ch")
    assert [c.source for c in student.cells] == ["## Exercises\n1. Do it.", "x = 1"]
    assert len(chapter.cells) == 4  # the instructor's notebook is untouched


def test_an_untagged_solution_or_exercises_without_solutions_are_refused():
    leaking = _chapter(nbformat.v4.new_markdown_cell("## Exercises"), _solution("# Solution 1"),
                       nbformat.v4.new_code_cell("# Solution 2\nprint(2)"))
    with pytest.raises(SystemExit, match=r"ch: code cells \[2\] start with '# Solution' but are not tagged 'solution'"):
        without_solutions(leaking, "ch")
    untagged = _chapter(nbformat.v4.new_markdown_cell("## Exercises\n1. Do it."), nbformat.v4.new_code_cell("print(1)"))
    with pytest.raises(SystemExit, match="ch has exercises but no cell tagged 'solution'"):
        without_solutions(untagged, "ch")


def test_the_student_book_has_no_instructor_part_and_every_chapter_keeps_its_exercises(tmp_path):
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    assert INSTRUCTOR_PART in [part["caption"] for part in toc["parts"]]
    assert not any("instructors" in name for name in toc_files(student_toc(toc)))
    handouts = write_edition(tmp_path / "student")
    assert len(handouts) == 9
    for handout in handouts:
        chapter = nbformat.read(handout, as_version=4)
        assert not any(is_solution(cell) for cell in chapter.cells)
        assert all(not cell.get("outputs") for cell in chapter.cells if cell.cell_type == "code")
        instructor = nbformat.read(ROOT / "book" / handout.name, as_version=4)
        solutions = [cell for cell in instructor.cells if is_solution(cell)]
        assert len(chapter.cells) == len(instructor.cells) - len(solutions)
    config = yaml.safe_load((tmp_path / "student" / "_config.yml").read_text())
    assert config["execute"]["execute_notebooks"] == "off" and config["title"].endswith("(student edition)")
    assert (tmp_path / "student" / "book" / "glossary.md").exists() and (tmp_path / "student" / "references.bib").exists()


def test_glued_values_come_back_from_myst_nbs_file_except_a_solutions_own(tmp_path):
    def glued(name, value):
        return {"output_type": "display_data", "data": {"text/plain": repr(value)},
                "metadata": {"scrapbook": {"name": name, "mime_prefix": "application/papermill.record/"}}}

    glue_file = tmp_path / "ch.glue.json"
    glue_file.write_text(json.dumps({"asr": glued("asr", "0.96"), "ba": glued("ba", "0.89"), "answer": glued("answer", "42")}))
    figure = nbformat.v4.new_code_cell("plot()", metadata={"mystnb": {"figure": {"caption": "BA {glue:text}`ba`."}}})
    chapter = _chapter(nbformat.v4.new_markdown_cell("ASR {glue:text}`asr`."), figure)
    restored = with_glue(chapter, glue_file).cells[-1]
    assert "remove-cell" in restored.metadata["tags"]
    assert {o.metadata["scrapbook"]["name"]: o.data for o in restored.outputs} == {
        "asr": {"application/papermill.record/text/plain": "'0.96'"},
        "ba": {"application/papermill.record/text/plain": "'0.89'"},
    }  # "answer" is glued only for a solution that the student edition dropped

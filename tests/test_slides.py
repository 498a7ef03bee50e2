"""The slide decks: one per part of the book, built from executed chapters, glue filled in, nothing from a CDN."""
from __future__ import annotations

import base64
import json
import re
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import slides  # noqa: E402

PNG = base64.b64encode(base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNgAAAAAgABSK+kcQAAAABJRU5ErkJggg==")).decode()
TITLE = """# 1. A chapter

Some opening prose that belongs in the speaker notes.

```{admonition} Learning objectives
:class: tip
After this chapter you can
- state the idea;
- measure it.
```
"""
SECTION = """## The idea

The loss is small when the model is right. It has a {cite}`jin2024backdoor` reference and a value of
{glue:text}`asr` ({numref}`fig-1-curve`).

$$ \\mathcal{L} = -\\log p $$

More prose for the notes.
"""


def executed_chapter(glued: bool = True):
    glue = nbformat.v4.new_code_cell('glue("asr", "0.962", display=False)')
    glue.outputs = [nbformat.v4.new_output("display_data", data={"application/papermill.record/text/plain": "'0.962'"},
                                           metadata={"scrapbook": {"name": "asr", "mime_prefix": "application/papermill.record/"}})] if glued else []
    figure = nbformat.v4.new_code_cell("plt.plot(x)", metadata={"mystnb": {"figure": {"caption": "The curve at {glue:text}`asr`.",
                                                                                        "name": "fig-1-curve"},
                                                                             "image": {"alt": "A rising curve."}}})
    figure.outputs = [nbformat.v4.new_output("display_data", data={"image/png": PNG, "text/plain": "<Figure>"})]
    setup = nbformat.v4.new_code_cell("import secret_setup", metadata={"tags": ["remove-cell"]})
    solution = nbformat.v4.new_code_cell("# Solution 1\nprint('the answer')", metadata={"tags": ["solution"]})
    solution.outputs = [nbformat.v4.new_output("stream", text="THE ANSWER\n")]
    kept = nbformat.v4.new_markdown_cell("A remark the author wants on a slide.", metadata={"tags": ["slide"]})
    return nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell(TITLE), setup, glue, nbformat.v4.new_markdown_cell(SECTION), figure, kept,
        nbformat.v4.new_markdown_cell("Closing words of the section.\n\n## Second section\n\n- a point to make.\n\n"
                                      "## Exercises\n\n1. Do the exercise."), solution,
        nbformat.v4.new_markdown_cell("## References\n\nThe list."),
    ])


@pytest.fixture
def book(tmp_path):
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/00_intro\nparts:\n"
                                       "  - caption: Foundations\n    chapters:\n      - file: book/01_chapter\n"
                                       "  - caption: Back matter\n    chapters:\n      - file: book/glossary\n")
    executed = tmp_path / "_build" / "jupyter_execute" / "book"
    executed.mkdir(parents=True)
    return tmp_path


def build(book, chapter, glue_file: bool = False) -> tuple[int, Path]:
    """Write the executed chapter (with `glue_file`, its glue outputs moved to a .glue.json, as myst-nb does) and build."""
    path = book / "_build" / "jupyter_execute" / "book" / "01_chapter.ipynb"
    if glue_file:
        glue_cell = next(c for c in chapter.cells if c.source.startswith("glue("))
        output = glue_cell.outputs.pop()
        output.data = {k.removeprefix("application/papermill.record/"): v for k, v in output.data.items()}
        path.with_suffix(".glue.json").write_text(json.dumps({"asr": output}))
    nbformat.write(chapter, path)
    out = book / "_build" / "html" / "slides"
    code = slides.main(["--executed", str(book / "_build" / "jupyter_execute"), "--out", str(out),
                        "--toc", str(book / "_toc.yml")])
    return code, out


def test_one_deck_per_part_with_chapters(book):
    code, out = build(book, executed_chapter())
    assert code == 0
    assert sorted(p.name for p in out.glob("*.html")) == ["foundations.html"]  # the back matter has no chapter
    assert (out / "reveal" / "dist" / "reveal.js").is_file() and (out / "reveal" / "plugin" / "notes" / "notes.js").is_file()


@pytest.mark.parametrize("glue_file", [False, True], ids=["glue-in-outputs", "glue-json-of-myst-nb"])
def test_deck_holds_the_chapter_ideas_not_its_code_or_solutions(book, glue_file):
    html = (build(book, executed_chapter(), glue_file)[1] / "foundations.html").read_text()
    assert "state the idea" in html and "measure it" in html  # the objectives on the title slide
    assert "The loss is small when the model is right." in html and "\\mathcal{L}" in html  # lead and equation
    assert "More prose for the notes." in html and 'class="notes"' in html  # the rest as speaker notes
    assert "0.962" in html and "{glue" not in html and "{cite}" not in html and "{numref}" not in html
    assert 'alt="A rising curve."' in html and "The curve at 0.962." in html  # figure, alt text, caption
    assert "A remark the author wants on a slide." in html  # a cell tagged `slide`
    assert "Second section" in html and "a point to make." in html  # a heading inside a cell opens a slide too
    assert "Closing words of the section." in html  # prose that continues a section goes to the notes
    assert "secret_setup" not in html and "plt.plot" not in html  # no code
    assert "THE ANSWER" not in html and "Do the exercise" not in html  # no solutions, no exercises
    assert html.count("<section") >= 5  # part title, chapter title, section, figure, tagged cell


def test_every_script_and_style_is_local(book):
    html = (build(book, executed_chapter())[1] / "foundations.html").read_text()
    sources = re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', html)
    assert sources and not [s for s in sources if re.match(r"(https?:)?//", s)], sources
    assert "../_static/mathjax/tex-mml-chtml.js" in sources and "reveal/dist/reveal.js" in sources


def test_a_missing_glue_value_is_named(book, capsys):
    code, _ = build(book, executed_chapter(glued=False))
    assert code == 1
    assert "glue key 'asr'" in capsys.readouterr().err


def test_a_missing_chapter_says_to_build_the_book(tmp_path, capsys):
    (tmp_path / "_toc.yml").write_text("parts:\n  - caption: Foundations\n    chapters:\n      - file: book/01_chapter\n")
    code = slides.main(["--executed", str(tmp_path / "none"), "--out", str(tmp_path / "out"), "--toc", str(tmp_path / "_toc.yml")])
    assert code == 1
    assert "build the book first" in capsys.readouterr().err

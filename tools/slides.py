"""One reveal.js deck per part of the book, made from the executed chapters with nbconvert's slides exporter.

    python tools/slides.py --executed _build/jupyter_execute --out _build/html/slides

The decks are built from the notebooks the book build executed, so every number and figure is the one
the book shows. Which cells become slides is decided per cell, in this order:

* a cell tagged `no-slide` never does, nor do solutions (`solution`), setup cells (`remove-cell`) and
  the Exercises and References sections;
* a cell tagged `slide` becomes one slide, whole;
* a chapter's title cell becomes its title slide (the heading and the learning objectives);
* a section heading becomes a slide with the heading, the section's display equations and its first
  bullet list (or its first sentence); the section's prose goes to the speaker notes (press `s`);
* a figure becomes a slide with the figure (no code) and its caption.

MyST syntax the exporter does not know is rewritten: glue roles become the glued values, citations and
cross-references become plain text. reveal.js comes from the sphinx-revealjs wheel and MathJax from the
book's own `_static/mathjax` (`sphinx_offline_mathjax.py`), so the decks, like the book, work offline.
"""
from __future__ import annotations

import argparse
import ast
import json
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import yaml
from nbconvert import SlidesExporter

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_DIR = Path(__file__).resolve().parent / "slides_template"
SKIPPED_SECTIONS = ("Exercises", "References", "Solutions")
MAX_LEAD_CHARS = 400  # the first sentence of a section, cut at this length


@dataclass
class Deck:
    title: str
    chapters: list[Path] = field(default_factory=list)  # source paths relative to the root, no suffix


def parts_of_book(toc_path: Path) -> list[Deck]:
    """The parts of `_toc.yml` that hold chapters (`book/NN_*`), in order; other parts have no deck."""
    toc = yaml.safe_load(toc_path.read_text())
    decks = []
    for part in toc.get("parts", []):
        files = [Path(entry["file"]) for entry in part.get("chapters", [])]
        chapters = [f for f in files if re.match(r"\d\d_", f.name)]
        if chapters:
            decks.append(Deck(part["caption"], chapters))
    return decks


def glued_values(nb, glue_file: Path | None = None) -> dict[str, str]:
    """name -> text of every `glue(name, value)` of an executed chapter.

    myst-nb moves the glued outputs out of the notebook it writes, into `<chapter>.glue.json` beside it;
    a notebook executed elsewhere still holds them as outputs marked `scrapbook`. Both are read.
    """
    outputs = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            name = output.get("metadata", {}).get("scrapbook", {}).get("name")
            if name is not None:
                outputs[name] = output
    if glue_file is not None and glue_file.exists():
        outputs.update(json.loads(glue_file.read_text()))
    values = {}
    for name, output in outputs.items():
        text = next((v for k, v in output.get("data", {}).items() if k.endswith("text/plain")), None)
        if text is not None:
            try:
                text = str(ast.literal_eval(text))  # a string glued as its repr: '0.95'
            except (ValueError, SyntaxError):
                pass
            values[name] = text
    return values


def plain_markdown(text: str, glue: dict[str, str], source: Path) -> str:
    """MyST markdown as plain markdown: glued values in, roles and directives' fences out."""
    def glued(match):
        name = match.group(2)
        if name not in glue:
            raise ValueError(f"{source}: glue key {name!r} is used in the text but was not glued in the executed "
                             f"notebook; build the book first (make book)")
        return glue[name]

    text = re.sub(r"\{glue(:text)?\}`([^`]+)`", glued, text)
    text = re.sub(r"\{cite(:[pt])?\}`([^`]+)`", lambda m: "[" + m.group(2).replace(",", ", ") + "]", text)
    text = re.sub(r"\{numref\}`[^`]*`", "the figure", text)
    text = re.sub(r"\{(doc|ref|term)\}`([^`<]*?)\s*(<[^>]*>)?`", lambda m: m.group(2) or m.group(3)[1:-1], text)
    text = re.sub(r"^\(([\w-]+)\)=\s*$", "", text, flags=re.M)  # MyST targets
    text = re.sub(r"^```\{[\w-]+\}[^\n]*\n(:[\w-]+:[^\n]*\n)*", "", text, flags=re.M)  # directive openings
    text = re.sub(r"^```\s*$", "", text, flags=re.M)
    return text.strip()


def _blocks(text: str) -> list[str]:
    return [b.strip() for b in re.split(r"\n\s*\n", text) if b.strip()]


def section_slide(text: str) -> tuple[str, str]:
    """(slide, notes) of a markdown cell that opens with a heading."""
    heading, _, body = text.partition("\n")
    blocks = _blocks(body)
    shown = [b for b in blocks if b.startswith("$$")]
    bullets = next((b for b in blocks if b.startswith(("- ", "* ", "1. "))), None)
    if bullets:
        shown.insert(0, bullets)
    elif blocks and not blocks[0].startswith("$$"):
        first = re.split(r"(?<=[.!?:])\s", blocks[0].replace("\n", " "), maxsplit=1)[0]
        shown.insert(0, first if len(first) <= MAX_LEAD_CHARS else first[:MAX_LEAD_CHARS].rsplit(" ", 1)[0] + " ...")
    notes = "\n\n".join(b for b in blocks if b not in shown)
    return "\n\n".join([heading.replace("# ", "## ", 1) if heading.startswith("# ") else heading, *shown]), notes


def title_slide(text: str) -> tuple[str, str]:
    """(slide, notes) of a chapter's first cell: its title and the learning objectives, the rest as notes."""
    heading, _, body = text.partition("\n")
    objectives = re.search(r"After this chapter you can\s*\n((?:[-*] .*\n?(?:  .*\n?)*)+)", body)
    slide = heading + ("\n\nAfter this chapter you can\n\n" + objectives.group(1).strip() if objectives else "")
    return slide, "\n\n".join(_blocks(body))


def _markdown(source: str, slide_type: str):
    return nbformat.v4.new_markdown_cell(source, metadata={"slideshow": {"slide_type": slide_type}})


def _markdown_slides(text: str, in_skipped: bool, first: bool) -> tuple[list, bool]:
    """Slide cells of one markdown cell, cut at its headings; and whether it ends inside a skipped section."""
    cells = []
    for chunk in re.split(r"\n(?=#{1,2} )", text.strip()):
        if chunk.startswith("## "):
            in_skipped = chunk.splitlines()[0][3:].strip() in SKIPPED_SECTIONS
        if in_skipped:
            continue
        if first and chunk.startswith("# "):
            slide, notes = title_slide(chunk)
        elif chunk.startswith("## "):
            slide, notes = section_slide(chunk)
        else:  # prose that continues a section: the speaker's notes
            slide, notes = None, chunk
        if slide:
            cells.append(_markdown(slide, "slide"))
        if notes:
            cells.append(_markdown(notes, "notes"))
    return cells, in_skipped


def chapter_slides(nb, source: Path, glue_file: Path | None = None) -> list:
    """The slide cells of one executed chapter (its glue values also from `glue_file`, myst-nb's)."""
    glue = glued_values(nb, glue_file)
    cells, in_skipped = [], False
    for index, cell in enumerate(nb.cells):
        tags = set(cell.metadata.get("tags", []))
        if tags & {"no-slide", "solution", "remove-cell"}:
            continue
        if cell.cell_type == "markdown":
            text = plain_markdown(cell.source, glue, source)
            if "slide" in tags:
                cells.append(_markdown(text, "slide"))
            else:
                slides, in_skipped = _markdown_slides(text, in_skipped, first=index == 0)
                cells += slides
        elif cell.cell_type == "code" and not in_skipped:
            figure = cell.metadata.get("mystnb", {}).get("figure")
            images = [o for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
            if "slide" not in tags and not (figure and images):
                continue
            slide = nbformat.v4.new_code_cell(cell.source, metadata={"slideshow": {"slide_type": "slide"},
                                                                       "tags": ["remove-input"]})
            slide.outputs = images if figure else cell.outputs
            alt = cell.metadata.get("mystnb", {}).get("image", {}).get("alt")
            for output in images if alt else []:
                output.metadata["alt"] = alt
            cells.append(slide)
            if figure and figure.get("caption"):
                cells.append(_markdown(plain_markdown(figure["caption"], glue, source), "-"))
    return cells


def build_deck(deck: Deck, executed: Path, out: Path) -> Path:
    """Write `out/<part>.html`; its reveal.js is `out/reveal`, its MathJax the book's `_static/mathjax`."""
    cells = [_markdown(f"# {deck.title}\n\nmini-MedCLIP: build it, then break it", "slide")]
    for chapter in deck.chapters:
        path = executed / chapter.with_suffix(".ipynb")
        if not path.exists():
            raise FileNotFoundError(f"{path}: no executed notebook for chapter {chapter}; build the book first (make book)")
        cells += chapter_slides(nbformat.read(path, as_version=4), chapter, path.with_suffix(".glue.json"))
    nb = nbformat.v4.new_notebook(cells=cells, metadata={"title": f"{deck.title}: mini-MedCLIP"})
    exporter = SlidesExporter(template_name="mini_medclip_reveal", extra_template_basedirs=[str(TEMPLATE_DIR)],
                              exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    exporter.reveal_url_prefix = "reveal"
    exporter.reveal_theme = "white"  # its fonts ship with reveal.js ("simple", nbconvert's default, loads Google's)
    exporter.mathjax_url = "../_static/mathjax/tex-mml-chtml.js"
    html, _ = exporter.from_notebook_node(nb)
    name = re.sub(r"[^a-z0-9]+", "-", deck.title.lower()).strip("-")
    target = out / f"{name}.html"
    target.write_text(html)
    return target


def copy_reveal(out: Path) -> None:
    """reveal.js's dist folder and notes plugin, from the sphinx-revealjs wheel (no CDN)."""
    import sphinx_revealjs

    source = Path(sphinx_revealjs.__file__).parent / "_static" / "revealjs"
    shutil.copytree(source / "dist", out / "reveal" / "dist", dirs_exist_ok=True)
    (out / "reveal" / "plugin" / "notes").mkdir(parents=True, exist_ok=True)
    shutil.copy2(source / "plugin" / "notes" / "notes.js", out / "reveal" / "plugin" / "notes" / "notes.js")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executed", type=Path, default=ROOT / "_build" / "jupyter_execute",
                        help="the executed notebooks of the book build")
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "html" / "slides")
    parser.add_argument("--toc", type=Path, default=ROOT / "_toc.yml")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    copy_reveal(args.out)
    try:
        for deck in parts_of_book(args.toc):
            path = build_deck(deck, args.executed, args.out)
            print(f"{path}: {deck.title} ({len(deck.chapters)} chapters)")
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

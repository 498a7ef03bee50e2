"""The student edition: the course without its solutions, as notebooks to hand out and as a book.

    python tools/student_edition.py --out .cache/student [--executed _build/jupyter_execute]

A solution is any cell tagged `solution` (the code that answers an exercise and the prose that discusses
it); the instructor edition, the main book, shows those cells folded. This writes into OUT:

- `notebooks/`: every chapter of `_toc.yml` without its solution cells and without outputs, the files a
  student opens in Colab or Jupyter;
- a book: the same chapters, again without solutions, taken from the executed notebooks of the
  instructor build when `--executed` names them (their outputs hold the figures and the numbers the prose
  glues in, put back from myst-nb's `.glue.json` files), the back matter, and a table of contents without
  the "For instructors" part. Build it with
  `jupyter-book build OUT -W`: its configuration does not execute anything.

It refuses a chapter whose exercises have no tagged solution, and a solution left untagged (a code cell
that starts with "# Solution"), so that the student edition can neither lose its solutions silently nor
leak one.
"""
from __future__ import annotations

import argparse
import copy
import json
import shutil
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
SOLUTION_TAG = "solution"
INSTRUCTOR_PART = "For instructors"


def is_solution(cell) -> bool:
    return SOLUTION_TAG in cell.get("metadata", {}).get("tags", [])


def without_solutions(notebook, name: str):
    """A copy of `notebook` without its solution cells; refuses untagged solutions and exercises without any."""
    untagged = [i for i, cell in enumerate(notebook.cells)
                if cell.cell_type == "code" and cell.source.lstrip().startswith("# Solution") and not is_solution(cell)]
    if untagged:
        raise SystemExit(f"student edition: {name}: code cells {untagged} start with '# Solution' but are not tagged "
                         f"{SOLUTION_TAG!r}; tag them, or the student edition would show them")
    has_exercises = any(cell.cell_type == "markdown" and "## Exercises" in cell.source for cell in notebook.cells)
    if has_exercises and not any(is_solution(cell) for cell in notebook.cells):
        raise SystemExit(f"student edition: {name} has exercises but no cell tagged {SOLUTION_TAG!r}; "
                         f"tag the cells of their solutions")
    stripped = copy.deepcopy(notebook)
    stripped.cells = [cell for cell in notebook.cells if not is_solution(cell)]
    return stripped


def clear_outputs(notebook):
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return notebook


def with_glue(notebook, glue_file: Path):
    """`notebook` with the glued values its text uses put back, in one hidden cell at its end.

    myst-nb takes the glued outputs out of the notebooks it writes (into `<chapter>.glue.json`); the student
    book does not execute, so without them its `{glue}` roles would name nothing. Values glued only by a
    solution stay out, as the solution does.
    """
    if not glue_file.exists():
        return notebook
    text = "\n".join(cell.source if cell.cell_type == "markdown" else json.dumps(cell.metadata)  # prose, captions
                     for cell in notebook.cells)
    outputs = []
    for name, output in json.loads(glue_file.read_text()).items():
        if f"`{name}`" not in text:
            continue
        prefix = output["metadata"]["scrapbook"].get("mime_prefix", "")
        outputs.append(nbformat.v4.new_output("display_data", data={prefix + k: v for k, v in output["data"].items()},
                                              metadata=output["metadata"]))
    if outputs:
        cell = nbformat.v4.new_code_cell("# the values the text glues in (from the instructor build)",
                                         metadata={"tags": ["remove-cell"]})
        cell.outputs = outputs
        notebook.cells.append(cell)
    return notebook


def toc_files(toc: dict) -> list[str]:
    """Every file the table of contents names, root first, in reading order."""
    files = [toc["root"]]

    def walk(entries):
        for entry in entries:
            files.append(entry["file"])
            walk(entry.get("sections", []))

    for part in toc.get("parts", []):
        walk(part["chapters"])
    return files


def student_toc(toc: dict) -> dict:
    toc = copy.deepcopy(toc)
    toc["parts"] = [part for part in toc["parts"] if part["caption"] != INSTRUCTOR_PART]
    return toc


def student_config(config: dict) -> dict:
    config = copy.deepcopy(config)
    config["title"] = f"{config['title']} (student edition)"
    config["execute"] = {**config.get("execute", {}), "execute_notebooks": "off"}
    extensions = config.get("sphinx", {}).get("local_extensions") or {}
    for name, folder in extensions.items():  # the edition is built elsewhere: point at this repository's tools
        extensions[name] = str(ROOT / folder)
    return config


def write_edition(out: Path, executed: Path | None = None) -> list[Path]:
    """Write the notebooks and the book sources of the student edition into `out`; returns the notebooks."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    shutil.rmtree(out, ignore_errors=True)
    (out / "notebooks").mkdir(parents=True)
    toc = student_toc(toc)
    handouts = []
    for name in toc_files(toc):
        source = ROOT / f"{name}.ipynb"
        if not source.exists():
            page = ROOT / f"{name}.md"
            (out / page.relative_to(ROOT)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(page, out / page.relative_to(ROOT))
            continue
        chapter = without_solutions(nbformat.read(source, as_version=4), name)
        handout = out / "notebooks" / source.name
        nbformat.write(clear_outputs(copy.deepcopy(chapter)), handout)
        handouts.append(handout)
        page = chapter
        if executed is not None:
            ran = executed / source.relative_to(ROOT)
            if not ran.exists():
                raise SystemExit(f"student edition: no executed notebook {ran}; build the book first (make book)")
            page = with_glue(without_solutions(nbformat.read(ran, as_version=4), name), ran.with_suffix(".glue.json"))
        (out / source.relative_to(ROOT)).parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(page, out / source.relative_to(ROOT))
    for name in config.get("bibtex_bibfiles", []):
        shutil.copy(ROOT / name, out / name)
    (out / "_toc.yml").write_text(yaml.safe_dump(toc, sort_keys=False))
    (out / "_config.yml").write_text(yaml.safe_dump(student_config(config), sort_keys=False))
    return handouts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write the student edition into (replaced)")
    parser.add_argument("--executed", type=Path, help="the instructor build's executed notebooks (_build/jupyter_execute)")
    args = parser.parse_args()
    handouts = write_edition(args.out.resolve(), args.executed.resolve() if args.executed else None)
    print(f"student edition: {len(handouts)} notebooks in {args.out / 'notebooks'}, book sources in {args.out}")


if __name__ == "__main__":
    main()

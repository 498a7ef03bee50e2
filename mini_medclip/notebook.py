"""What a chapter needs from the place it runs in, so that it runs from the installed package alone.

In the book build myst-nb is installed and `glue` stores values for the prose. In Colab, under nbval or
in plain Jupyter there is no myst-nb; `glue` then only shows the value when asked to, as myst-nb would.
"""
from __future__ import annotations

import json
from importlib import resources

try:
    from myst_nb import glue
except ImportError:  # not a book build
    def glue(name: str, variable, display: bool = True) -> None:
        """Stand-in for `myst_nb.glue`: nothing to glue into outside the book, so show the value or do nothing."""
        if display:
            from IPython.display import display as show

            show(variable)

CHAPTER_TIMES = "chapter_times.json"


def chapter_times() -> dict:
    """The per-chapter timing record that `benchmarks/chapter_times.py` measured for this release."""
    return json.loads(resources.files("mini_medclip").joinpath("reference_results", CHAPTER_TIMES).read_text())

"""Serve MathJax from the built book itself, so that its math renders offline (Sphinx's default is a CDN).

The files come from the PyPI package django-static-mathjax: MathJax 3.2.2's npm release as package data,
with no dependencies (Django is not needed). Registered in _config.yml under `sphinx: local_extensions`.
"""
import shutil
from pathlib import Path

import mathjax

SOURCE = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
ENTRY = "tex-mml-chtml.js"  # the component Sphinx's own CDN default names
# What that component loads on demand: TeX extensions (autoload), CHTML fonts, and what the menu's
# accessibility items load. The other components and the SVG output stay out (7 MB copied instead of 24 MB).
ON_DEMAND = ["input/tex/extensions", "output/chtml/fonts", "a11y", "sre"]


def use_local_mathjax(app, config):
    config.mathjax_path = f"mathjax/{ENTRY}"  # relative paths are taken from _static/


def copy_mathjax(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    target = Path(app.outdir) / "_static" / "mathjax"
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(SOURCE / ENTRY, target / ENTRY)
    for part in ON_DEMAND:
        shutil.copytree(SOURCE / part, target / part, dirs_exist_ok=True)


def setup(app):
    app.connect("config-inited", use_local_mathjax)
    app.connect("build-finished", copy_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

"""The browser check passes a clean hand-written site and names every planted fault of a broken one.

It needs Debian's Chromium and the playwright package, which `make browser` (part of `make test`) installs.
"""
from __future__ import annotations

import base64
import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from browser_check import CHROMIUM, book_pages, check_book  # noqa: E402

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists() or importlib.util.find_spec("playwright") is None,
    reason=f"needs {CHROMIUM} (apt-get install chromium) and playwright (requirements.txt); make unit installs both")

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNgAAAAAgABSK+kcQAAAABJRU5ErkJggg==")  # 1x1
# Sphinx's search page in miniature: a summary line when done, results as list items; it knows one word.
SEARCH = """<div id="search-results"></div><script>
const found = new URLSearchParams(location.search).get('q') === 'needle' ? '<li>found</li>' : '';
document.getElementById('search-results').innerHTML =
  `<p class="search-summary">done</p><ul class="search">${found}</ul>`;
</script>"""


def _page(body, head=""):
    """A page whose content area (the <article>, as in sphinx-book-theme) holds body."""
    return f"<!DOCTYPE html><html><head><meta charset='utf-8'>{head}</head><body><article>{body}</article></body></html>"


def _site(folder, pages):
    folder.mkdir()
    (folder / "dot.png").write_bytes(PNG)
    (folder / "search.html").write_text(_page(SEARCH))
    for name, html in pages.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(html)
    return folder


@pytest.fixture
def clean(tmp_path):
    """Two pages that link each other, a figure with alt text, and math typeset by the book's own MathJax."""
    from sphinx_offline_mathjax import ENTRY, copy_mathjax

    site = _site(tmp_path / "clean", {
        "index.html": _page('<img src="dot.png" alt="a dot"><a href="book/ch.html#eq">the equation</a>'
                            '<a href="https://example.org/">outside links are not followed</a>'),
        "book/ch.html": _page('<p id="eq">Loss <span class="math">\\(k + 1\\)</span></p><a href="../index.html">back</a>',
                              head=f'<script defer src="../_static/mathjax/{ENTRY}"></script>'),
    })
    copy_mathjax(SimpleNamespace(outdir=str(site), builder=SimpleNamespace(format="html")), None)
    return site


def test_a_clean_site_passes_and_leaves_screenshots(clean, tmp_path):
    shots = tmp_path / "shots"
    assert check_book(clean, shots, search="needle", math_pages=("book/ch*.html",)) == []
    assert sorted(p.name for p in shots.iterdir()) == ["book_ch.png", "index.png"]
    assert book_pages(clean) == ["book/ch.html", "index.html"]  # _static/ and search.html are not book pages


def test_every_planted_fault_is_one_line_naming_its_page(tmp_path):
    site = _site(tmp_path / "broken", {
        "index.html": _page('<img src="dot.png" alt="dot.png"><img src="gone.png">'
                            '<img src="https://example.org/remote.png" alt="remote">'
                            '<a href="missing.html">dead</a><a href="other.html#nowhere">no anchor</a>'
                            '<p>Raw $$x^2$$ and <span class="math">\\(k\\)</span></p>'
                            '<script>console.error("boom")</script>'),
        "other.html": _page('<h1 id="top">Other</h1><script>undefinedFunction()</script>'),
    })
    problems = check_book(site, tmp_path / "shots", search="absent", math_pages=("other.html", "nomath*.html"))
    for expected in [
        "index.html: image dot.png has no alt text",
        "index.html: image gone.png has no alt text",
        "index.html: image gone.png did not load",
        "index.html: HTTP 404 for http://127.0.0.1",
        "index.html: network request to https://example.org/remote.png",
        "index.html: broken link missing.html: no such file",
        "index.html: broken link other.html#nowhere: no #nowhere there",
        "index.html: raw TeX in the text: Raw $$x^2$$ and",
        "index.html: math not rendered: \\(k\\)",
        "index.html: console error: boom",
        "other.html: script error: undefinedFunction is not defined",
        "other.html: no math rendered (no MathJax output)",
        "nomath*.html: no such page, so no math to check",
        "search.html?q=absent: searching for 'absent' showed no results",
    ]:
        assert any(p.startswith(expected) for p in problems), f"{expected!r} not in {problems}"
    assert all(": " in p for p in problems)

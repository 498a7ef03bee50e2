"""Open every page of the built HTML book in headless Chromium and check what a reader would see.

The book build (-W -n) checks the sources; only a browser shows that pages load without script errors or
network use, that figures load with alt text, that links and citations land, that search finds things and
that math renders offline. Each problem is one line, `page: problem`; the exit status is 1 if there is any.
A screenshot of each page's first screen goes to --out, for a person to look at.

Usage: python tools/browser_check.py _build/html [--out _build/browser] [--search BadMatch]
Needs the `playwright` package (its driver only: no browser download) and Debian's /usr/bin/chromium.
"""
import argparse
import functools
import http.server
import sys
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

CHROMIUM = "/usr/bin/chromium"
# What the probe of this machine type found that Debian's Chromium needs headless, besides Playwright's own.
CHROMIUM_ARGS = ["--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
IMAGES = "article img, .reveal img"  # sphinx-book-theme's content area (article.bd-article), a deck's slides
SEARCH_RESULTS = "#search-results ul.search li"
SEARCH_DONE = "() => document.querySelector('#search-results .search-summary')?.textContent.trim()"
MATH_PAGES = ("book/03_*.html",)  # chapter 3's display equations must render

# Images in the content area, made to load now (not lazily) so that naturalWidth tells.
IMAGES_JS = """async (selector) => {
  const images = [...document.querySelectorAll(selector)];
  await Promise.all(images.map(i => { i.loading = 'eager'; return i.decode().catch(() => {}); }));
  return images.map(i => ({src: i.getAttribute('src'), alt: (i.getAttribute('alt') || '').trim(),
                           width: i.naturalWidth}));
}"""
# Sphinx's math elements that MathJax left untypeset, and TeX delimiters left in prose (outside code).
MATH_JS = r"""async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
  const math = [...document.querySelectorAll('.math')];
  const untypeset = math.filter(m => !m.querySelector('mjx-container')).map(m => m.textContent.trim());
  const skip = 'pre, code, script, style, mjx-container, .math, .highlight';
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const raw = [];
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (/\\\(|\\\[|\$\$/.test(n.textContent) && !n.parentElement.closest(skip)) raw.push(n.textContent.trim());
  }
  return {typeset: document.querySelectorAll('mjx-container').length, untypeset, raw};
}"""


class _Ids(HTMLParser):
    """The fragment targets of one HTML file: every id, and the names of <a name=...>."""

    def __init__(self):
        super().__init__()
        self.ids = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.ids.update(v for k, v in attrs.items() if k == "id" or (tag == "a" and k == "name"))


@functools.lru_cache(maxsize=None)
def fragment_targets(path):
    parser = _Ids()
    parser.feed(Path(path).read_text(encoding="utf-8", errors="replace"))
    return frozenset(parser.ids)


def serve(root):
    """A quiet HTTP server for root on a free loopback port, in a daemon thread (pages need http://)."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def book_pages(root):
    """Every HTML page, less Sphinx's own folders (_static, _sources, ...) and the search page (checked apart)."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.html")
                  if not any(part.startswith("_") for part in p.relative_to(root).parts)
                  and p.name != "search.html")


def link_problem(root, base, href):
    """Why an internal link does not resolve, or None: its file must exist and hold its #fragment."""
    url = urlsplit(href)
    if url.scheme not in ("http", "https") or url.netloc != base.netloc:
        return None
    path = root / unquote(url.path).lstrip("/")
    if path.is_dir():
        path = path / "index.html"
    if not path.is_file():
        return f"broken link {href_label(href, base)}: no such file"
    fragment = unquote(url.fragment)
    if fragment.startswith("/"):  # a reveal.js deck's route to a slide (#/3), not an element id
        return None
    if fragment and path.suffix == ".html" and fragment not in fragment_targets(path):
        return f"broken link {href_label(href, base)}: no #{fragment} there"
    return None


def local(url):
    """Whether loading url stays on this machine (the book's server, or data inside the page)."""
    return url.startswith(("data:", "blob:")) or urlsplit(url).hostname in LOOPBACK


def href_label(href, base):
    return href.removeprefix(f"{base.scheme}://{base.netloc}/")


class Checker:
    """One browser, one page at a time; problems collect in self.problems as `page: problem` lines."""

    def __init__(self, browser, root, base_url, out):
        self.root, self.base_url, self.out = root, base_url, out
        self.context = browser.new_context(viewport={"width": 1280, "height": 800})
        self.context.route("**/*", self._only_loopback)
        self.problems = []
        self.current = None

    def report(self, problem):
        self.problems.append(f"{self.current}: {problem}")

    def _only_loopback(self, route):
        if local(route.request.url):
            route.continue_()
        else:
            self.report(f"network request to {route.request.url}")
            route.abort()

    def _console(self, message):
        # A failed load is reported with its URL by the request handlers; the console line has none.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.report(f"console error: {message.text}")

    def _watch(self, page):
        page.on("console", self._console)
        page.on("pageerror", lambda e: self.report(f"script error: {e}"))
        page.on("response", lambda r: r.status >= 400 and self.report(f"HTTP {r.status} for {r.url}"))
        page.on("requestfailed", lambda r: local(r.url) and self.report(f"request failed: {r.url} ({r.failure})"))

    def open(self, name, query=""):
        self.current = name + query
        page = self.context.new_page()
        self._watch(page)
        page.goto(f"{self.base_url}/{quote(name)}{query}", wait_until="networkidle")
        return page

    def check_page(self, name):
        page = self.open(name)
        for image in page.evaluate(IMAGES_JS, IMAGES):
            if image["alt"] in ("", image["src"]):  # docutils writes the file name when a figure has no alt
                self.report(f"image {image['src']} has no alt text")
            if image["width"] == 0:
                self.report(f"image {image['src']} did not load")
        base = urlsplit(self.base_url)
        for href in sorted(set(page.eval_on_selector_all("a[href]", "links => links.map(a => a.href)"))):
            problem = link_problem(self.root, base, href)
            if problem:
                self.report(problem)
        math = page.evaluate(MATH_JS)
        for text in math["untypeset"]:
            self.report(f"math not rendered: {text[:60]}")
        for text in math["raw"]:
            self.report(f"raw TeX in the text: {text[:60]}")
        self.out.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=self.out / (name.removesuffix(".html").replace("/", "_") + ".png"))
        page.close()
        return math["typeset"]

    def check_math_pages(self, patterns, typeset):
        """Each pattern must name pages, and MathJax must have typeset math on each (typeset: counts by page)."""
        for pattern in patterns:
            matched = [name for name in typeset if Path(name).match(pattern)]
            self.current = pattern
            if not matched:
                self.report("no such page, so no math to check")
            for name in matched:
                self.current = name
                if typeset[name] == 0:
                    self.report("no math rendered (no MathJax output)")

    def check_search(self, term):
        page = self.open("search.html", f"?q={quote(term)}")
        try:  # Sphinx's search writes its summary line when it has finished
            page.wait_for_function(SEARCH_DONE, timeout=20_000)
        except Exception:  # playwright's TimeoutError, whose import path differs between versions
            self.report(f"searching for {term!r} did not finish in 20 s")
        else:
            if page.locator(SEARCH_RESULTS).count() == 0:
                self.report(f"searching for {term!r} showed no results")
        page.close()


def check_book(root, out, search="BadMatch", math_pages=MATH_PAGES):
    """All problems of the book in root (a built _build/html), as `page: problem` lines."""
    from playwright.sync_api import sync_playwright

    root = Path(root).resolve()
    server = serve(root)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            checker = Checker(browser, root, f"http://127.0.0.1:{server.server_port}", Path(out))
            typeset = {name: checker.check_page(name) for name in book_pages(root)}
            if not typeset:
                checker.current = root
                checker.report("no HTML pages")
            checker.check_math_pages(math_pages, typeset)
            checker.check_search(search)
            browser.close()
    finally:
        server.shutdown()
    return checker.problems


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("html", type=Path, help="the built book, e.g. _build/html")
    parser.add_argument("--out", type=Path, default=Path("_build/browser"), help="where screenshots go")
    parser.add_argument("--search", default="BadMatch", help="a term the search page must find")
    parser.add_argument("--math-page", action="append", dest="math_pages",
                        help=f"a page (glob) whose math must render (default: {' '.join(MATH_PAGES)})")
    args = parser.parse_args(argv)
    if not args.html.is_dir():
        parser.error(f"{args.html} is not a folder: build the book first (make book)")
    problems = check_book(args.html, args.out, args.search, args.math_pages or MATH_PAGES)
    for problem in problems:
        print(problem)
    pages = len(book_pages(args.html.resolve()))
    print(f"browser check: {pages} pages, {len(problems)} problems; screenshots in {args.out}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

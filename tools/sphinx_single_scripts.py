"""Write each inline script of a page once: Sphinx 7.4 writes some twice, a script error in every page.

Inline scripts that extensions add after the builder starts (sphinx-thebe's `const THEBE_JS_URL = ...`,
sphinx-togglebutton's selector) are kept with filename None, and Sphinx's prepare_writing adds them again
from its registry with filename '' (sphinx/builders/html/__init__.py), which its duplicate test does not
match. The second `const` declaration then fails in the browser ("Identifier 'THEBE_JS_URL' has already
been declared"). Jupyter Book 1 pins sphinx~=7.0; registered in _config.yml under `local_extensions`.
"""


def drop_repeated_scripts(app, pagename, templatename, context, doctree):
    seen, unique = set(), []
    for script in context["script_files"]:
        key = (script.filename or "", script.priority, tuple(sorted(script.attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"][:] = unique


def setup(app):
    app.connect("html-page-context", drop_repeated_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

"""The release a chapter's setup cell installs: its version and repository, kept here and nowhere else.

`tools/stamp_release.py` copies them into every chapter's setup cell and into `_config.yml`;
`tests/test_release.py` fails when a copy has drifted.
"""
from __future__ import annotations

VERSION = "0.1.0"
REPOSITORY = "https://github.com/mini-medclip/mini-medclip"

SETUP_CELL_TAG = "remove-cell"


def install_specs() -> tuple[str, str]:
    """What pip installs: the pinned release by name, then the same tag from the repository as a fallback."""
    return f"mini-medclip=={VERSION}", f"mini-medclip @ git+{REPOSITORY}@v{VERSION}"


def setup_cell_source() -> str:
    """The first code cell of every chapter: install the package where it is missing, otherwise do nothing."""
    release, fallback = install_specs()
    return f'''# Setup: install the course package where it is missing (Colab, a fresh runtime); elsewhere this does nothing.
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("mini_medclip") is None:
    for spec in ("{release}", "{fallback}"):
        if subprocess.run([sys.executable, "-m", "pip", "install", "-q", spec]).returncode == 0:
            break
    else:
        raise RuntimeError("could not install mini-medclip {VERSION} from PyPI or from {REPOSITORY}")'''

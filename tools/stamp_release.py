"""Copy the release in `mini_medclip/release.py` into every chapter's setup cell and into `_config.yml`.

    python tools/stamp_release.py          # rewrite the copies
    python tools/stamp_release.py --check  # exit 1 and name every copy that has drifted

Run it after changing the version or the repository; `tests/test_release.py` runs the check.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from mini_medclip.release import REPOSITORY, SETUP_CELL_TAG, setup_cell_source  # noqa: E402

CONFIG_URL = re.compile(r"^(  url: ).*$", re.MULTILINE)


def chapters() -> list[Path]:
    return sorted((ROOT / "book").glob("*.ipynb"))


def source_lines(text: str) -> list[str]:
    lines = text.split("\n")
    return [line + "\n" for line in lines[:-1]] + [lines[-1]]


def stamped_notebook(path: Path) -> str:
    notebook = json.loads(path.read_text())
    first = next(cell for cell in notebook["cells"] if cell["cell_type"] == "code")
    first["source"] = source_lines(setup_cell_source())
    first["metadata"]["tags"] = sorted(set(first["metadata"].get("tags", [])) | {SETUP_CELL_TAG})
    return json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"


def stamped_config(path: Path) -> str:
    return CONFIG_URL.sub(lambda m: m.group(1) + REPOSITORY, path.read_text(), count=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report drifted copies instead of rewriting them")
    args = parser.parse_args()
    targets = {path: stamped_notebook(path) for path in chapters()}
    targets[ROOT / "_config.yml"] = stamped_config(ROOT / "_config.yml")
    drifted = [path for path, text in targets.items() if path.read_text() != text]
    if args.check:
        for path in drifted:
            print(f"{path.relative_to(ROOT)} does not carry the release of mini_medclip/release.py; "
                  "run python tools/stamp_release.py")
        return 1 if drifted else 0
    for path in drifted:
        path.write_text(targets[path])
        print(f"stamped {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

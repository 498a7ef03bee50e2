"""Execute every chapter notebook in order, cold or warm cache, and record seconds per chapter.

    python benchmarks/chapter_times.py [--cold]

Writes mini_medclip/reference_results/chapter_times.json (shipped in the wheel), which the introduction
chapter shows as its timing table.
`--cold` points the model cache at an empty folder first, as on a fresh clone.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import nbformat
import torch
import yaml
from nbclient import NotebookClient

from mini_medclip.notebook import CHAPTER_TIMES

ROOT = Path(__file__).resolve().parents[1]


def chapters() -> list[Path]:
    """The notebooks of `_toc.yml`, in reading order."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [c["file"] for part in toc.get("parts", []) for c in part["chapters"]]
    return [ROOT / f"{f}.ipynb" for f in files if (ROOT / f"{f}.ipynb").exists()]


def run(path: Path) -> float:
    notebook = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(notebook, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", action="store_true", help="start from an empty model cache")
    parser.add_argument("--out", type=Path, default=ROOT / "mini_medclip" / "reference_results" / CHAPTER_TIMES,
                        help="where to write the record (default: the one the introduction shows)")
    args = parser.parse_args()
    if args.cold:
        os.environ["MINI_MEDCLIP_CACHE"] = tempfile.mkdtemp(prefix="mini_medclip_cold_")
    seconds = {}
    for path in chapters():
        seconds[path.stem] = round(run(path), 1)
        print(f"{path.stem:>24s}: {seconds[path.stem]:7.1f} s", flush=True)
    record = {
        "cache": "cold" if args.cold else "warm",
        "cpu_cores": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.is_available(),
        "seconds": seconds,
    }
    args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()

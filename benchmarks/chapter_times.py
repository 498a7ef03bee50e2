"""Execute every chapter in book order the way a learner does, and record seconds per chapter.

    python benchmarks/chapter_times.py [--cold]

Runs `tools/colab_check.py` (each chapter alone, from the wheel, in the learner environment `.venv-colab`)
and writes mini_medclip/reference_results/chapter_times.json (shipped in the wheel), which the
introduction chapter shows as its timing table. `--cold` points the model cache at an empty folder first,
as on a fresh clone; `make test` writes the same record for its own cold run to .cache/chapter_times.json.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", action="store_true", help="start from an empty model cache")
    parser.add_argument("--out", type=Path, default=ROOT / "mini_medclip" / "reference_results" / "chapter_times.json",
                        help="where to write the record (default: the one the introduction shows)")
    parser.add_argument("--python", default="python3.12", help="the learner environment's interpreter")
    args = parser.parse_args()
    env = dict(os.environ)
    if args.cold:
        env["MINI_MEDCLIP_CACHE"] = tempfile.mkdtemp(prefix="mini_medclip_cold_")
    subprocess.run([sys.executable, str(ROOT / "tools" / "colab_check.py"), "--venv", str(ROOT / ".venv-colab"),
                    "--python", args.python, "--record", str(args.out.resolve())], check=True, env=env, cwd=ROOT)


if __name__ == "__main__":
    main()

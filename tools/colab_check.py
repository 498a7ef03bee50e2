"""Run the chapters the way a learner's fresh runtime does: from the built wheel alone, one notebook at a time.

    python tools/colab_check.py --venv .venv-colab --python python3.12 [--wheel FILE]
    python tools/colab_check.py --venv .venv-colab-oldest --constraints tools/oldest.txt --from-venv .venv-colab

1. Build the wheel from the checkout (`pip wheel --no-deps`), or take the one `--wheel` names.
2. Make a virtual environment with the given interpreter and install the wheel plus what Colab ships for
   running notebooks (IPython, ipykernel) and the test runner (pytest, nbval), never jupyter-book or
   myst-nb; `--constraints` pins the other end of the supported ranges. `--from-venv` starts from a
   hard-linked copy of a fresh environment of the same interpreter, so pip replaces only what the
   constraints change (gigabytes of torch are not unpacked twice) and `pip check` confirms the result;
   the copy's console scripts still name the base's interpreter, so everything here runs `python -m`.
3. Copy every chapter alone into its own empty temporary folder outside the repository and execute it
   there under nbval, with no PYTHONPATH: a chapter that imports from the repository tree, or reads a
   file the wheel lacks, fails.

The model cache (`MINI_MEDCLIP_CACHE`) is shared with the caller, so a second run is warm. `--record FILE`
writes the seconds per chapter with the environment that ran them and whether the cache started empty
(the table chapter 0 shows; `benchmarks/chapter_times.py` writes it there).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNNER = ["pytest>=8", "nbval>=0.11,<0.12", "ipykernel>=6.29,<7"]  # <7: see requirements.txt (ipykernel#1554)
FORBIDDEN = ["myst_nb", "jupyter_book"]


def run(cmd: list, **kwargs) -> None:
    print("+", " ".join(map(str, cmd)), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, **kwargs)


def pip(python, *args) -> None:
    """pip, with the noise of this machine's missing local index folders filtered out of its stderr."""
    print("+ pip", " ".join(map(str, args)), flush=True)
    result = subprocess.run([str(python), "-m", "pip", *map(str, args)], stderr=subprocess.PIPE, text=True)
    noise = "is ignored: it is neither a file nor a directory"
    sys.stderr.write("".join(line + "\n" for line in result.stderr.splitlines() if noise not in line))
    if result.returncode:
        raise SystemExit(f"colab check: pip {' '.join(map(str, args[:3]))} ... failed (exit {result.returncode})")


def build_wheel(out: Path) -> Path:
    shutil.rmtree(out, ignore_errors=True)
    pip(sys.executable, "wheel", "-q", "--no-deps", "-w", out, ROOT)
    (wheel,) = out.glob("mini_medclip-*.whl")
    return wheel


def find_interpreter(python: str) -> str:
    """`python` as given if it runs, else the newest matching pyenv installation (pyenv's shim refuses a
    version that is not the global one)."""
    candidates = [shutil.which(python)]
    version = python.removeprefix("python")
    pyenv_root = subprocess.run(["pyenv", "root"], capture_output=True, text=True).stdout.strip() if shutil.which("pyenv") else ""
    if pyenv_root and version:
        installs = sorted(Path(pyenv_root, "versions").glob(f"{version}.*"), key=lambda p: [int(x) for x in p.name.split(".") if x.isdigit()])
        candidates += [str(p / "bin" / python) for p in reversed(installs)]
    for candidate in filter(None, candidates):
        if subprocess.run([candidate, "-c", "import sys"], capture_output=True).returncode == 0:
            return candidate
    raise SystemExit(f"colab check: no working interpreter {python!r} (tried {candidates}); install it "
                     f"(pyenv install {version or '3.12'}) or pass --python PATH")


STAMP = ".installed"


def prepare_venv(venv: Path, python: str, wheel: Path, constraints: Path | None, base: Path | None = None) -> Path:
    """Install the dependencies once per (interpreter, requirements, constraints, base); the wheel every time."""
    interpreter = find_interpreter(python)
    digest = hashlib.sha256()
    for part in (interpreter, (ROOT / "pyproject.toml").read_text(), " ".join(RUNNER),
                 constraints.read_text() if constraints else "", _base_stamp(base, interpreter) if base else ""):
        digest.update(part.encode())
    stamp = venv / STAMP
    bin_python = venv / "bin" / "python"
    if not stamp.exists() or stamp.read_text() != digest.hexdigest():
        shutil.rmtree(venv, ignore_errors=True)
        if base:
            print(f"+ hard-linked copy of {base}", flush=True)
            shutil.copytree(base, venv, symlinks=True, copy_function=os.link)
            (venv / STAMP).unlink()
        else:
            run([interpreter, "-m", "venv", venv])
        pins = ["-c", constraints.resolve()] if constraints else []
        pip(bin_python, "install", "-q", wheel, *RUNNER, *pins)
        if base:
            pip(bin_python, "check")
        stamp.write_text(digest.hexdigest())
    pip(bin_python, "install", "-q", "--no-deps", "--force-reinstall", wheel)
    return bin_python


def _base_stamp(base: Path, interpreter: str) -> str:
    """The base environment's own stamp: it must be a finished environment of the same interpreter."""
    stamp = base / STAMP
    if not stamp.exists():
        raise SystemExit(f"colab check: --from-venv {base} is not a finished environment (no {STAMP}); prepare it first")
    home = dict(line.split(" = ", 1) for line in (base / "pyvenv.cfg").read_text().splitlines() if " = " in line).get("home")
    if Path(home).resolve() != Path(interpreter).parent.resolve():
        raise SystemExit(f"colab check: --from-venv {base} uses the interpreter in {home}, expected {Path(interpreter).parent}")
    return stamp.read_text()


def check_isolation(python: Path) -> None:
    """The environment must look like a learner's: the package from site-packages, no book tooling."""
    probe = (
        "import importlib.util, sys, mini_medclip, torch, transformers, tokenizers\n"
        f"bad = [m for m in {FORBIDDEN!r} if importlib.util.find_spec(m)]\n"
        "assert not bad, f'book tooling installed: {bad}'\n"
        f"assert not mini_medclip.__file__.startswith({str(ROOT / 'mini_medclip')!r}), mini_medclip.__file__\n"
        "print(f'python {sys.version.split()[0]}, torch {torch.__version__}, transformers {transformers.__version__}, '"
        "f'tokenizers {tokenizers.__version__}, mini_medclip from {mini_medclip.__file__}')\n"
    )
    run([python, "-c", probe], cwd=tempfile.gettempdir(), env=clean_env())


def clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(str(ROOT)))
    return env


def chapters() -> list[Path]:
    return sorted((ROOT / "book").glob("*.ipynb"))


def cache_is_empty() -> bool:
    from mini_medclip.runtime import cache_root  # the caller's environment has the package (`make venv`)

    folder = cache_root()
    return not folder.is_dir() or not any(folder.iterdir())


def environment_facts(python: Path) -> dict:
    """What ran the chapters: the learner environment's interpreter, torch, and the machine."""
    probe = ("import json, os, platform, torch; print(json.dumps({'cpu_cores': os.cpu_count(), 'machine': platform.machine(), "
             "'python': platform.python_version(), 'torch': torch.__version__, 'cuda': torch.cuda.is_available()}))")
    result = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=True, env=clean_env())
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_chapters(python: Path, notebooks: list[Path], record: Path | None = None) -> None:
    """Each notebook alone in a fresh folder (nbval starts its kernel there); a table of seconds at the end."""
    cold = cache_is_empty()
    scratch = Path(tempfile.mkdtemp(prefix="mini_medclip_colab_"))
    seconds, failed = {}, []
    try:
        for notebook in notebooks:
            folder = scratch / notebook.stem
            folder.mkdir()
            copy = shutil.copy(notebook, folder / notebook.name)
            start = time.perf_counter()
            # --durations: the slowest cells of each chapter, where a speed-up would pay
            result = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
                                     "--nbval-current-env", "--nbval-cell-timeout=900", "--durations=4", copy],
                                    cwd=folder, env=clean_env())
            seconds[notebook.stem] = time.perf_counter() - start
            if result.returncode:
                failed.append(notebook.stem)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print("\ncolab check, seconds per chapter:")
    for stem, value in seconds.items():
        print(f"  {stem:>16s} {value:7.1f}  {'FAILED' if stem in failed else 'passed'}")
    print(f"  {'total':>16s} {sum(seconds.values()):7.1f}", flush=True)
    if record is not None and not failed:
        facts = {"cache": "cold" if cold else "warm", **environment_facts(python),
                 "seconds": {stem: round(value, 1) for stem, value in seconds.items()}}
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps(facts, indent=2) + "\n")
        print(f"colab check: wrote {record}")
    if failed:
        raise SystemExit(f"colab check: {len(failed)} of {len(seconds)} chapters failed: {', '.join(failed)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, required=True, help="the environment to make (reused while its inputs match)")
    parser.add_argument("--python", default="python3.12", help="interpreter for the environment (default python3.12)")
    parser.add_argument("--constraints", type=Path, help="pip constraints, e.g. the oldest supported versions")
    parser.add_argument("--from-venv", type=Path, help="start from a hard-linked copy of this prepared environment")
    parser.add_argument("--wheel", type=Path, help="the package's wheel (default: build it from the checkout)")
    parser.add_argument("--prepare-only", action="store_true", help="build the wheel and the environment, run nothing")
    parser.add_argument("--record", type=Path, help="write the seconds per chapter and the environment here as JSON")
    parser.add_argument("notebooks", nargs="*", type=Path, help="chapters to run (default: every chapter in book/)")
    args = parser.parse_args()
    if args.wheel and not args.wheel.is_file():
        raise SystemExit(f"colab check: --wheel {args.wheel} is not a file; expected a built mini_medclip wheel")
    wheel = args.wheel.resolve() if args.wheel else build_wheel(args.venv.with_name(args.venv.name + "-wheel"))
    base = args.from_venv.resolve() if args.from_venv else None
    python = prepare_venv(args.venv.resolve(), args.python, wheel, args.constraints, base)
    check_isolation(python)
    if not args.prepare_only:
        run_chapters(python, [p.resolve() for p in args.notebooks] or chapters(), args.record)


if __name__ == "__main__":
    main()

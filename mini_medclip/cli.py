"""Headless runs: `python -m mini_medclip VERB ...`.

Every verb validates its options at the boundary and exits non-zero with a one-line message that names
the bad value and the valid choices.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from . import distributed
from .attacks.baddist import VARIANTS
from .attacks.triggers import TRIGGERS
from .config import EMBEDDED, IMAGE_ENCODERS, LOSSES, PRESETS, Config, get_config
from .data.sources import data_record, load_data, with_data_spec
from .defenses.base import DEFENSES
from .experiments.defense_eval import DEFENDED_ATTACKS
from .experiments.run_folder import METRICS, run_evaluation, run_training
from .experiments.runs import ATTACKS

DEFENSE = "defense.json"


class _OneLineParser(argparse.ArgumentParser):
    """argparse prints the whole usage on an error; a script reading stderr wants one line."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _config(args, **overrides) -> Config:
    """The preset with the options a verb was given (None = the preset's value), reading `--data` if given."""
    cfg = get_config(args.preset, **{k: v for k, v in overrides.items() if v is not None})
    return cfg if getattr(args, "data", None) is None else with_data_spec(cfg, args.data)


def _cmd_data(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from .data.embedded import data_card
    from .data.labels import CHEXPERT_LABELS
    from .plotting import image_grid, short_label_names

    cfg = _config(args, data__seed=args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    image_pool, text_pool, eval_sets = load_data(cfg)
    card = {**data_card(cfg.data, image_pool, text_pool, eval_sets), "data": data_record(cfg)}
    (out / "data_card.json").write_text(json.dumps(card, indent=2))
    shown = range(min(24, len(image_pool)))
    titles = [short_label_names(image_pool.labels[i], CHEXPERT_LABELS) for i in shown]
    what = "phantoms" if cfg.data.source == EMBEDDED else "images"
    fig = image_grid(image_pool.batch(list(shown)), titles, ncols=6, suptitle=f"{cfg.preset} {what}")
    fig.savefig(out / f"{what}.png", dpi=120)
    print(f"wrote {out / 'data_card.json'} and {out / f'{what}.png'}")
    return 0


def _summary(metrics: dict) -> str:
    zs = metrics["zero_shot"]
    parts = [f"{name} acc {m['acc']:.3f}±{m['acc_std']:.3f}" for name, m in zs.items()]
    return f"zero-shot: {', '.join(parts)}; train {metrics['train_seconds']:.0f} s"


def _cmd_train(args) -> int:
    cfg = _config(args, model__image_encoder=args.image_encoder, train__loss=args.loss, train__seed=args.seed,
                  train__steps=args.steps, train__batch_size=args.batch_size)
    attack = baddist = None
    if args.attack != "clean":
        from .attacks.badmatch import BadMatchConfig

        rate = 0.0 if args.attack == "baddist" else args.poison_rate
        attack = BadMatchConfig(trigger=args.trigger, rate=rate)
    if args.attack.startswith("baddist"):
        from .attacks.baddist import baddist_config

        baddist = baddist_config(args.image_encoder, trigger=args.trigger, variant=args.baddist_variant)
    if distributed.launched_by_torchrun():  # `torchrun --nproc_per_node N -m mini_medclip train ...`
        try:
            metrics = run_training(cfg, args.out, attack=attack, baddist=baddist, device=distributed.join_from_env(),
                                   loader_workers=args.workers)
        finally:
            distributed.leave()
        if not metrics:  # a rank other than 0: rank 0 reports
            return 0
    else:
        metrics = run_training(cfg, args.out, attack=attack, baddist=baddist, loader_workers=args.workers)
    summary = _summary(metrics) + f" ({metrics['train_images_per_second']:.0f} images/s)"
    if attack is not None:
        summary += "; " + ", ".join(f"{t} ASR {m['asr']:.3f}" for t, m in metrics["attack"].items() if t != "config")
    print(f"{summary}; wrote {Path(args.out) / METRICS}")
    return 0


def _cmd_reproduce(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from .experiments.reproduce import reproduce

    cfg = _config(args, train__steps=args.steps, train__batch_size=args.batch_size)
    frame = reproduce(cfg, args.out, plan=args.plan, with_defenses=False if args.skip_defenses else None)
    print(f"{frame.key.nunique()} runs; wrote {Path(args.out) / 'results.json'}, results.md and figures")
    return 0


def _cmd_defend(args) -> int:
    from .experiments.defense_eval import evaluate_defense

    cfg = _config(args, train__steps=args.steps, train__batch_size=args.batch_size)
    result = evaluate_defense(args.defense, cfg, args.attack, args.poison_rate, args.baddist_variant)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / DEFENSE).write_text(json.dumps(result, indent=2))
    print(f"{args.defense} vs {args.attack}: {json.dumps(result.get('detection') or result.get('mitigation'))[:200]}; "
          f"wrote {out / DEFENSE}")
    return 0


def _cmd_evaluate(args) -> int:
    metrics = run_evaluation(args.checkpoint, args.out, data_spec=args.data)
    print(f"{_summary(metrics)}; wrote {Path(args.out) / METRICS}")
    return 0


def _cmd_cache(args) -> int:
    from . import bundle
    from .runtime import cache_root
    from .store import list_store_entries

    root = cache_root()
    if args.action == "list":
        entries = bundle.list_entries(root)
        for e in entries:
            status = "ok" if e.valid else f"UNUSABLE: {e.problem}"
            print(f"{e.name}  {e.preset:5s}  {e.size / 1e6:8.1f} MB  {json.dumps(e.extra_key, sort_keys=True)[:90]}  {status}")
        print(f"{len(entries)} entries, {sum(e.size for e in entries) / 1e6:.1f} MB in {root}")
        stored = list_store_entries(root)
        size = sum(f.stat().st_size for folder in stored for f in folder.iterdir() if f.is_file())
        print(f"and {len(stored)} stored results (rendered phantoms, defense scores), {size / 1e6:.1f} MB")
    elif args.action == "export":
        digest = bundle.export_bundle(args.out, root)
        print(f"wrote {args.out} ({Path(args.out).stat().st_size / 1e6:.1f} MB); publish its sha256 with it:\n{digest}")
    elif args.action == "import":
        names = bundle.import_bundle(args.source, args.sha256, root)
        models = [n for n in names if bundle.ENTRY_NAME.match(n)]
        print(f"verified and imported {len(models)} models and {len(names) - len(models)} stored results into {root}")
        foreign = bundle.foreign_entries(names, root)
        if foreign:
            import torch

            print(f"warning: {len(foreign)} of {len(models)} models were trained on phantoms this runtime does not render "
                  f"(torch {torch.__version__} draws other images from the same seed); chapters will retrain them. "
                  "Ask for a bundle made with this torch release.", file=sys.stderr)
    else:
        print(f"removed {bundle.clear_cache(root)} model entries, the rendered data and the stored defense results from {root}")
    return 0


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"invalid poison rate {text!r}; expected a number in [0, 1], e.g. 0.01 for 1%")
    return value


def _integer(low: int, high: int | None = None):
    """An argparse type for an integer in [low, high]; its error names the range (int()'s names neither)."""
    if high is not None:
        expected = f"an integer in [{low}, {high}]"
    else:
        expected = "a positive integer" if low == 1 else f"an integer >= {low}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low or high is not None and value > high:
            raise argparse.ArgumentTypeError(f"invalid value {text!r}; expected {expected}")
        return value

    return parse


_SEED = _integer(0, 2**32 - 1)  # NumPy's seed range; torch's is wider


def _output(folder: bool):
    """An argparse type for an output path, checked before the work (training takes minutes to hours) rather
    than when the first file is written: it must not be the other kind, and its nearest existing folder must
    be writable."""
    kind, other = ("folder", "file") if folder else ("file", "folder")
    expected = "a folder (new, or one that exists)" if folder else "a file name (new, or a file to replace)"

    def parse(text: str) -> Path:
        path = Path(text).absolute()
        try:
            if path.exists() and path.is_dir() != folder:
                raise argparse.ArgumentTypeError(f"{text!r} is a {other}; expected {expected}")
            above = next(p for p in ([path] if folder else []) + list(path.parents) if p.exists())
        except OSError as err:  # a parent we may not look into
            raise argparse.ArgumentTypeError(f"{text!r}: {err.strerror}; expected {expected}") from err
        if not above.is_dir():
            raise argparse.ArgumentTypeError(f"{text!r}: {above} is a file, so no {kind} can be made under it; "
                                             f"expected {expected}")
        if not os.access(above, os.W_OK):
            raise argparse.ArgumentTypeError(f"{text!r}: you may not write in {above}; expected {expected} elsewhere")
        return Path(text)

    return parse


def _input_file(text: str) -> Path:
    """An argparse type for a file to read, checked before any work starts."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder; expected a file")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text!r}: file not found (relative to {Path.cwd()})")
    return path


def _add_data(parser, what: str = "the embedded phantoms and report sentences") -> None:
    parser.add_argument("--data", type=_input_file, default=None, metavar="SPEC",
                        help=f"a data spec JSON naming real data (MedCLIP CSVs, a torchxrayvision data set or a MedMNIST "
                             f"file; see mini_medclip/data/spec.py); default: {what}")


def _add_schedule(parser) -> None:
    parser.add_argument("--steps", type=_integer(1), default=None, help="optimizer steps (default: the preset's)")
    parser.add_argument("--batch-size", type=_integer(1), default=None, help="images per step (default: the preset's)")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="python -m mini_medclip", description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", required=True, parser_class=_OneLineParser)

    data = verbs.add_parser("data", help="write a data card and a labelled grid of phantoms")
    data.add_argument("--preset", choices=tuple(PRESETS), default="tiny")
    data.add_argument("--out", required=True, type=_output(folder=True), help="output folder")
    data.add_argument("--seed", type=_SEED, default=None, help="data seed (default: the preset's)")
    _add_data(data)
    data.set_defaults(run=_cmd_data)

    train = verbs.add_parser("train", help="train a model (resuming if OUT holds one), write OUT/checkpoint and OUT/metrics.json")
    train.add_argument("--preset", choices=tuple(PRESETS), default="tiny")
    train.add_argument("--out", required=True, type=_output(folder=True), help="run folder")
    train.add_argument("--image-encoder", choices=IMAGE_ENCODERS, default=None, help="default: the preset's")
    train.add_argument("--loss", choices=LOSSES, default=None, help="default: the preset's")
    train.add_argument("--seed", type=_SEED, default=None, help="training seed: init and batches (default: the preset's)")
    _add_schedule(train)
    _add_data(train)
    train.add_argument("--workers", type=_integer(0), default=0,
                       help="processes that decode training images off the loop (real data on disk; default 0)")
    train.add_argument("--attack", choices=ATTACKS, default="clean",
                       help="badmatch: poison the pool, train from scratch (chapter 5); baddist[+badmatch]: start the "
                            "image tower from a tampered release and fine-tune as the victim, with[out] poisons (chapter 6)")
    train.add_argument("--trigger", choices=tuple(TRIGGERS), default="patch", help="the attack's trigger")
    train.add_argument("--poison-rate", type=_rate, default=0.01, help="share of the image pool poisoned, in [0, 1]")
    train.add_argument("--baddist-variant", choices=VARIANTS, default="away",
                       help="away: the reference loss (push triggered embeddings away); target: pull them toward 'No Finding'")
    train.set_defaults(run=_cmd_train)

    reproduce = verbs.add_parser("reproduce", help="the paper's experiments (sweep, robustness matrix, defense table) or "
                                                   "chapter 6's study of the victim (resumable)")
    reproduce.add_argument("--preset", choices=tuple(PRESETS), default="tiny")
    reproduce.add_argument("--plan", choices=("paper", "study"), default="paper",
                           help="paper: the paper's experiments and the defense table; study: the victim study, Fourier trigger included (default: paper)")
    reproduce.add_argument("--out", required=True, type=_output(folder=True), help="output folder for results.json, results.md and the figures")
    reproduce.add_argument("--skip-defenses", action="store_true", help="attacks only: leave out the defense table")
    _add_schedule(reproduce)
    _add_data(reproduce)
    reproduce.set_defaults(run=_cmd_reproduce)

    defend = verbs.add_parser("defend", help="score one defense against one victim, write OUT/defense.json")
    defend.add_argument("--preset", choices=tuple(PRESETS), default="tiny")
    defend.add_argument("--defense", choices=tuple(DEFENSES), required=True)
    defend.add_argument("--attack", choices=DEFENDED_ATTACKS, default="badmatch")
    defend.add_argument("--poison-rate", type=_rate, default=0.0005, help="share of the image pool poisoned, in [0, 1]")
    defend.add_argument("--baddist-variant", choices=VARIANTS, default="target")
    defend.add_argument("--out", required=True, type=_output(folder=True), help="output folder for defense.json")
    _add_schedule(defend)
    _add_data(defend)
    defend.set_defaults(run=_cmd_defend)

    cache = verbs.add_parser("cache", help="the model cache: list, clear, export a verified bundle, import one")
    actions = cache.add_subparsers(dest="action", required=True, parser_class=_OneLineParser)
    actions.add_parser("list", help="what is cached: entry, preset, size, what it is keyed on, whether it verifies")
    actions.add_parser("clear", help="delete every cached model, the rendered data and the stored defense results")
    export = actions.add_parser("export", help="write every cached model and stored result (phantoms, defense scores) into one tar with a sha256 manifest")
    export.add_argument("--out", required=True, type=_output(folder=False), help="the bundle file to write, e.g. mini-medclip-tiny.tar")
    import_ = actions.add_parser("import", help="verify a bundle against its published sha256, then add its entries")
    import_.add_argument("source", help="a bundle file, or an https:// URL (downloads resume)")
    import_.add_argument("--sha256", required=True, help="the digest the bundle's publisher printed on export")
    cache.set_defaults(run=_cmd_cache)

    evaluate = verbs.add_parser("evaluate", help="recompute metrics.json from a checkpoint")
    evaluate.add_argument("--checkpoint", required=True, help="a run folder written by train, or a checkpoint folder")
    evaluate.add_argument("--out", required=True, type=_output(folder=True), help="output folder for metrics.json")
    _add_data(evaluate, "the data the checkpoint was trained on")
    evaluate.set_defaults(run=_cmd_evaluate)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, OSError) as err:
        print(f"mini_medclip {args.verb}: error: {err}", file=sys.stderr)
        return 2

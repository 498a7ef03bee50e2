"""Headless runs: `python -m mini_medclip VERB ...`.

Every verb validates its options at the boundary and exits non-zero with a one-line message that names
the bad value and the valid choices.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .config import PRESETS, get_config


class _OneLineParser(argparse.ArgumentParser):
    """argparse prints the whole usage on an error; a script reading stderr wants one line."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _cmd_data(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from .data.embedded import build_eval_sets, build_image_pool, build_text_pool, data_card
    from .data.labels import CHEXPERT_LABELS
    from .plotting import image_grid, short_label_names

    cfg = get_config(args.preset, data__seed=args.seed) if args.seed is not None else get_config(args.preset)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    image_pool, text_pool = build_image_pool(cfg.data), build_text_pool()
    eval_sets = build_eval_sets(cfg.data)
    card = data_card(cfg.data, image_pool, text_pool, eval_sets)
    (out / "data_card.json").write_text(json.dumps(card, indent=2))
    shown = range(min(24, len(image_pool)))
    titles = [short_label_names(image_pool.labels[i], CHEXPERT_LABELS) for i in shown]
    fig = image_grid(image_pool.batch(list(shown)), titles, ncols=6, suptitle=f"{cfg.preset} phantoms")
    fig.savefig(out / "phantoms.png", dpi=120)
    print(f"wrote {out / 'data_card.json'} and {out / 'phantoms.png'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="python -m mini_medclip", description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", required=True, parser_class=_OneLineParser)

    data = verbs.add_parser("data", help="write a data card and a labelled grid of phantoms")
    data.add_argument("--preset", choices=tuple(PRESETS), default="tiny")
    data.add_argument("--out", required=True, help="output folder")
    data.add_argument("--seed", type=int, default=None, help="data seed (default: the preset's)")
    data.set_defaults(run=_cmd_data)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"mini_medclip {args.verb}: error: {err}", file=sys.stderr)
        return 2

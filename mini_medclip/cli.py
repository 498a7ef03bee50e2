"""Headless runs: `python -m mini_medclip VERB ...`.

Every verb validates its options at the boundary and exits non-zero with a one-line message that names
the bad value and the valid choices.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .attacks.triggers import TRIGGERS
from .config import IMAGE_ENCODERS, LOSSES, PRESETS, Config, get_config

METRICS = "metrics.json"


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


def compute_metrics(model, tokenizer, data) -> dict:
    """Zero-shot (3 tasks), retrieval and linear probe of a trained model on (image pool, text pool, eval sets)."""
    from .evaluation import linear_probe, retrieval_recall
    from .zeroshot import evaluate_all

    image_pool, text_pool, eval_sets = data
    return {
        "zero_shot": evaluate_all(model, tokenizer, eval_sets, text_pool),
        "retrieval": retrieval_recall(model, tokenizer, eval_sets["five_class"], text_pool),
        "linear_probe": linear_probe(model, image_pool, eval_sets["five_class"]),
    }


def _write_metrics(out_dir, model, tokenizer, cfg: Config, data, train_seconds: float) -> dict:
    metrics = {**compute_metrics(model, tokenizer, data), "train_seconds": train_seconds, "config": cfg.to_dict()}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / METRICS).write_text(json.dumps(metrics, indent=2))
    return metrics


def attack_metrics(model, tokenizer, data, attack, n_poisoned: int) -> dict:
    """BA, ASR (non-target images) and the reference code's ASR over all images, per zero-shot task."""
    from .attacks.metrics import evaluate_attack

    _, text_pool, eval_sets = data
    trigger = attack.make_trigger()
    out = {}
    for task, eval_set in eval_sets.items():
        m = evaluate_attack(model, tokenizer, eval_set, text_pool, trigger, target=attack.target)
        out[task] = {"ba": m["ba"], "asr": m["asr"], "asr_ci": m["asr_ci"], "asr_all_images": m["asr_all_images"],
                     "robust_acc": m["robust_acc"], "poisoned": n_poisoned}
    return out


def run_training(cfg: Config, out_dir, data=None, progress: bool = True, attack=None) -> dict:
    """Train (resuming from `out_dir/checkpoint` if it holds this run), evaluate, write `out_dir/metrics.json`.

    `data` = (image pool, text pool, eval sets), by default the embedded data of `cfg`. With `attack` (a
    `BadMatchConfig`) the image pool is poisoned first, and `metrics["attack"]` holds BA and ASR per task.
    """
    from .train import embedded_data, train

    data = data or embedded_data(cfg)
    image_pool, text_pool, eval_sets = data
    if attack is not None:
        from .attacks.badmatch import choose_poison_indices, poison_image_pool

        indices = choose_poison_indices(image_pool.labels, attack.rate, attack.target, attack.seed)
        image_pool = poison_image_pool(image_pool, indices, attack.make_trigger(), attack.target)
    result = train(cfg, image_pool, text_pool, eval_sets, out_dir=Path(out_dir) / "checkpoint", progress=progress)
    metrics = _write_metrics(out_dir, result.model, result.tokenizer, cfg, data, result.seconds)
    if attack is not None:
        metrics["attack"] = {"config": attack.to_dict(),
                             **attack_metrics(result.model, result.tokenizer, data, attack, len(indices))}
        (Path(out_dir) / METRICS).write_text(json.dumps(metrics, indent=2))
    return metrics


def checkpoint_folder(path) -> Path:
    """Accept a run folder written by `train` (its `checkpoint/` inside) or a checkpoint folder itself."""
    path = Path(path)
    return path / "checkpoint" if (path / "checkpoint").is_dir() else path


def run_evaluation(checkpoint, out_dir, data=None) -> dict:
    """Recompute `metrics.json` from a checkpoint alone (the numbers `train` wrote, for the same data)."""
    from .checkpoint import checkpoint_meta, load_checkpoint
    from .runtime import pick_device
    from .train import embedded_data

    folder = checkpoint_folder(checkpoint)
    model, tokenizer, cfg = load_checkpoint(folder, pick_device())
    data = data or embedded_data(cfg)
    return _write_metrics(out_dir, model, tokenizer, cfg, data, checkpoint_meta(folder)["train_seconds"])


def _summary(metrics: dict) -> str:
    zs = metrics["zero_shot"]
    parts = [f"{name} acc {m['acc']:.3f}±{m['acc_std']:.3f}" for name, m in zs.items()]
    return f"zero-shot: {', '.join(parts)}; train {metrics['train_seconds']:.0f} s"


def _cmd_train(args) -> int:
    overrides = {"model__image_encoder": args.image_encoder, "train__loss": args.loss,
                 "train__seed": args.seed, "train__steps": args.steps}
    cfg = get_config(args.preset, **{k: v for k, v in overrides.items() if v is not None})
    attack = None
    if args.attack == "badmatch":
        from .attacks.badmatch import BadMatchConfig

        attack = BadMatchConfig(trigger=args.trigger, rate=args.poison_rate)
    metrics = run_training(cfg, args.out, attack=attack)
    summary = _summary(metrics)
    if attack is not None:
        summary += "; " + ", ".join(f"{t} ASR {m['asr']:.3f}" for t, m in metrics["attack"].items() if t != "config")
    print(f"{summary}; wrote {Path(args.out) / METRICS}")
    return 0


def _cmd_evaluate(args) -> int:
    metrics = run_evaluation(args.checkpoint, args.out)
    print(f"{_summary(metrics)}; wrote {Path(args.out) / METRICS}")
    return 0


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"invalid poison rate {text!r}; expected a number in [0, 1], e.g. 0.01 for 1%")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}; expected a positive integer")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="python -m mini_medclip", description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", required=True, parser_class=_OneLineParser)

    data = verbs.add_parser("data", help="write a data card and a labelled grid of phantoms")
    data.add_argument("--preset", choices=tuple(PRESETS), default="tiny")
    data.add_argument("--out", required=True, help="output folder")
    data.add_argument("--seed", type=int, default=None, help="data seed (default: the preset's)")
    data.set_defaults(run=_cmd_data)

    train = verbs.add_parser("train", help="train a model (resuming if OUT holds one), write OUT/checkpoint and OUT/metrics.json")
    train.add_argument("--preset", choices=tuple(PRESETS), default="tiny")
    train.add_argument("--out", required=True, help="run folder")
    train.add_argument("--image-encoder", choices=IMAGE_ENCODERS, default=None, help="default: the preset's")
    train.add_argument("--loss", choices=LOSSES, default=None, help="default: the preset's")
    train.add_argument("--seed", type=int, default=None, help="training seed: init and batches (default: the preset's)")
    train.add_argument("--steps", type=_positive_int, default=None, help="optimizer steps (default: the preset's)")
    train.add_argument("--attack", choices=("none", "badmatch"), default="none", help="poison the image pool first")
    train.add_argument("--trigger", choices=tuple(TRIGGERS), default="patch",
                       help="BadMatch trigger (with --attack badmatch)")
    train.add_argument("--poison-rate", type=_rate, default=0.01, help="share of the image pool poisoned, in [0, 1]")
    train.set_defaults(run=_cmd_train)

    evaluate = verbs.add_parser("evaluate", help="recompute metrics.json from a checkpoint")
    evaluate.add_argument("--checkpoint", required=True, help="a run folder written by train, or a checkpoint folder")
    evaluate.add_argument("--out", required=True, help="output folder for metrics.json")
    evaluate.set_defaults(run=_cmd_evaluate)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"mini_medclip {args.verb}: error: {err}", file=sys.stderr)
        return 2

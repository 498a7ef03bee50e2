"""The tiny ViT's designs at the tiny budget: 5-class zero-shot accuracy of the provider model (the preset's
schedule, or `--steps`) per `vit_arch`, learning rate and number of steps, beside the ResNet, with seconds per run.

    python benchmarks/vit_variants.py [--archs small conv-stem] [--lrs 2e-3 5e-4] [--steps 500 1000]
"""
import argparse
import time

from mini_medclip import get_config, pick_device
from mini_medclip.data.sources import load_data
from mini_medclip.experiments.protocols import pretrained_model
from mini_medclip.zeroshot import evaluate_zero_shot


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["small", "conv-stem"])
    parser.add_argument("--lrs", nargs="+", type=float, default=[2e-3])
    parser.add_argument("--steps", nargs="+", type=int, default=[get_config("tiny", model__image_encoder="vit").train.steps])
    parser.add_argument("--resnet", action="store_true", help="also the ResNet, as the yardstick")
    args = parser.parse_args()
    device = pick_device()
    configs = [(f"vit {arch} lr {lr:g} {steps} steps",
                get_config("tiny", model__image_encoder="vit", model__vit_arch=arch, train__lr=lr, train__steps=steps))
               for arch in args.archs for lr in args.lrs for steps in args.steps]
    if args.resnet:
        configs.insert(0, ("resnet", get_config("tiny")))
    print("| model | 5-class zero-shot | seconds |\n|---|---|---|")
    for name, cfg in configs:
        started = time.perf_counter()
        result = pretrained_model(cfg, device)
        _, text_pool, eval_sets = load_data(cfg)
        accuracy = evaluate_zero_shot(result.model, result.tokenizer, eval_sets["five_class"], text_pool)["acc"]
        print(f"| {name} | {accuracy:.3f} | {time.perf_counter() - started:.0f} |", flush=True)


if __name__ == "__main__":
    main()

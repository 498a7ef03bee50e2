"""How the provider's optimiser decides whether a tampered tiny ViT keeps its backdoor: the targeted patch release
of the ViT and its "fine-tune" victim (5 records), tampered with the ResNet's SGD and with the ViT's own settings
(`attacks.baddist.ENCODER_SETTINGS`), with the clean embeddings' cosine at the end of the tampering, the release's
and the victim's BA and ASR, and the triggered images' collapse. Chapter 7 explains the outcome.

    python benchmarks/vit_tampering.py [--sgd-lrs 1e-2 3e-3 1e-3]
"""
import argparse

import pandas as pd

from mini_medclip import get_config, pick_device
from mini_medclip.attacks.baddist import ENCODER_SETTINGS, BadDistConfig, baddist_config
from mini_medclip.data.sources import load_data
from mini_medclip.experiments.protocols import tampered_release
from mini_medclip.experiments.scoring import survival_records


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sgd-lrs", nargs="+", type=float, default=[BadDistConfig().lr])
    args = parser.parse_args()
    cfg, device = get_config("tiny", model__image_encoder="vit"), pick_device()
    data = load_data(cfg)
    settings = {f"sgd, lr {lr:g}": BadDistConfig(trigger="patch", variant="target", lr=lr) for lr in args.sgd_lrs}
    settings[f"vit's own: {ENCODER_SETTINGS['vit']}"] = baddist_config("vit", trigger="patch", variant="target")
    rows = {}
    for name, baddist in settings.items():
        last = tampered_release(cfg, baddist, device).history[-1]
        for row in survival_records(cfg, baddist, 5, data, device):
            rows[(name, row["stage"])] = {"tampering clean_cos": last["clean_cos"],
                                          **{k: row[k] for k in ("ba", "asr", "triggered_collapse", "target_margin")}}
    print(pd.DataFrame(rows).T.round(3).to_markdown())


if __name__ == "__main__":
    main()

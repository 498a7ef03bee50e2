"""What might let a Fourier backdoor survive the victim's training: the targeted BadDist release of the ResNet
and its "fine-tune" victim (5 records) for several trigger settings and numbers of shadow images, with the
ASR and the triggered images' collapse in each. Chapter 7 recomputes the first three rows.

    python benchmarks/fourier_survival.py [--variant target]
"""
import argparse

import pandas as pd

from mini_medclip import get_config, pick_device
from mini_medclip.attacks.baddist import BadDistConfig
from mini_medclip.data.sources import load_data
from mini_medclip.experiments.scoring import survival_records

SETTINGS = {  # name: (Fourier trigger parameters, shadow images)
    "course (beta 0.1, ratio 0.15)": ({}, 1_000),
    "paper (beta 0.2, ratio 0.1)": ({"beta": 0.2, "ratio": 0.1}, 1_000),
    "stronger mix (ratio 0.5)": ({"ratio": 0.5}, 1_000),
    "course, 4x shadow images": ({}, 4_000),
    "paper, 4x shadow images": ({"beta": 0.2, "ratio": 0.1}, 4_000),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=("target", "away"), default="target")
    args = parser.parse_args()
    cfg, device = get_config("tiny"), pick_device()
    data = load_data(cfg)
    rows = {}
    for name, (params, shadow) in SETTINGS.items():
        baddist = BadDistConfig(trigger="fourier", trigger_params=params, variant=args.variant, shadow_images=shadow)
        for row in survival_records(cfg, baddist, 5, data, device):
            rows[(name, row["stage"])] = {k: row[k] for k in ("ba", "asr", "triggered_collapse", "target_margin")}
    print(pd.DataFrame(rows).T.round(3).to_markdown())


if __name__ == "__main__":
    main()

"""Real-format data sets written by the tests, and the data specs that name them.

MedCLIP CSVs over PNG and JPEG phantoms (written the way real exports are messy: float labels, blanks,
uncertain -1, extra columns, relative and absolute paths), torchxrayvision's own RSNA class over a folder
of PNGs, and a ChestMNIST-shaped npz.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from mini_medclip.data.labels import CHEXPERT_LABELS, FIVE_CLASS_TASK, label_index
from mini_medclip.data.phantoms import render
from mini_medclip.data.prompts import sample_prompts

CLASSES = (*FIVE_CLASS_TASK, "No Finding")


def _labels(n: int) -> torch.Tensor:
    labels = torch.zeros(n, len(CHEXPERT_LABELS))
    for row in range(n):
        labels[row, label_index(CLASSES[row % len(CLASSES)])] = 1
    return labels


def _label_cells(labels: torch.Tensor, row: int) -> dict:
    """A row's 14 label cells as an export writes them: "1.0" for a positive, and for the negatives a mix of
    blank, "0.0" and the uncertain "-1.0" (all three read as negative)."""
    negatives = (math.nan, "0.0", "-1.0")
    return {name: "1.0" if labels[row, column] else negatives[(row + column) % 3]
            for column, name in enumerate(CHEXPERT_LABELS)}


def write_images(folder: Path, labels: torch.Tensor, size: int, seed: int, names: list[str]) -> None:
    pixels = (render(labels, size, seed=seed).clamp(0, 1) * 255).round().to(torch.uint8)[:, 0].numpy()
    for name, image in zip(names, pixels):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / name)


def _image_csv(folder: Path, name: str, n: int, size: int, seed: int) -> Path:
    """`n` phantoms under folder/png (PNG) and folder/jpg (JPEG), half the rows with absolute paths."""
    labels = _labels(n)
    names = [f"{'png' if i % 2 else 'jpg'}/{name}_{i}.{'png' if i % 2 else 'jpg'}" for i in range(n)]
    write_images(folder, labels, size, seed, names)
    rows = [{"subject_id": 1000 + i, "imgpath": str(folder / names[i]) if i % 4 == 0 else names[i],
             "ViewPosition": "PA", **_label_cells(labels, i)} for i in range(n)]
    path = folder / f"{name}.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def write_sentences(folder: Path) -> Path:
    rows = []
    for name in CLASSES:
        labels = torch.zeros(1, len(CHEXPERT_LABELS))
        labels[0, label_index(name)] = 1
        rows += [{"Reports": sentence, **_label_cells(labels, 0)} for sentence in sample_prompts(name, 4, seed=1)]
    path = folder / "sentence_label.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def write_spec(folder: Path, spec: dict, name: str = "data.json") -> Path:
    path = folder / name
    path.write_text(json.dumps(spec, indent=2))
    return path


def medclip_spec(folder: Path, n_train: int = 36, n_eval: int = 15, size: int = 48, **extra) -> Path:
    """A MedCLIP-format data set: train.csv, sentence_label.csv and a 5-class test.csv, with its spec."""
    _image_csv(folder, "train", n_train, size, seed=0)
    _image_csv(folder, "test", n_eval, size, seed=1)
    test = pd.read_csv(folder / "test.csv", dtype=str)
    test[test["No Finding"] != "1.0"].to_csv(folder / "test.csv", index=False)  # one of the five classes each
    write_sentences(folder)
    spec = {"format": "medclip", "images": "train.csv", "sentences": "sentence_label.csv",
            "eval": {"five_class": {"csv": "test.csv", "classes": list(FIVE_CLASS_TASK)}}, **extra}
    return write_spec(folder, spec)


def xrv_spec(folder: Path, n_rows: int = 20, size: int = 40) -> Path:
    """torchxrayvision's RSNA class (its labels from its wheel) over PNGs written where it expects them."""
    import torchxrayvision as xrv

    dataset_args = {"class": "RSNA_Pneumonia_Dataset", "imgpath": "rsna", "nrows": n_rows, "views": ["*"],
                    "extension": ".png"}
    dataset = xrv.datasets.RSNA_Pneumonia_Dataset(imgpath=str(folder / "rsna"), nrows=n_rows, views=["*"],
                                                  extension=".png")
    labels = torch.zeros(len(dataset.csv), len(CHEXPERT_LABELS))
    labels[:, label_index("No Finding")] = 1
    write_images(folder / "rsna", labels, size, 2, [f"{patient}.png" for patient in dataset.csv["patientId"]])
    spec = {"format": "torchxrayvision", "dataset": dataset_args,
            "eval": {"rsna": {"dataset": dataset_args, "pathology": "Pneumonia"}}}
    return write_spec(folder, spec)


def medmnist_spec(folder: Path, n_train: int = 30, n_test: int = 10) -> Path:
    """A ChestMNIST-shaped npz (NIH label order, 28 px): train split, and a test split of single findings."""
    from mini_medclip.data.adapters import CHESTMNIST_PATHOLOGIES

    def split(n: int, seed: int):
        names = list(FIVE_CLASS_TASK)
        nih = {"Pleural Effusion": "Effusion"}
        labels = np.zeros((n, 14), np.uint8)
        for row in range(n):
            labels[row, CHESTMNIST_PATHOLOGIES.index(nih.get(names[row % 5], names[row % 5]))] = 1
        images = np.random.default_rng(seed).integers(0, 256, (n, 28, 28), dtype=np.uint8)
        return images, labels

    train_images, train_labels = split(n_train, 0)
    test_images, test_labels = split(n_test, 1)
    np.savez(folder / "chestmnist.npz", train_images=train_images, train_labels=train_labels,
             test_images=test_images, test_labels=test_labels)
    return write_spec(folder, {"format": "medmnist", "npz": "chestmnist.npz"})

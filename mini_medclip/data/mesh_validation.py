"""The labeler checked against a yardstick it never saw: the MeSH tags Indiana University's indexers gave each report.

MeSH indexing was done by hand, independently of any labeler; per observation, report-level labels from
`labeler.label_sentences` are compared with the reports' MeSH major headings (chapter 1's table).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .labeler import NO_FINDING, PATHOLOGIES, POSITIVE, UNCERTAIN, label_sentences
from .labels import CHEXPERT_LABELS, NUM_LABELS
from .reports import load_reports, load_sentences


# MeSH major headings (the part before the first "/") that index each observation. Some headings count
# only with a qualifier: "Cardiac Shadow/enlarged" is cardiomegaly, "Thickening/pleura" is pleural.
MESH_TERMS: dict[str, list[tuple[str, str | None]]] = {
    "Enlarged Cardiomediastinum": [("Mediastinum", "prominent"), ("Mediastinum", "enlarged"), ("Mediastinum", "widened")],
    "Cardiomegaly": [("Cardiomegaly", None), ("Cardiac Shadow", "enlarged")],
    "Lung Lesion": [("Nodule", None), ("Mass", None)],
    "Lung Opacity": [("Opacity", None), ("Airspace Disease", None), ("Infiltrate", None)],
    "Edema": [("Pulmonary Edema", None), ("Pulmonary Congestion", None)],
    "Consolidation": [("Consolidation", None)],
    "Pneumonia": [("Pneumonia", None)],
    "Atelectasis": [("Pulmonary Atelectasis", None)],
    "Pneumothorax": [("Pneumothorax", None), ("Hydropneumothorax", None)],
    "Pleural Effusion": [
        ("Pleural Effusion", None), ("Hydropneumothorax", None), ("Costophrenic Angle", "blunted"), ("Sulcus", "blunted"),
    ],
    "Pleural Other": [("Thickening", "pleura")],
    "Fracture": [("Fractures, Bone", None)],
    "Support Devices": [
        ("Catheters, Indwelling", None), ("Implanted Medical Device", None), ("Surgical Instruments", None),
        ("Tube, Inserted", None), ("Medical Device", None), ("Stents", None),
    ],
}


def mesh_labels(tags: list[str]) -> np.ndarray:
    """A report's 0/1 vector from its MeSH major tags such as "Opacity/lung/base/left/mild".

    No Finding follows CheXpert's definition: none of the 12 pathologies is tagged. The indexers' own
    "normal" tag is stricter (a calcified granuloma or a curved spine rules it out), and these findings
    lie outside the 14 observations, so comparing against "normal" would score the schema, not the labeler.
    """
    vector = np.zeros(NUM_LABELS)
    for tag in tags:
        heading, *qualifiers = tag.split("/")
        for name, terms in MESH_TERMS.items():
            if any(heading == h and (q is None or q in qualifiers) for h, q in terms):
                vector[CHEXPERT_LABELS.index(name)] = 1
    vector[NO_FINDING] = float(not vector[PATHOLOGIES].any() and "No Indexing" not in tags)
    return vector


def report_labels(sentence_codes: np.ndarray) -> np.ndarray:
    """A report's 0/1 vector from its sentences' codes: a finding is positive if any sentence says so.

    No Finding is positive when some sentence is a normal statement and none asserts or suspects a
    pathology, the CheXpert rule applied to the whole report.
    """
    positive = (np.nan_to_num(sentence_codes, nan=0.0) == POSITIVE).any(axis=0).astype(float)
    suspected = (sentence_codes[:, PATHOLOGIES] == UNCERTAIN).any()
    positive[NO_FINDING] = float(positive[PATHOLOGIES].sum() == 0 and not suspected and positive[NO_FINDING] == 1)
    return positive


def mesh_agreement() -> pd.DataFrame:
    """Per observation, how well report-level labeler labels agree with the reports' MeSH major tags.

    MeSH indexing was done by hand at Indiana University, independently of any labeler, so it is a fair
    yardstick; reports without findings or impression text are left out.
    """
    from sklearn.metrics import cohen_kappa_score, precision_recall_fscore_support  # only needed here

    sentences = load_sentences()
    codes = label_sentences(sentences.sentence.tolist())
    labels_by_uid = {
        uid: report_labels(codes[rows]) for uid, rows in sentences.groupby("uid", sort=False).indices.items()
    }
    reports = load_reports()
    reports = reports[reports.uid.isin(labels_by_uid)]
    labeler = np.stack([labels_by_uid[uid] for uid in reports.uid])
    mesh = np.stack([mesh_labels(tags) for tags in reports.mesh_major])
    rows = []
    for index, name in enumerate(CHEXPERT_LABELS):
        truth, predicted = mesh[:, index], labeler[:, index]
        precision, recall, f1, _ = precision_recall_fscore_support(
            truth, predicted, average="binary", zero_division=0
        )
        rows.append({
            "finding": name,
            "n_mesh_positive": int(truth.sum()),
            "n_labeler_positive": int(predicted.sum()),
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "agreement": float((truth == predicted).mean()),
            "kappa": cohen_kappa_score(truth, predicted) if truth.any() or predicted.any() else np.nan,
        })
    return pd.DataFrame(rows).round(3)

import math

import numpy as np
import pytest
import torch

from mini_medclip.data.embedded import build_text_pool
from mini_medclip.data.labeler import label_sentence, label_sentences, to_label_vectors
from mini_medclip.data.labels import CHEXPERT_LABELS, FIVE_CLASS_TASK, NUM_LABELS, label_index
from mini_medclip.data.mesh_validation import mesh_agreement, mesh_labels
from mini_medclip.data.pools import TextPool


def code(sentence: str, name: str) -> float:
    return label_sentence(sentence)[label_index(name)]


@pytest.mark.parametrize("sentence, name, expected", [
    ("no pleural effusion", "Pleural Effusion", 0),
    ("there is no evidence of pneumothorax", "Pneumothorax", 0),
    ("no focal consolidation, pleural effusion, or pneumothorax", "Pneumothorax", 0),
    ("lungs are clear without focal consolidation", "Consolidation", 0),
    ("lungs are clear without focal consolidation", "Lung Opacity", 0),
    ("heart size is normal", "Cardiomegaly", 0),
    ("the heart is normal in size", "Cardiomegaly", 0),
    ("the previously seen left pleural effusion has resolved", "Pleural Effusion", 0),
    ("the right upper lobe mass lesion is not seen", "Lung Lesion", 0),
    ("possible small left effusion", "Pleural Effusion", -1),
    ("cannot exclude pneumonia", "Pneumonia", -1),
    ("pneumonia cannot be excluded", "Pneumonia", -1),
    ("left basilar atelectasis versus infiltrate", "Atelectasis", -1),
    ("findings may represent early edema", "Edema", -1),
    ("mild cardiomegaly", "Cardiomegaly", 1),
    ("the heart is mildly enlarged", "Cardiomegaly", 1),
    ("no change in mild cardiomegaly", "Cardiomegaly", 1),
    ("small bilateral pleural effusions", "Pleural Effusion", 1),
    ("blunting of the left costophrenic angle", "Pleural Effusion", 1),
    ("left chest pacemaker with leads in the right ventricle", "Support Devices", 1),
    ("calcified granuloma in the right upper lobe", "Lung Lesion", math.nan),
    ("large pericardial effusion", "Pleural Effusion", math.nan),
    ("degenerative changes of the thoracic spine", "Fracture", math.nan),
])
def test_mention_negation_and_uncertainty(sentence, name, expected):
    np.testing.assert_equal(code(sentence, name), expected)


def test_positive_and_negative_mentions_in_different_clauses():
    codes = label_sentence("no pneumothorax, but there is a small right pleural effusion")
    assert codes[label_index("Pneumothorax")] == 0
    assert codes[label_index("Pleural Effusion")] == 1
    codes = label_sentence("mild cardiomegaly, no pleural effusion")
    assert codes[label_index("Cardiomegaly")] == 1
    assert codes[label_index("Pleural Effusion")] == 0


@pytest.mark.parametrize("sentence, expected", [
    ("no acute cardiopulmonary abnormality", 1),
    ("the lungs are clear", 1),
    ("heart size normal", 1),
    ("no pleural effusion or pneumothorax", 1),
    ("mild cardiomegaly, no pleural effusion", 0),
    ("pacemaker leads in good position, no acute disease", 1),
    ("possible small left effusion", math.nan),
    ("degenerative changes of the thoracic spine", math.nan),
])
def test_no_finding_rule(sentence, expected):
    np.testing.assert_equal(code(sentence, "No Finding"), expected)


def test_label_sentences_matches_single_and_is_fast_enough():
    sentences = ["mild cardiomegaly", "no pleural effusion", "mild cardiomegaly"]
    codes = label_sentences(sentences)
    assert codes.shape == (3, NUM_LABELS)
    np.testing.assert_equal(codes[0], label_sentence("mild cardiomegaly"))
    np.testing.assert_equal(codes[0], codes[2])
    assert label_sentences([]).shape == (0, NUM_LABELS)


def test_to_label_vectors_keeps_only_positives():
    codes = np.array([[1, 0, -1, np.nan] + [np.nan] * (NUM_LABELS - 4)])
    vectors = to_label_vectors(codes)
    assert vectors.dtype == torch.float32
    assert vectors[0, :4].tolist() == [1, 0, 0, 0]


def test_text_pool_covers_the_classes():
    pool = build_text_pool()
    assert isinstance(pool, TextPool)
    assert len(pool) > 3000
    assert len(set(pool.sentences)) == len(pool)
    assert bool((pool.labels.sum(dim=1) > 0).all())
    counts = dict(zip(CHEXPERT_LABELS, pool.labels.sum(dim=0).tolist()))
    assert counts["No Finding"] > 1000
    for name in (*FIVE_CLASS_TASK, "Pneumonia", "Lung Opacity"):
        assert counts[name] >= 30, name


def test_mesh_labels_read_heading_and_qualifier():
    vector = mesh_labels(["Cardiac Shadow/enlarged/mild", "Opacity/lung/base/left", "Thickening/pleura"])
    positive = {CHEXPERT_LABELS[i] for i in np.flatnonzero(vector)}
    assert positive == {"Cardiomegaly", "Lung Opacity", "Pleural Other"}
    assert mesh_labels(["normal"])[label_index("No Finding")] == 1
    assert mesh_labels(["Calcified Granuloma/lung"])[label_index("No Finding")] == 1


def test_mesh_agreement_on_common_findings():
    table = mesh_agreement().set_index("finding")
    assert list(table.columns) == [
        "n_mesh_positive", "n_labeler_positive", "precision", "recall", "f1", "agreement", "kappa",
    ]
    assert len(table) == NUM_LABELS
    for name in ("No Finding", "Cardiomegaly", "Pleural Effusion", "Atelectasis", "Lung Opacity"):
        assert table.loc[name, "f1"] > 0.8, name

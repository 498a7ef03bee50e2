"""Zero-shot: the prompt ensemble is a mean of prompt logits, prompts come from the right places, metrics are right."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mini_medclip.data.prompts import sample_prompts
from mini_medclip.embeddings import embed_images, embed_texts
from mini_medclip.evaluation import linear_probe, pca_map, retrieval_recall
from mini_medclip.zeroshot import ZeroShotClassifier, class_prompts_for, classification_metrics, evaluate_all
from helpers import NORMAL_SENTENCES, untrained_tiny_model


@pytest.fixture(scope="module")
def setup():
    return untrained_tiny_model()


def test_class_score_is_the_mean_of_the_class_prompt_logits(setup):
    model, tokenizer, (_, _, eval_sets) = setup
    prompts = {"A": ["mild edema", "pulmonary edema", "edema"], "B": ["the lungs are clear"]}
    classifier = ZeroShotClassifier(model, tokenizer, prompts)
    images = eval_sets["five_class"].images
    logits = model.logits(embed_images(model, images), embed_texts(model, tokenizer, prompts["A"] + prompts["B"]))
    expected = torch.stack([logits[:, :3].mean(1), logits[:, 3]], dim=1)
    torch.testing.assert_close(classifier.scores(images), expected.detach())
    # A pool and the same images as a tensor give the same predictions, in the order of class_names.
    assert classifier.class_names == ("A", "B")
    assert torch.equal(classifier.predict(images), classifier.predict(images.batch(range(len(images)))))
    torch.testing.assert_close(classifier.predict_proba(images).sum(1), torch.ones(len(images)))


def test_an_empty_class_is_refused(setup):
    model, tokenizer, _ = setup
    with pytest.raises(ValueError, match="at least one prompt"):
        ZeroShotClassifier(model, tokenizer, {"A": ["edema"], "B": []})


def test_prompts_normal_class_uses_report_sentences_and_findings_use_templates(setup):
    _, _, (_, text_pool, eval_sets) = setup
    covid = class_prompts_for(eval_sets["covid"], text_pool, n=2, seed=0)
    assert list(covid) == ["No Finding", "COVID"]
    assert set(covid["No Finding"]) <= set(NORMAL_SENTENCES) and len(covid["No Finding"]) == 2
    assert covid["COVID"] == sample_prompts("COVID", 2, seed=0)
    five = class_prompts_for(eval_sets["five_class"], text_pool, n=10, seed=1)
    assert list(five) == list(eval_sets["five_class"].class_names)
    assert five != class_prompts_for(eval_sets["five_class"], text_pool, n=10, seed=2)


def test_classification_metrics_on_known_predictions():
    targets = np.array([0, 0, 1, 1])
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.2, 0.8]])
    m = classification_metrics(targets, probs)
    assert m["acc"] == 0.75 and m["auroc"] == 1.0  # ranking perfect, one threshold error
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    three = classification_metrics(np.array([0, 1, 2]), np.eye(3))
    assert three == {"acc": 1.0, "macro_f1": 1.0, "auroc": 1.0}


def test_evaluate_all_reports_mean_std_runs_and_confusion_per_task(setup):
    model, tokenizer, (_, text_pool, eval_sets) = setup
    results = evaluate_all(model, tokenizer, eval_sets, text_pool, n_runs=3)
    assert set(results) == {"five_class", "covid", "rsna"}
    five = results["five_class"]
    assert len(five["runs"]) == 3
    assert five["acc"] == pytest.approx(np.mean([r["acc"] for r in five["runs"]]))
    assert five["acc_std"] == pytest.approx(np.std([r["acc"] for r in five["runs"]]))
    confusion = np.array(five["confusion_matrix"])
    assert confusion.shape == (5, 5) and confusion.sum() == len(eval_sets["five_class"])
    assert np.trace(confusion) / confusion.sum() == pytest.approx(five["runs"][0]["acc"])
    assert results == evaluate_all(model, tokenizer, eval_sets, text_pool, n_runs=3)  # deterministic


def test_retrieval_probe_and_map(setup):
    model, tokenizer, (image_pool, text_pool, eval_sets) = setup
    five = eval_sets["five_class"]
    everything = len(text_pool)
    recall = retrieval_recall(model, tokenizer, five, text_pool, ks=(1, 5, everything), n_images=10)
    assert recall["n_images"] == 10 and 0 <= recall["R@1"] <= recall["R@5"] <= 1
    assert recall[f"R@{everything}"] == 1.0  # every image has a sentence about its finding somewhere
    probe = linear_probe(model, image_pool, five)
    assert probe["n_train"] == 50 and probe["acc"] > 0.5  # the blob position is easy to read from random features
    coords = pca_map(embed_images(model, five.images))
    assert coords.shape == (len(five), 2)

import collections
import re

import pytest
import torch

from mini_medclip.data.labels import NUM_LABELS, label_index
from mini_medclip.data.pools import TextPool
from mini_medclip.data.prompts import (
    PROMPT_CLASSES, names_finding, normal_prompts_from_pool, prompt_candidates, sample_prompts,
)
from mini_medclip.data.reports import load_sentences


def test_classes_include_the_zero_shot_tasks():
    assert set(PROMPT_CLASSES) == {
        "Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion", "COVID", "Pneumonia",
        "No Finding",
    }


@pytest.mark.parametrize("class_name", PROMPT_CLASSES)
def test_every_prompt_names_its_finding(class_name):
    candidates = prompt_candidates(class_name)
    assert candidates
    assert all(names_finding(class_name, prompt) for prompt in candidates)


def test_pneumonia_prompts_say_pneumonia():
    assert all("pneumonia" in prompt for prompt in prompt_candidates("Pneumonia"))


@pytest.mark.parametrize("class_name", PROMPT_CLASSES)
def test_candidates_are_distinct_and_tidy(class_name):
    candidates = prompt_candidates(class_name)
    assert len(set(candidates)) == len(candidates)
    assert all(prompt == " ".join(prompt.split()) and prompt for prompt in candidates)


def test_prompt_words_occur_in_the_report_corpus():
    counts = collections.Counter(
        word for sentence in load_sentences().sentence for word in re.findall(r"[a-z0-9-]+", sentence)
    )
    for class_name in PROMPT_CLASSES:
        for prompt in prompt_candidates(class_name):
            rare = [w for w in re.findall(r"[a-z0-9-]+", prompt) if counts[w] < 3]
            assert not rare, (class_name, prompt, rare)


def test_sampling_is_deterministic_and_capped():
    first = sample_prompts("Atelectasis", 10, seed=3)
    assert first == sample_prompts("Atelectasis", 10, seed=3)
    assert first != sample_prompts("Atelectasis", 10, seed=4)
    assert len(set(first)) == 10
    assert sample_prompts("No Finding", 1000, seed=0) == prompt_candidates("No Finding")


def test_unknown_class_names_the_valid_ones():
    with pytest.raises(ValueError, match="Pleural Effusion"):
        prompt_candidates("Pneumothorax")


def _pool() -> TextPool:
    labels = torch.zeros(4, NUM_LABELS)
    labels[0, label_index("No Finding")] = 1
    labels[1, label_index("No Finding")] = 1
    labels[2, label_index("Cardiomegaly")] = 1
    labels[3, [label_index("No Finding"), label_index("Support Devices")]] = 1
    return TextPool(["the lungs are clear", "heart size normal", "mild cardiomegaly", "pacemaker, no acute disease"], labels)


def test_normal_prompts_come_from_no_finding_only_sentences():
    pool = _pool()
    assert sorted(normal_prompts_from_pool(pool, 10, seed=0)) == ["heart size normal", "the lungs are clear"]
    one = normal_prompts_from_pool(pool, 1, seed=5)
    assert one == normal_prompts_from_pool(pool, 1, seed=5) and len(one) == 1


def test_normal_prompts_need_normal_sentences():
    labels = torch.zeros(1, NUM_LABELS)
    labels[0, label_index("Cardiomegaly")] = 1
    with pytest.raises(ValueError, match="No Finding"):
        normal_prompts_from_pool(TextPool(["mild cardiomegaly"], labels), 5)

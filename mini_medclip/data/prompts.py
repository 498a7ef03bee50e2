"""Zero-shot prompts: class descriptions built from severity x subtype x location word lists.

MedCLIP classifies an image by comparing it with a handful of text prompts per class and averaging the
similarities, so the prompts are the classifier. Two choices differ from MedCLIP's own lists:

* every prompt names its finding (MedCLIP's RSNA pneumonia prompts never contain the word "pneumonia",
  e.g. "focal viral at the left lung base"), because a prompt that does not name the class cannot tell
  the text encoder which class it is;
* every word occurs in the Indiana University report corpus that the tokenizer and text encoder learn
  from ("ground glass", common in COVID-19 reports, never appears there, so the COVID prompts describe
  patchy peripheral opacities instead).
"""
from __future__ import annotations

import itertools
import random
import re

import torch

from .labels import CHEXPERT_LABELS, label_index
from .pools import TextPool

_LUNG_LOCATIONS = [
    "", "in the left lung base", "in the right lung base", "at the lung bases", "in the left lower lobe",
    "in the right lower lobe", "in the right middle lobe", "in the lingula", "in the right upper lobe",
    "in the left upper lobe", "in the left midlung", "in the right midlung",
]

# Per class: severity x subtype x location. An empty string leaves that slot out.
PROMPT_TEMPLATES: dict[str, dict[str, list[str]]] = {
    "Atelectasis": {
        "severity": ["", "mild", "minimal", "small", "residual"],
        "subtype": [
            "subsegmental atelectasis", "streaky atelectasis", "platelike atelectasis", "patchy atelectasis",
            "bandlike atelectasis", "discoid atelectasis",
        ],
        "location": _LUNG_LOCATIONS,
    },
    "Cardiomegaly": {
        "severity": ["", "mild", "moderate", "marked", "stable"],
        "subtype": ["cardiomegaly", "enlargement of the cardiac silhouette", "enlarged cardiac silhouette", "enlarged heart"],
        "location": ["", "is present", "is again noted", "unchanged from prior"],
    },
    "Consolidation": {
        "severity": ["", "focal", "patchy", "dense", "increased", "improved"],
        "subtype": ["consolidation", "airspace consolidation", "lobar consolidation"],
        "location": _LUNG_LOCATIONS,
    },
    "Edema": {
        "severity": ["", "mild", "moderate", "severe", "improved", "persistent", "decreased"],
        "subtype": ["pulmonary edema", "interstitial edema", "alveolar edema", "interstitial pulmonary edema"],
        "location": ["", "bilaterally", "with vascular congestion", "with cardiomegaly"],
    },
    "Pleural Effusion": {
        "severity": ["", "small", "moderate", "large", "minimal"],
        "subtype": ["pleural effusion", "layering pleural effusion", "loculated pleural effusion", "pleural effusions"],
        "location": ["", "on the left", "on the right", "bilaterally", "at the left base", "at the right base"],
    },
    "COVID": {
        "severity": ["patchy", "diffuse", "scattered", "bilateral"],
        "subtype": ["airspace opacities", "interstitial opacities", "opacities", "consolidation"],
        "location": ["in the lung periphery", "in the lower lungs", "in both lungs", "at the lung bases", "in the midlung"],
    },
    "Pneumonia": {
        "severity": ["", "early", "focal", "patchy", "multifocal"],
        "subtype": ["pneumonia", "lobar pneumonia", "aspiration pneumonia", "bibasilar pneumonia"],
        "location": _LUNG_LOCATIONS,
    },
    "No Finding": {
        "severity": [""],
        "subtype": [
            "no acute cardiopulmonary abnormality", "no acute cardiopulmonary disease", "the lungs are clear",
            "heart size is normal and the lungs are clear", "normal chest x-ray",
            "no focal consolidation, pleural effusion, or pneumothorax",
            "the cardiomediastinal silhouette is within normal limits",
        ],
        "location": [""],
    },
}
PROMPT_CLASSES: tuple[str, ...] = tuple(PROMPT_TEMPLATES)

# The words that name each class's finding; every prompt of the class contains one of them.
# COVID-19 is absent from the 2013 corpus, so its prompts name its radiographic finding instead.
FINDING_WORDS: dict[str, str] = {
    "Atelectasis": r"atelectasis",
    "Cardiomegaly": r"cardiomegaly|enlarge",
    "Consolidation": r"consolidation",
    "Edema": r"edema",
    "Pleural Effusion": r"effusion",
    "COVID": r"opacities|consolidation",
    "Pneumonia": r"pneumonia",
    "No Finding": r"\bno\b|normal|clear",
}


def _templates(class_name: str) -> dict[str, list[str]]:
    try:
        return PROMPT_TEMPLATES[class_name]
    except KeyError:
        raise ValueError(f"no prompts for class {class_name!r}; expected one of: {', '.join(PROMPT_CLASSES)}") from None


def prompt_candidates(class_name: str) -> list[str]:
    """Every "{severity} {subtype} {location}" of a class, in a fixed order."""
    slots = _templates(class_name)
    combos = itertools.product(slots["severity"], slots["subtype"], slots["location"])
    return [" ".join(" ".join(parts).split()) for parts in combos]


def sample_prompts(class_name: str, n: int, seed: int = 0) -> list[str]:
    """n distinct prompts of a class, the same for the same seed; all of them if n exceeds the candidates."""
    candidates = prompt_candidates(class_name)
    if n >= len(candidates):
        return candidates
    return random.Random(seed).sample(candidates, n)


def normal_prompts_from_pool(text_pool: TextPool, n: int, seed: int = 0) -> list[str]:
    """n real report sentences labelled No Finding and nothing else, as MedCLIP draws its normal prompts.

    A report sentence is what the text encoder saw in training, so it describes "normal" in the
    encoder's own words better than a template can.
    """
    only_no_finding = torch.zeros(len(CHEXPERT_LABELS))
    only_no_finding[label_index("No Finding")] = 1
    normal = [s for s, labels in zip(text_pool.sentences, text_pool.labels) if torch.equal(labels, only_no_finding)]
    if not normal:
        raise ValueError("the text pool has no sentence labelled No Finding only; expected normal report sentences")
    if n >= len(normal):
        return normal
    return random.Random(seed).sample(normal, n)


def names_finding(class_name: str, prompt: str) -> bool:
    """Whether a prompt names its class's finding (see FINDING_WORDS)."""
    return re.search(FINDING_WORDS[class_name], prompt) is not None

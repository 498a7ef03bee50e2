"""Real radiology reports: the Indiana University chest X-ray collection that torchxrayvision ships.

The text tower and its tokenizer learn from real report language, so the course reads the 3,955 Open-i
reports straight out of the installed torchxrayvision wheel at run time. The reports are licensed
CC BY-NC-ND 4.0, which forbids redistributing modified copies, so nothing here is copied into the repo.
"""
from __future__ import annotations

import functools
import re
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd

from .wheel_files import torchxrayvision_file

REPORTS_CREDIT = (
    "Radiology reports: Indiana University Chest X-ray Collection, distributed by Open-i (National Library "
    "of Medicine). Demner-Fushman D. et al., 'Preparing a collection of radiology examinations for "
    "distribution and retrieval', JAMIA 23(2), 2016. Licence CC BY-NC-ND 4.0; read at run time from the "
    "copy that the torchxrayvision package ships."
)

MIN_SENTENCE_WORDS = 3
_SECTIONS = ("FINDINGS", "IMPRESSION")


def reports_archive_path() -> Path:
    """Where the installed torchxrayvision keeps the report archive."""
    return torchxrayvision_file("NLMCXR_reports.tgz")


def _parse_report(xml_bytes: bytes) -> dict:
    root = ET.fromstring(xml_bytes)
    sections = {node.get("Label"): (node.text or "").strip() for node in root.iter("AbstractText")}
    uid = root.find("uId").get("id")
    return {
        "uid": uid,
        "report_id": int(uid.removeprefix("CXR")),
        "findings": sections.get("FINDINGS", ""),
        "impression": sections.get("IMPRESSION", ""),
        "mesh_major": [node.text.strip() for node in root.iter("major") if node.text],
        "mesh_automatic": [node.text.strip() for node in root.iter("automatic") if node.text],
    }


@functools.lru_cache(maxsize=1)
def _load_reports_cached(archive: Path) -> pd.DataFrame:
    if not archive.is_file():
        raise FileNotFoundError(
            f"report archive not found at {archive}; it ships with torchxrayvision (>= 1.3), "
            "so install or reinstall torchxrayvision"
        )
    with tarfile.open(archive) as tar:
        rows = [_parse_report(tar.extractfile(m).read()) for m in tar.getmembers() if m.name.endswith(".xml")]
    return pd.DataFrame(rows).sort_values("report_id", ignore_index=True)


def load_reports() -> pd.DataFrame:
    """One row per report: uid, report_id, findings, impression, mesh_major, mesh_automatic (lists).

    Parsed once per process (about a second); callers get a copy so they cannot change the cache.
    """
    return _load_reports_cached(reports_archive_path()).copy()


# De-identification replaced some words by "XXXX". "x-XXXX" is always "x-ray" (as in "chest x-ray");
# any other placeholder cannot be restored, so it is dropped and the sentence kept if enough remains.
_XRAY_PLACEHOLDER = re.compile(r"\bx-xxxx\b")
_PLACEHOLDER = re.compile(r"\S*xxxx\S*")
# A numbered item ("1. ", "2) ") starts a new sentence; it needs whitespace or the text start before the
# number, so "T11. " or "1.5 cm" are not split.
_NUMBERED_ITEM = re.compile(r"(?:^|(?<=\s))\d{1,2}[.)](?=\s)")
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_SPACES = re.compile(r"\s+")
_EDGE_PUNCTUATION = " .,;:-"


def split_sentences(text: str) -> list[str]:
    """Lower-cased sentences of a report section, placeholders removed, at least 3 words each."""
    text = _XRAY_PLACEHOLDER.sub("x-ray", _NON_ASCII.sub(" ", text.lower()))
    text = _NUMBERED_ITEM.sub(".", text)
    sentences = []
    for piece in _SENTENCE_END.split(text):
        words = _PLACEHOLDER.sub(" ", piece).split()
        sentence = " ".join(words).strip(_EDGE_PUNCTUATION)
        sentence = _SPACES.sub(" ", sentence.replace(" ,", ","))
        if len(sentence.split()) >= MIN_SENTENCE_WORDS:
            sentences.append(sentence)
    return sentences


@functools.lru_cache(maxsize=1)
def _load_sentences_cached(archive: Path) -> pd.DataFrame:
    rows = [
        {"sentence": sentence, "uid": report.uid, "section": section.lower()}
        for report in _load_reports_cached(archive).itertuples()
        for section in _SECTIONS
        for sentence in split_sentences(getattr(report, section.lower()))
    ]
    return pd.DataFrame(rows, columns=["sentence", "uid", "section"])


def load_sentences() -> pd.DataFrame:
    """Every report sentence in reading order (findings, then impression): sentence, uid, section."""
    return _load_sentences_cached(reports_archive_path()).copy()

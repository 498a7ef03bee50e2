"""A rule-based sentence labeler for the 14 CheXpert observations, in the spirit of the CheXpert labeler.

MedCLIP never pairs an image with its own report: it matches any image with any sentence through their
label vectors, so every sentence needs one. The CheXpert labeler (NegBio parsing plus phrase rules) is too
heavy for a course, so this module keeps its three stages in plain regular expressions:

1. mention: phrases that name an observation ("enlarged heart" -> Cardiomegaly);
2. classify each mention: negated (0) if a negation cue precedes it in the same clause ("no", "without",
   "free of") or a denial follows it ("has resolved", "is not seen"); uncertain (-1) if a hedge is near
   ("possible", "may", "cannot exclude", "versus"); else positive (1);
3. No Finding, from the rest (see `_no_finding`).

Codes per sentence: 1 positive, 0 negative, -1 uncertain, NaN not mentioned.
"""
from __future__ import annotations

import re

import numpy as np
import torch

from .labels import CHEXPERT_LABELS, NUM_LABELS, label_index

POSITIVE, NEGATIVE, UNCERTAIN = 1.0, 0.0, -1.0
NO_FINDING = label_index("No Finding")
SUPPORT_DEVICES = label_index("Support Devices")
PATHOLOGIES = [i for i in range(NUM_LABELS) if i not in (NO_FINDING, SUPPORT_DEVICES)]

# Mention phrases (regular-expression fragments, matched on whole words of a lower-cased sentence).
# Lung Lesion deliberately leaves out calcified nodules and granulomas (see EXCLUSIONS): in these reports
# they are healed, benign scars of old infection on otherwise normal films, and CheXpert does not count
# them as lesions either; counting them would make "lesion" mean "granuloma" in about a tenth of the
# studies. The MeSH indexers did tag many of them "Nodule", which costs agreement on Lung Lesion.
MENTIONS: dict[str, list[str]] = {
    "Enlarged Cardiomediastinum": [
        r"(widen(ed|ing)|enlarged|enlargement|prominen(t|ce)) (of )?(the )?(upper |superior )?(cardio ?)?mediastin(um|al)",
        r"(cardio ?)?mediastin(um|al contours?|al silhouette)( (?!not\b)\w+){0,3} (widened|enlarged|prominent)",
        r"(cardio ?)?mediastinal (widening|enlargement|prominence)",
    ],
    "Cardiomegaly": [
        r"cardiomegaly",
        r"(enlarged|large|prominent) (cardiac silhouette|cardiac shadow|heart)",
        r"enlargement of the (cardiac silhouette|heart)",
        r"cardiac enlargement",
        r"(heart|cardiac silhouette|cardiac shadow|cardiac contour|heart size|cardiac size)( (?!not\b)\w+){0,4} (enlarged|large)",
    ],
    "Lung Lesion": [
        r"(?<!calcified )(pulmonary |lung |noncalcified |solid )?(nodules?|masse?s?|nodular densit(y|ies))",
        r"(tumou?rs?|neoplasms?|malignan(cy|cies)|carcinoma|metasta(sis|ses|tic disease)|cavitary lesions?)",
    ],
    "Lung Opacity": [
        r"opacit(y|ies)", r"opacification", r"opacified",
        r"infiltrat(e|es|ion|ive)",
        r"air ?space (disease|process|densit(y|ies))",
        r"(patchy|hazy|ill-defined) densit(y|ies)",
    ],
    "Edema": [
        r"(?<!soft tissue )edema", r"(pulmonary |vascular )congestion", r"chf", r"congestive heart failure", r"heart failure",
        r"vascular (prominence|engorgement)", r"prominent (pulmonary )?vasculature", r"(pulmonary )?venous hypertension",
    ],
    "Consolidation": [r"consolidat(ion|ions|ive|ed)"],
    "Pneumonia": [r"pneumonias?", r"pneumonitis", r"bronchopneumonia", r"infection"],
    "Atelectasis": [
        r"atelecta(sis|ses|tic)",
        r"(lobe|lobar|lung) collapse", r"collapse of the (\w+ ){0,3}(lung|lobes?)", r"collapsed (\w+ ){0,3}(lung|lobe)",
    ],
    "Pneumothorax": [r"(hydro|hemo)?pneumothora(x|ces)", r"pleural air"],
    "Pleural Effusion": [
        r"(?<!pericardial )effusions?", r"pleural fluid", r"hydrothorax",
        r"blunt(ing|ed) (of )?(the )?(\w+ ){0,3}costophrenic",
        r"costophrenic (\w+ ){0,2}(is |are )?blunt(ing|ed)", r"hydropneumothorax",
    ],
    "Pleural Other": [
        r"pleural (thickening|plaques?|scarring|calcifications?)", r"fibrothorax", r"pleural-parenchymal scarring",
    ],
    "Fracture": [r"fractur(e|es|ed)"],
    "Support Devices": [
        r"catheters?", r"picc", r"central (venous )?lines?", r"port-?a-?cath", r"portacatheter",
        r"(endotracheal|tracheostomy|chest|feeding|nasogastric|enteric|et|ng) tubes?",
        r"pacemakers?", r"(a?icd|defibrillator|cardiac generator|pacer)", r"(sternotomy|sternal) wires?",
        r"sternotomy", r"(surgical|vascular|cabg) clips", r"stents?", r"(valve replacement|prosthetic valve)",
        r"(orthopedic |fixation )hardware", r"shunt (tubing|catheter)", r"tracheostomy", r"devices?", r"leads",
        r"cabg", r"(graft|cabg) markers", r"tip (\w+ ){0,4}(svc|superior vena cava|right atrium|cavoatrial junction|carina)",
    ],
}

# A mention in a clause that also matches these is about something else: an old, healed granulomatous
# infection is neither a lesion nor a pneumonia, and a "history of malignancy" is not a finding on the film.
EXCLUSIONS: dict[str, str] = {
    "Lung Lesion": r"granulom|history of",
    "Pneumonia": r"granulom|histoplasm|tubercul",
}

# Statements of normality that deny an observation without naming it ("heart size is normal").
_HEART_PHRASE = r"(heart|cardiac|(cardiac|heart) silhouette|cardiac size|heart size|cardiac contours?)"
_NORMAL_PHRASE = r"(normal|within normal limits|unremarkable|not enlarged)"
NORMAL_STATEMENTS: dict[str, list[str]] = {
    "Cardiomegaly": [
        rf"{_HEART_PHRASE}( size)?( is| are| appears?| remains?)?( again)? {_NORMAL_PHRASE}",
        rf"normal(-| )(sized? )?{_HEART_PHRASE}",
        r"(heart|cardiac silhouette) (is )?normal in size",
        r"cardi(o|a)? ?mediastinal (silhouette|contours?)( is| are| appears?| remains?)? (normal|within normal limits|unremarkable)",
        r"normal cardi(o|a)? ?mediastinal",
        r"heart and mediastinum (are )?normal",
    ],
    "Enlarged Cardiomediastinum": [
        r"(cardi(o|a)? ?mediastinal|mediastinal) (silhouette|contours?)( is| are| appears?| remains?)? (normal|within normal limits|unremarkable)",
        r"normal (cardi(o|a)? ?mediastinal|mediastinal)", r"mediastinum (is )?(normal|unremarkable|within normal limits)",
        r"heart and mediastinum (are )?normal",
    ],
    "Lung Opacity": [r"lungs? (are |is |appears? |remains? )?(\w+ )?(and )?clear\b(?! of)"],
    "Pleural Effusion": [r"costophrenic (angles|sulci|recesses) (are )?(sharp|clear)"],
}

# Statements that describe a normal study as a whole; they set No Finding only.
NORMAL_STUDY = [
    r"(no|negative for|without)( (?!change\b)\w+){0,3} (abnormalit(y|ies)|disease|process|findings?|pathology|injury)",
    r"normal (chest|study|exam|examination|radiograph)",
    r"(is|are|appears?|remains?) (normal|within normal limits|unremarkable|intact)",
    r"(negative|unremarkable) (chest|study|exam)",
]

# Hedges that contain a negation word come first, so "cannot exclude" is uncertain, not negated.
UNCERTAIN_NEGATIONS = [
    r"(can ?not|can't|could not|not|difficult to)( be)?( completely| entirely| confidently)? (excluded|exclude|ruled out|rule out)",
]
# "No change in cardiomegaly" asserts cardiomegaly: these phrases are not negations of what follows.
PSEUDO_NEGATIONS = [r"no (significant |interval |significant interval )?change", r"not (significantly )?changed"]
PRE_NEGATIONS = [
    r"no", r"not", r"without", r"free of", r"negative for", r"clear of", r"absence of", r"absent",
    r"resolution of", r"rather than", r"removal of", r"neither", r"nor",
]
# A denial after the mention must follow within a few words ("effusion on the left has resolved").
POST_NEGATIONS = [
    r"(is|are|was|were|has been|have been) (not|no longer) (seen|identified|present|visualized|appreciated|evident|noted|demonstrated)",
    r"(has|have)? ?resolved", r"(is|are)? ?absent", r"(has|have been) removed", r"not (seen|identified|present)",
    r"(is|are|appears?)( grossly)? (normal|within normal limits|within limits of normal|unremarkable)",
]
PRE_UNCERTAINTIES = [
    r"may", r"might", r"could", r"possible", r"possibly", r"probable", r"probably", r"questionable",
    r"question of", r"suspicious for", r"suggestive of", r"suggests?", r"suggesting", r"concerning for", r"concern for",
    r"versus", r"vs", r"differential", r"consider", r"cannot", r"indeterminate", r"borderline", r"suspected",
    r"equivocal",
]
POST_UNCERTAINTIES = [
    r"(is|are) (possible|suspected|questioned|not excluded|likely)", r"versus", r"vs", r"could", r"may",
    r"(is )?in the differential", r"(is )?(another|a) consideration",
]
# A negation or hedge reaches only as far as its clause: these words start a new one.
CLAUSE_BREAKS = [
    r";", r"\bbut\b", r"\bhowever\b", r"\balthough\b", r"\bthough\b", r"\bexcept\b", r"\bwhich\b",
    r"\bother than\b", r"\bapart from\b", r"\baside from\b", r"\bthere (is|are)\b", r"\bwith\b", r"\bstable\b",
    r"\bpersistent\b", r"\bunchanged\b", r", (and )?(the )?(heart|lungs?)\b",
]


def _compile_words(patterns) -> re.Pattern:
    return re.compile(r"\b(?:" + "|".join(patterns) + r")\b")


_MENTION_RES = {CHEXPERT_LABELS.index(name): _compile_words(p) for name, p in MENTIONS.items()}
_EXCLUSION_RES = {CHEXPERT_LABELS.index(name): re.compile(p) for name, p in EXCLUSIONS.items()}
_NORMAL_STATEMENT_RES = {CHEXPERT_LABELS.index(name): _compile_words(p) for name, p in NORMAL_STATEMENTS.items()}
_NORMAL_STUDY_RE = _compile_words(NORMAL_STUDY)
_UNCERTAIN_NEGATION_RE = _compile_words(UNCERTAIN_NEGATIONS)
_PSEUDO_NEGATION_RE = _compile_words(PSEUDO_NEGATIONS)
_PRE_NEGATION_RE = _compile_words(PRE_NEGATIONS)
_POST_NEGATION_RE = re.compile(r"^(?: [\w/-]+){0,3}? (?:" + "|".join(POST_NEGATIONS) + r")\b")
_PRE_UNCERTAINTY_RE = _compile_words(PRE_UNCERTAINTIES)
_POST_UNCERTAINTY_RE = _compile_words(POST_UNCERTAINTIES)
_CLAUSE_BREAK_RE = re.compile("|".join(CLAUSE_BREAKS))


def _clauses(sentence: str) -> list[str]:
    """Split at clause breaks; the break word stays at the start of the clause it opens."""
    starts = [0] + [m.start() for m in _CLAUSE_BREAK_RE.finditer(sentence) if m.start() > 0]
    return [sentence[a:b] for a, b in zip(starts, starts[1:] + [len(sentence)])]


def _classify_mention(clause: str, start: int, end: int) -> float:
    before, after = _PSEUDO_NEGATION_RE.sub("", clause[:start]), clause[end:]
    if _UNCERTAIN_NEGATION_RE.search(clause):
        return UNCERTAIN
    if _PRE_NEGATION_RE.search(before) or _POST_NEGATION_RE.match(after):
        return NEGATIVE
    if _PRE_UNCERTAINTY_RE.search(before) or _POST_UNCERTAINTY_RE.search(after):
        return UNCERTAIN
    return POSITIVE


def _merge(current: float, new: float) -> float:
    """Several mentions of one observation: positive beats uncertain beats negative (CheXpert's order)."""
    if np.isnan(current):
        return new
    rank = {POSITIVE: 2, UNCERTAIN: 1, NEGATIVE: 0}
    return current if rank[current] >= rank[new] else new


def _no_finding(codes: np.ndarray, normal_study: bool) -> float:
    """0 when the sentence asserts a pathology, 1 for a normal statement, else not mentioned.

    A sentence is a normal statement when it describes a normal study ("no acute cardiopulmonary
    abnormality") or denies at least one observation ("no pleural effusion"), and suspects nothing: a
    hedged sentence ("possible small effusion") is neither normal nor abnormal. Support Devices do not
    count as a pathology: a normal film with a pacemaker is still a normal film.
    """
    pathology = codes[PATHOLOGIES]
    if np.any(pathology == POSITIVE):
        return NEGATIVE
    if np.any(pathology == UNCERTAIN):
        return np.nan
    if normal_study or np.any(codes == NEGATIVE):
        return POSITIVE
    return np.nan


def label_sentence(sentence: str) -> np.ndarray:
    """The 14 codes of one sentence: 1 positive, 0 negative, -1 uncertain, NaN not mentioned."""
    text = " ".join(sentence.lower().split())
    codes = np.full(NUM_LABELS, np.nan)
    for clause in _clauses(text):
        for index, mention_re in _MENTION_RES.items():
            if index in _EXCLUSION_RES and _EXCLUSION_RES[index].search(clause):
                continue
            for match in mention_re.finditer(clause):
                codes[index] = _merge(codes[index], _classify_mention(clause, match.start(), match.end()))
    for index, statement_re in _NORMAL_STATEMENT_RES.items():
        if np.isnan(codes[index]) and statement_re.search(text) and "otherwise" not in text:
            codes[index] = NEGATIVE
    codes[NO_FINDING] = _no_finding(codes, bool(_NORMAL_STUDY_RE.search(text)))
    return codes


def label_sentences(sentences) -> np.ndarray:
    """Codes for many sentences, (N, 14); repeated sentences are labelled once."""
    unique = {s: label_sentence(s) for s in dict.fromkeys(sentences)}
    return np.stack([unique[s] for s in sentences]) if unique else np.empty((0, NUM_LABELS))


def to_label_vectors(codes) -> torch.Tensor:
    """The 0/1 vectors training uses: positive -> 1; negative, unmentioned and uncertain -> 0.

    Uncertain becomes 0 ("U-Zeros") because that is what MedCLIP does with its image labels (-1 -> 0):
    the similarity between an image and a text label vector then compares like with like. MedCLIP's own
    sentence table kept -1, which lets a hedged sentence push images of that finding away; a course that
    explains the loss as "shared positive findings" is clearer without negative similarities.
    """
    codes = np.asarray(codes, dtype=float)
    return torch.from_numpy(np.nan_to_num(codes, nan=0.0) == POSITIVE).float()

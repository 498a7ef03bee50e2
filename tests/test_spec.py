"""Data specs: the three formats load, paths resolve against the spec's folder, the fingerprint follows the
files, unreadable images fail (named) or are skipped (counted), and every malformed spec is a one-line error."""
from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest
import torch

from mini_medclip.config import get_config
from mini_medclip.data.sources import data_fingerprint, data_record, load_data, with_data_spec
from mini_medclip.data.spec import load_spec_data, read_spec, spec_fingerprint
from real_data import medclip_spec, medmnist_spec, write_spec, xrv_spec


@pytest.mark.parametrize("make, task, n_images", [(medclip_spec, "five_class", 36), (xrv_spec, "rsna", None),
                                                  (medmnist_spec, "five_class", 30)])
def test_each_format_loads_through_the_config(make, task, n_images, tmp_path):
    cfg = with_data_spec(get_config("tiny", data__image_size=32), make(tmp_path))
    image_pool, text_pool, eval_sets = load_data(cfg)
    assert cfg.data.n_train_images == len(image_pool) and (n_images is None or len(image_pool) == n_images)
    assert list(eval_sets) == [task] and len(text_pool) > 0
    assert image_pool.batch([0, 1]).shape == (2, 1, 32, 32)
    record = data_record(cfg)
    assert record["source"] == str(tmp_path / "data.json") and record["n_images"] == len(image_pool)
    assert cfg.to_dict()["data"]["source"] == record["source"]  # a spec's runs are keyed apart from the phantoms'


def test_paths_resolve_against_the_spec_folder_and_the_files_have_digests(tmp_path):
    spec_path = medclip_spec(tmp_path)
    spec = read_spec(spec_path)
    assert spec["images"] == str(tmp_path / "train.csv") and spec["eval"]["five_class"]["csv"] == str(tmp_path / "test.csv")
    card = load_spec_data(spec_path, 32).card
    assert set(card["files"]) == {str(tmp_path / name) for name in ("train.csv", "test.csv", "sentence_label.csv")}
    assert all(len(digest) == 64 for digest in card["files"].values())


def test_the_fingerprint_follows_the_listed_files(tmp_path):
    spec_path = medclip_spec(tmp_path)
    cfg = with_data_spec(get_config("tiny"), spec_path)
    before = data_fingerprint(cfg.data)
    assert before == spec_fingerprint(spec_path) != data_fingerprint(get_config("tiny").data)
    sentences = tmp_path / "sentence_label.csv"
    text = sentences.read_text()
    sentences.write_text(text + text.splitlines()[1] + "\n")  # one sentence more
    assert data_fingerprint(cfg.data) != before


def test_the_embedded_configs_keep_their_keys():
    """Keys made before real data came in (model cache, stored results, checkpoints) name the same entries."""
    cfg = get_config("tiny")
    assert "source" not in cfg.to_dict()["data"]
    assert cfg.key() == dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, source="embedded")).key()


def _break_first_image(tmp_path) -> str:
    """Overwrite the first relative PNG of train.csv with bytes that are not an image; return its imgpath."""
    imgpath = next(path for path in pd.read_csv(tmp_path / "train.csv")["imgpath"] if path.startswith("png/"))
    (tmp_path / imgpath).write_bytes(b"\x89PNG\r\n\x1a\n this is not the rest of a PNG")
    return imgpath


def test_an_unreadable_image_fails_naming_the_file_unless_skip_is_asked(tmp_path):
    medclip_spec(tmp_path)
    imgpath = _break_first_image(tmp_path)
    pool = load_spec_data(tmp_path / "data.json", 32).image_pool
    with pytest.raises(ValueError, match=f"{imgpath}: cannot decode image"):
        pool.batch(range(len(pool)))
    spec = json.loads((tmp_path / "data.json").read_text())
    skipping = write_spec(tmp_path, {**spec, "bad_images": "skip"}, "skip.json")
    data = load_spec_data(skipping, 32)
    assert len(data.image_pool) == 35 and data.image_pool.batch(range(35)).shape == (35, 1, 32, 32)
    skipped = data.card["skipped_unreadable"]
    assert skipped["image_pool"]["count"] == 1 and imgpath in skipped["image_pool"]["first"][0]
    assert skipped["five_class"]["count"] == 0


@pytest.mark.parametrize("content, expected", [
    ("{not json", "not a JSON data spec"),
    ("[1, 2]", 'holds a JSON list; expected an object with a "format" key'),
    ('{"format": "dicom"}', "invalid format in {spec}: 'dicom'; expected one of: medclip, torchxrayvision, medmnist"),
    ('{"format": "medclip", "images": "a.csv"}', "missing key(s) ['sentences', 'eval'] for format 'medclip'"),
    ('{"format": "medmnist", "npz": "a.npz", "split": "test"}',
     "unknown key(s) ['split'] for format 'medmnist'; expected npz and optionally flavour, train_split"),
    ('{"format": "medmnist", "npz": "a.npz", "bad_images": "ignore"}', "invalid bad_images in {spec}: 'ignore'; expected one of: fail, skip"),
    ('{"format": "medclip", "images": "a.csv", "sentences": "s.csv", "eval": {}}', "expected an object naming at least one evaluation set"),
])
def test_malformed_specs_name_the_file_and_what_is_expected(content, expected, tmp_path):
    spec = write_spec(tmp_path, {})
    spec.write_text(content)
    with pytest.raises(ValueError) as err:
        read_spec(spec)
    assert expected.format(spec=spec) in str(err.value) and str(spec) in str(err.value)


def test_a_spec_whose_files_or_entries_are_wrong_says_which(tmp_path):
    spec_path = medclip_spec(tmp_path)
    spec = json.loads(spec_path.read_text())
    missing = write_spec(tmp_path, {**spec, "images": "nowhere.csv"}, "missing.json")
    with pytest.raises(FileNotFoundError, match="nowhere.csv: file not found"):
        load_spec_data(missing, 32)
    no_classes = write_spec(tmp_path, {**spec, "eval": {"five_class": {"csv": "test.csv"}}}, "no_classes.json")
    with pytest.raises(ValueError, match="eval set 'five_class' is .*expected an object with exactly the keys csv, classes"):
        load_spec_data(no_classes, 32)
    bad_class = write_spec(tmp_path, {**spec, "eval": {"x": {"csv": "test.csv", "classes": ["Pneumothorax", "Flu"]}}}, "flu.json")
    with pytest.raises(ValueError, match="'Flu'"):
        load_spec_data(bad_class, 32)


def test_a_torchxrayvision_spec_names_the_valid_classes_and_arguments(tmp_path):
    pytest.importorskip("torchxrayvision")
    spec = json.loads(xrv_spec(tmp_path).read_text())
    for name, dataset, expected in [
        ("unknown.json", {"class": "Imagenet_Dataset"}, "unknown torchxrayvision dataset in .*'Imagenet_Dataset'; expected one of: .*NIH_Dataset"),
        ("typo.json", {**spec["dataset"], "img_path": "x"}, "unknown parameter\\(s\\) img_path for torchxrayvision dataset"),
        ("noclass.json", {"imgpath": "rsna"}, '"dataset" is .*expected an object with "class"'),
    ]:
        with pytest.raises(ValueError, match=expected):
            load_spec_data(write_spec(tmp_path, {**spec, "dataset": dataset}, name), 32)
    assert torch.is_tensor(load_spec_data(tmp_path / "data.json", 32).image_pool.labels)

"""The command line on real-format data: `data`, `train`, `evaluate`, an attack and a defense read a data spec,
and metrics.json records which data was used. The full preset runs the same path on 224 px radiographs."""
from __future__ import annotations

import json

import pytest

from mini_medclip.cli import main
from real_data import medclip_spec, medmnist_spec, write_spec, xrv_spec

FORMATS = {"medclip": medclip_spec, "torchxrayvision": xrv_spec, "medmnist": medmnist_spec}


def _metrics(folder) -> dict:
    return json.loads((folder / "metrics.json").read_text())


@pytest.mark.parametrize("fmt", FORMATS)
def test_train_and_evaluate_on_each_format_record_the_data(fmt, tmp_path, capsys):
    (tmp_path / "data").mkdir()
    spec = FORMATS[fmt](tmp_path / "data")
    run = tmp_path / "run"
    assert main(["train", "--data", str(spec), "--out", str(run), "--steps", "2", "--batch-size", "16"]) == 0
    assert "images/s" in capsys.readouterr().out
    metrics = _metrics(run)
    assert metrics["data"]["source"] == str(spec) and metrics["data"]["format"] == fmt
    assert metrics["config"]["data"]["source"] == str(spec) and metrics["train_images_per_second"] > 0
    assert main(["evaluate", "--checkpoint", str(run), "--out", str(tmp_path / "again")]) == 0
    again = _metrics(tmp_path / "again")
    assert again["zero_shot"] == metrics["zero_shot"] and again["data"] == metrics["data"]
    assert main(["data", "--data", str(spec), "--out", str(tmp_path / "card")]) == 0
    card = json.loads((tmp_path / "card" / "data_card.json").read_text())
    assert card["image_pool"]["n_images"] == metrics["data"]["n_images"] == metrics["config"]["data"]["n_train_images"]
    assert (tmp_path / "card" / "images.png").is_file()


def test_worker_processes_decode_the_same_images(tmp_path):
    spec = medclip_spec(tmp_path)
    runs = {workers: tmp_path / f"workers-{workers}" for workers in (0, 2)}
    for workers, run in runs.items():
        assert main(["train", "--data", str(spec), "--out", str(run), "--steps", "3", "--batch-size", "16",
                     "--workers", str(workers)]) == 0
    assert _metrics(runs[0])["zero_shot"] == _metrics(runs[2])["zero_shot"]


def test_an_attack_and_a_defense_on_real_data(tmp_path):
    spec = medclip_spec(tmp_path)
    run = tmp_path / "badmatch"
    argv = ["--data", str(spec), "--steps", "2", "--batch-size", "16", "--poison-rate", "0.1"]
    assert main(["train", "--attack", "badmatch", "--out", str(run), *argv]) == 0
    attack = _metrics(run)["attack"]
    assert attack["five_class"]["poisoned"] == round(0.1 * 36) and 0 <= attack["five_class"]["asr"] <= 1
    assert main(["defend", "--defense", "spectral", "--attack", "badmatch", "--out", str(tmp_path / "defense"), *argv]) == 0
    detection = json.loads((tmp_path / "defense" / "defense.json").read_text())["detection"]
    assert detection["poisoned"] == round(0.1 * 36) and 0 <= detection["auroc"] <= 1


def test_a_bad_spec_is_one_line_naming_it(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--data", str(tmp_path / "none.json"), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert f"argument --data: '{tmp_path / 'none.json'}': file not found" in err and err.count("\n") == 1
    spec = write_spec(tmp_path, {"format": "dicom"})
    assert main(["train", "--data", str(spec), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert f"invalid format in {spec}: 'dicom'" in err and err.count("\n") == 1


def test_the_full_preset_end_to_end_on_224_px_files(tmp_path):
    """ResNet-50 and a BERT-base-size text tower on MedCLIP-format radiographs at 224 px: train, evaluate,
    BadMatch and a spectral-signature audit. A few steps each on 100 images: every image is embedded by
    ResNet-50 several times (zero-shot, linear probe, attack scores, the audit), which dominates on a CPU."""
    spec = medclip_spec(tmp_path, n_train=80, n_eval=20, size=224)
    schedule = ["--preset", "full", "--data", str(spec), "--steps", "2", "--batch-size", "8"]
    assert main(["train", "--out", str(tmp_path / "clean"), "--workers", "2", *schedule]) == 0
    clean = _metrics(tmp_path / "clean")
    assert clean["config"]["model"]["resnet_arch"] == "resnet50" and clean["config"]["data"]["image_size"] == 224
    assert main(["evaluate", "--checkpoint", str(tmp_path / "clean"), "--out", str(tmp_path / "again")]) == 0
    assert _metrics(tmp_path / "again")["zero_shot"] == clean["zero_shot"]
    assert main(["train", "--attack", "badmatch", "--poison-rate", "0.05", "--out", str(tmp_path / "badmatch"), *schedule]) == 0
    assert _metrics(tmp_path / "badmatch")["attack"]["five_class"]["poisoned"] == 4
    assert main(["defend", "--defense", "spectral", "--poison-rate", "0.05", "--out", str(tmp_path / "defense"), *schedule]) == 0
    assert json.loads((tmp_path / "defense" / "defense.json").read_text())["detection"]["poisoned"] == 4

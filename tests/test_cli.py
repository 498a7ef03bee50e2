"""The CLI: one-line errors for bad options; `train` writes a checkpoint and metrics that `evaluate` reproduces."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from mini_medclip.cli import main
from mini_medclip.data.label_sampler import chexpert_table_path
from mini_medclip.files import sha256_file


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["train", "--out", "x", "--loss", "infonce"], ["'infonce'", "semantic", "clip"]),
        (["train", "--out", "x", "--image-encoder", "swin"], ["'swin'", "resnet", "vit"]),
        (["train", "--out", "x", "--preset", "huge"], ["'huge'", "tiny", "full"]),
        (["train", "--out", "x", "--steps", "0"], ["'0'", "expected a positive integer"]),
        (["fly"], ["'fly'", "train", "evaluate", "data"]),
        (["defend", "--out", "x", "--defense", "prayer"], ["'prayer'", "spectral", "strip", "decree", "cleanclip"]),
        (["defend", "--out", "x", "--defense", "strip", "--attack", "baddist"], ["'baddist'", "clean", "badmatch"]),
        (["reproduce", "--out", "x", "--preset", "huge"], ["'huge'", "tiny", "full"]),
        (["reproduce", "--out", "x", "--plan", "everything"], ["'everything'", "paper", "study"]),
        (["train", "--out", "x", "--attack", "badnets"], ["'badnets'", "baddist+badmatch"]),
    ],
)
def test_bad_options_exit_nonzero_with_one_line_naming_the_choices(argv, expected, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code != 0
    err = capsys.readouterr().err
    assert all(word in err for word in expected) and err.count("\n") == 1


def _one_line_exit_2(argv, capsys) -> str:
    """Run `main(argv)`, which must stop with exit status 2 and one line on stderr; return that line."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and "Traceback" not in err
    return err


@pytest.mark.parametrize("verb", [["data"], ["train"], ["reproduce"], ["defend", "--defense", "strip"],
                                  ["evaluate", "--checkpoint", "run"]])
def test_an_out_folder_that_cannot_be_one_is_refused_before_any_work(verb, tmp_path, capsys):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("")
    err = _one_line_exit_2([*verb, "--out", str(a_file)], capsys)
    assert f"argument --out: '{a_file}' is a file; expected a folder (new, or one that exists)" in err
    err = _one_line_exit_2([*verb, "--out", str(a_file / "run")], capsys)
    assert f"'{a_file / 'run'}': {a_file} is a file, so no folder can be made under it; expected a folder" in err


def test_cache_export_refuses_a_folder_as_its_bundle_file(tmp_path, capsys):
    err = _one_line_exit_2(["cache", "export", "--out", str(tmp_path)], capsys)
    assert f"argument --out: '{tmp_path}' is a folder; expected a file name (new, or a file to replace)" in err


@pytest.mark.parametrize("argv, expected", [
    (["data", "--out", "x", "--seed", "abc"], "argument --seed: invalid value 'abc'; expected an integer in [0, 4294967295]"),
    (["train", "--out", "x", "--seed", "-1"], "argument --seed: invalid value '-1'; expected an integer in [0, 4294967295]"),
    (["train", "--out", "x", "--steps", "ten"], "argument --steps: invalid value 'ten'; expected a positive integer"),
])
def test_integer_options_name_the_option_the_value_and_the_range(argv, expected, capsys):
    assert expected in _one_line_exit_2(argv, capsys)


def test_reproduce_passes_its_plan_and_leaves_the_defenses_to_it_unless_skipped(tmp_path, monkeypatch, capsys):
    import mini_medclip.experiments.reproduce as reproduce_module

    calls = []
    monkeypatch.setattr(reproduce_module, "reproduce", lambda cfg, out, plan, with_defenses:
                        calls.append((plan, with_defenses)) or pd.DataFrame({"key": ["a"]}))
    main(["reproduce", "--out", str(tmp_path / "a"), "--plan", "study"])
    main(["reproduce", "--out", str(tmp_path / "b"), "--skip-defenses"])
    assert calls == [("study", None), ("paper", False)]


def test_evaluate_without_a_checkpoint_is_a_one_line_error(tmp_path, capsys):
    assert main(["evaluate", "--checkpoint", str(tmp_path / "none"), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "no such checkpoint folder" in err and err.count("\n") == 1


def test_train_writes_metrics_that_evaluate_reproduces(tiny_embedded_data, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    argv = ["train", "--preset", "tiny", "--out", str(run), "--steps", "2", "--loss", "clip", "--seed", "3"]
    assert main(argv) == 0
    assert "zero-shot: five_class acc" in capsys.readouterr().out
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics) == {"zero_shot", "retrieval", "linear_probe", "train_seconds", "train_images_per_second", "config", "data"}
    assert metrics["data"]["source"] == "embedded"
    assert set(metrics["zero_shot"]) == {"five_class", "covid", "rsna"}
    assert {"acc", "acc_std", "macro_f1", "auroc"} <= set(metrics["zero_shot"]["covid"])
    assert metrics["config"]["train"] == {**metrics["config"]["train"], "loss": "clip", "seed": 3, "steps": 2}
    assert (run / "checkpoint" / "model.safetensors").is_file()

    assert main(["evaluate", "--checkpoint", str(run), "--out", str(tmp_path / "again")]) == 0
    assert json.loads((tmp_path / "again" / "metrics.json").read_text()) == metrics
    # Training again into the same folder finds the finished run and reports the same numbers.
    assert main(argv) == 0
    assert json.loads((run / "metrics.json").read_text()) == metrics


def test_data_writes_a_card_and_a_labelled_grid(tmp_path, capsys):
    out = tmp_path / "data"
    assert main(["data", "--preset", "tiny", "--out", str(out), "--seed", "5"]) == 0
    card = json.loads((out / "data_card.json").read_text())
    assert card["seed"] == 5 and card["image_size"] == 64
    assert card["torchxrayvision_files"]["chexpert_train.csv.gz"] == sha256_file(chexpert_table_path())
    assert card["image_pool"]["n_images"] == 10_000
    assert card["image_pool"]["per_label"]["Pleural Other"] == 0  # not drawn, so never labelled
    assert card["text_pool"]["n_sentences"] > 3_000
    assert set(card["eval_sets"]) == {"five_class", "covid", "rsna"}
    assert all(n == 100 for n in card["eval_sets"]["five_class"]["per_class"].values())
    assert (out / "phantoms.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_data_with_an_invalid_preset_is_a_one_line_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "--preset", "huge", "--out", "x"])
    assert exit_info.value.code != 0
    err = capsys.readouterr().err
    assert "'huge'" in err and "tiny" in err and err.count("\n") == 1


def test_train_with_badmatch_writes_attack_metrics_per_task(tiny_embedded_data, tmp_path, monkeypatch, capsys):
    run = tmp_path / "poisoned"
    argv = ["train", "--out", str(run), "--steps", "2", "--attack", "badmatch", "--trigger", "patch", "--poison-rate", "0.1"]
    assert main(argv) == 0
    attack = json.loads((run / "metrics.json").read_text())["attack"]
    assert attack["config"]["trigger"] == "patch" and attack["config"]["rate"] == 0.1
    for task in ("five_class", "covid", "rsna"):
        assert {"ba", "asr", "asr_all_images", "poisoned"} <= set(attack[task])
        assert attack[task]["poisoned"] == 6  # round(0.1 x 60 training images)
        assert 0 <= attack[task]["asr"] <= 1


@pytest.mark.parametrize("argv, expected", [
    (["--trigger", "zap"], ["'zap'", "patch", "fourier", "blended", "warp"]),
    (["--poison-rate", "1.5"], ["'1.5'", "[0, 1]"]),
])
def test_bad_attack_options_are_one_line_errors(argv, expected, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--out", "x", "--attack", "badmatch", *argv])
    assert exit_info.value.code != 0
    err = capsys.readouterr().err
    assert all(word in err for word in expected) and err.count("\n") == 1


def test_train_with_baddist_badmatch_fine_tunes_from_the_tampered_release(tiny_embedded_data, tmp_path, monkeypatch, capsys):
    import mini_medclip.experiments.run_folder as run_folder_module
    from mini_medclip.models import MedCLIP
    from mini_medclip.tokenizer import train_tokenizer
    from mini_medclip.train import TrainResult

    releases = []

    def fake_release(cfg, bcfg, device=None, progress=True):  # a stand-in provider model, untrained
        releases.append(bcfg)
        tokenizer = train_tokenizer(["no finding"], cfg.model.vocab_size)
        return TrainResult(MedCLIP(cfg.model, len(tokenizer), cfg.data.image_size), tokenizer)

    monkeypatch.setattr(run_folder_module, "tampered_release", fake_release)
    run = tmp_path / "victim"
    argv = ["train", "--out", str(run), "--steps", "4", "--attack", "baddist+badmatch", "--poison-rate", "0.1",
            "--baddist-variant", "target"]
    assert main(argv) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert releases[0].variant == "target" and releases[0].trigger == "patch"
    assert metrics["config"]["train"]["steps"] == 2  # the victim fine-tunes: half the steps of the run asked for
    assert metrics["attack"]["config"]["baddist"]["variant"] == "target"
    assert all(metrics["attack"][t]["poisoned"] == 6 for t in ("five_class", "covid", "rsna"))


def test_defend_refuses_a_rate_that_poisons_nothing(tmp_path, capsys):
    code = main(["defend", "--out", str(tmp_path), "--defense", "spectral", "--poison-rate", "0.00001"])
    err = capsys.readouterr().err
    assert code == 2 and "0.00001" in err.replace("1e-05", "0.00001") and "at least 1/10000" in err


def test_train_refuses_a_folder_that_holds_another_attack(tiny_embedded_data, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--steps", "2"]) == 0
    code = main(["train", "--out", str(run), "--steps", "2", "--attack", "badmatch", "--poison-rate", "0.1"])
    err = capsys.readouterr().err
    assert code == 2 and "holds another run (no attack)" in err and "badmatch rate 0.1" in err

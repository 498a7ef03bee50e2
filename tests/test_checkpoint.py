"""Checkpoints: exact round trip, atomic replacement, and a clear error for every way a folder can be wrong."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

import mini_medclip
from mini_medclip.checkpoint import (
    CONFIG,
    MANIFEST,
    WEIGHTS,
    CheckpointError,
    load_checkpoint,
    load_train_state,
    save_checkpoint,
)
from mini_medclip.files import atomic_folder, sha256_file
from mini_medclip.models import MedCLIP
from mini_medclip.tokenizer import train_tokenizer
from helpers import tiny_config, tiny_data


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    cfg = tiny_config()
    _, text_pool, _ = tiny_data()
    tokenizer = train_tokenizer(text_pool.sentences, cfg.model.vocab_size)
    torch.manual_seed(0)
    model = MedCLIP(cfg.model, vocab_size=len(tokenizer), image_size=cfg.data.image_size).eval()
    folder = tmp_path_factory.mktemp("ckpt") / "model"
    save_checkpoint(folder, model, tokenizer, cfg, meta={"note": "x"}, train_state={"step": 3, "m": torch.ones(2)})
    return folder, model, tokenizer, cfg


def _copy(saved, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(saved[0], folder)
    return folder


def _rewrite_config(folder, edit) -> None:
    """Edit config.json and re-hash it into the manifest: a self-consistent but wrong checkpoint."""
    info = json.loads((folder / CONFIG).read_text())
    edit(info)
    (folder / CONFIG).write_text(json.dumps(info))
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest[CONFIG] = sha256_file(folder / CONFIG)
    (folder / MANIFEST).write_text(json.dumps(manifest))


def test_round_trip_gives_the_same_model_tokenizer_and_config(saved):
    folder, model, tokenizer, cfg = saved
    loaded, loaded_tok, loaded_cfg = load_checkpoint(folder)
    assert loaded_cfg == cfg
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    text = ["mild pulmonary edema", "the lungs are clear"]
    assert loaded_tok(text)["input_ids"] == tokenizer(text)["input_ids"]
    images = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.encode_image(images), loaded.encode_image(images))
    assert load_train_state(folder)["step"] == 3 and torch.equal(load_train_state(folder)["m"], torch.ones(2))
    info = json.loads((folder / CONFIG).read_text())
    assert info["package_version"] == mini_medclip.__version__ and info["config_key"] == cfg.key()
    assert info["meta"] == {"note": "x"} and info["data_seed"] == cfg.data.seed


def test_truncated_weights_are_reported_with_the_file_name(saved, tmp_path):
    folder = _copy(saved, tmp_path)
    data = (folder / WEIGHTS).read_bytes()
    (folder / WEIGHTS).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=WEIGHTS):
        load_checkpoint(folder)


def test_a_missing_file_is_named(saved, tmp_path):
    folder = _copy(saved, tmp_path)
    (folder / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match="tokenizer.json: missing"):
        load_checkpoint(folder)
    with pytest.raises(CheckpointError, match="no such checkpoint folder"):
        load_checkpoint(tmp_path / "nowhere")


def test_weights_that_do_not_fit_the_config_raise(saved, tmp_path):
    folder = _copy(saved, tmp_path)
    _rewrite_config(folder, lambda info: info["config"]["model"].update(embed_dim=24))
    with pytest.raises(CheckpointError, match=f"{WEIGHTS}: does not match"):
        load_checkpoint(folder)


def test_another_package_version_is_refused(saved, tmp_path):
    folder = _copy(saved, tmp_path)
    _rewrite_config(folder, lambda info: info.update(package_version="0.0.0"))
    with pytest.raises(CheckpointError, match="'0.0.0'"):
        load_checkpoint(folder)


def test_a_failed_write_leaves_the_previous_checkpoint_and_no_temporary_folder(saved, tmp_path):
    folder = _copy(saved, tmp_path)
    before = sorted(p.name for p in folder.iterdir())
    with pytest.raises(RuntimeError):
        with atomic_folder(folder) as tmp:
            (tmp / "half").write_text("partial")
            raise RuntimeError("crash while writing")
    assert sorted(p.name for p in folder.iterdir()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy"]
    load_checkpoint(folder)  # still valid
    # A successful rewrite replaces the folder whole: no stale files survive.
    with atomic_folder(folder) as tmp:
        (tmp / "only").write_text("new")
    assert [p.name for p in folder.iterdir()] == ["only"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy"]

"""The real-data adapters, on small fixture files written here: PNG/JPEG images, MedCLIP CSVs, MedMNIST npz
files and a real torchxrayvision RSNA dataset pointed at a folder of PNGs."""
from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from mini_medclip.data.adapters import (
    CHESTMNIST_PATHOLOGIES,
    chexpert_labels,
    medclip_eval_set,
    medclip_image_pool,
    medclip_sentence_pool,
    medmnist_eval_set,
    medmnist_image_pool,
    read_image_file,
    xrv_eval_set,
    xrv_image_pool,
)
from mini_medclip.data.labels import CHEXPERT_LABELS, FIVE_CLASS_TASK, label_index
from mini_medclip.data.pools import EvalSet, ImagePool, TextPool

SIZE = 16


def write_image(path, pixels) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(pixels)).save(path)


def label_row(**positives) -> dict:
    """A CSV row of the 14 label columns: blank unless given (keys use _ for spaces)."""
    row = {name: math.nan for name in CHEXPERT_LABELS}
    row.update({key.replace("_", " "): value for key, value in positives.items()})
    return row


def one_hot(*names) -> torch.Tensor:
    vector = torch.zeros(len(CHEXPERT_LABELS))
    for name in names:
        vector[label_index(name)] = 1
    return vector


@pytest.fixture
def meta_csv(tmp_path):
    """Three images (one 20x40, one JPEG, one in a sub-folder) and their MedCLIP meta CSV."""
    write_image(tmp_path / "wide.png", np.full((20, 40), 255, np.uint8))
    write_image(tmp_path / "normal.jpg", np.full((30, 30), 128, np.uint8))
    write_image(tmp_path / "sub" / "effusion.png", np.zeros((24, 24, 3), np.uint8))
    rows = [
        {"imgpath": "wide.png", "report": "heart is enlarged.", **label_row(Cardiomegaly=1, Edema=-1)},
        {"imgpath": "normal.jpg", "report": None, **label_row(No_Finding=1, Cardiomegaly=0)},
        {"imgpath": "sub/effusion.png", "report": "", **label_row(Pleural_Effusion=1, Atelectasis=1)},
    ]
    path = tmp_path / "meta.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


# ---------------------------------------------------------------- MedCLIP CSVs


def test_medclip_image_pool_reads_labels_and_pads_to_square(meta_csv):
    pool = medclip_image_pool(meta_csv, image_size=SIZE)
    assert isinstance(pool, ImagePool) and len(pool) == 3
    assert torch.equal(pool.labels[0], one_hot("Cardiomegaly"))  # -1 and blank -> 0
    assert torch.equal(pool.labels[1], one_hot("No Finding"))
    assert torch.equal(pool.labels[2], one_hot("Pleural Effusion", "Atelectasis"))
    images = pool.batch([0, 1, 2])
    assert images.shape == (3, 1, SIZE, SIZE) and images.dtype == torch.float32
    assert images.min() >= 0 and images.max() <= 1
    wide = images[0, 0]  # 20x40 white -> 40x40 with 10 black rows above and below -> 16x16
    assert wide[:3].max() == 0 and wide[-3:].max() == 0
    assert torch.allclose(wide[5:11], torch.ones(6, SIZE))
    assert torch.allclose(images[1], torch.full((1, SIZE, SIZE), 128 / 255), atol=0.02)


def test_medclip_image_pool_resolves_against_image_root(meta_csv, tmp_path):
    csv_elsewhere = tmp_path / "csvs" / "meta.csv"
    csv_elsewhere.parent.mkdir()
    csv_elsewhere.write_text(meta_csv.read_text())
    with pytest.raises(FileNotFoundError, match=r"3 of 3 images not found"):
        medclip_image_pool(csv_elsewhere, SIZE)
    assert len(medclip_image_pool(csv_elsewhere, SIZE, image_root=tmp_path)) == 3


def test_read_image_file_scales_16_bit_png(tmp_path):
    write_image(tmp_path / "deep.png", np.full((8, 8), 65535, np.uint16))
    assert torch.allclose(read_image_file(tmp_path / "deep.png"), torch.ones(1, 8, 8))


def test_medclip_sentence_pool(tmp_path):
    rows = [
        {"Reports": "the heart is enlarged", **label_row(Cardiomegaly=1, Edema=-1)},
        {"Reports": "  ", **label_row(No_Finding=1)},
        {"Reports": "no acute cardiopulmonary process", **label_row(No_Finding=1)},
    ]
    path = tmp_path / "sentence-label.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    pool = medclip_sentence_pool(path)
    assert isinstance(pool, TextPool)
    assert pool.sentences == ["the heart is enlarged", "no acute cardiopulmonary process"]  # blank dropped
    assert torch.equal(pool.labels, torch.stack([one_hot("Cardiomegaly"), one_hot("No Finding")]))


def test_medclip_eval_set_keeps_rows_with_one_positive(meta_csv):
    evalset = medclip_eval_set(meta_csv, ("Cardiomegaly", "Pleural Effusion"), SIZE, name="pair")
    assert isinstance(evalset, EvalSet) and evalset.name == "pair"
    assert evalset.class_names == ("Cardiomegaly", "Pleural Effusion")
    assert evalset.targets.tolist() == [0, 1]  # the No Finding row has neither class and is skipped
    assert evalset.images.batch([0, 1]).shape == (2, 1, SIZE, SIZE)
    assert medclip_eval_set(meta_csv, FIVE_CLASS_TASK, SIZE).targets.tolist() == [1]  # row 3 has two of five
    assert medclip_eval_set(meta_csv, FIVE_CLASS_TASK, SIZE).name == "meta"


def test_medclip_errors(meta_csv, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere\.csv: file not found"):
        medclip_image_pool(tmp_path / "nowhere.csv", SIZE)
    with pytest.raises(FileNotFoundError, match=r"nowhere: folder not found"):
        medclip_image_pool(meta_csv, SIZE, image_root=tmp_path / "nowhere")

    no_labels = tmp_path / "no_labels.csv"
    pd.DataFrame({"imgpath": ["wide.png"], "Cardiomegaly": [1]}).to_csv(no_labels, index=False)
    with pytest.raises(ValueError, match=r"no_labels\.csv: missing column\(s\) \['No Finding'.*header row naming the columns: imgpath, No Finding"):
        medclip_image_pool(no_labels, SIZE)
    no_text = tmp_path / "no_text.csv"
    pd.DataFrame([label_row(No_Finding=1)]).to_csv(no_text, index=False)
    with pytest.raises(ValueError, match=r"no_text\.csv: missing the sentence column; expected one of: Reports, report"):
        medclip_sentence_pool(no_text)

    empty = tmp_path / "empty.csv"
    pd.DataFrame(columns=["imgpath", *CHEXPERT_LABELS]).to_csv(empty, index=False)
    with pytest.raises(ValueError, match=r"empty\.csv: the CSV has no rows"):
        medclip_image_pool(empty, SIZE)

    with pytest.raises(ValueError, match=r"unknown label 'Effusion'; expected one of: No Finding"):
        medclip_eval_set(meta_csv, ("No Finding", "Effusion"), SIZE)
    with pytest.raises(ValueError, match=r"none of its 3 rows has exactly one positive among \['Edema', 'Fracture'\]"):
        medclip_eval_set(meta_csv, ("Edema", "Fracture"), SIZE)

    (tmp_path / "wide.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"wide\.png: cannot decode image"):
        medclip_image_pool(meta_csv, SIZE).load(0)


@pytest.mark.parametrize("cell", ["yes", "2", "0.5", "positive"])
def test_medclip_label_cells_other_than_1_0_minus_1_or_blank_are_refused(meta_csv, cell):
    frame = pd.read_csv(meta_csv)
    frame["Edema"] = frame["Edema"].astype(object)
    frame.loc[1, "Edema"] = cell
    frame.to_csv(meta_csv, index=False)
    with pytest.raises(ValueError) as error:
        medclip_image_pool(meta_csv, SIZE)
    message = str(error.value)
    assert f"meta.csv: data row 2 (1 = the first row under the header), column 'Edema' holds '{cell}'" in message
    assert "expected 1 (positive), 0 (negative), -1 (uncertain) or a blank cell" in message and "\n" not in message


def test_medclip_sentence_label_cells_are_checked_too(tmp_path):
    path = tmp_path / "sentence-label.csv"
    rows = [{"Reports": "the heart is enlarged", **label_row(Cardiomegaly="1.0", Edema="-1.0", Fracture="0.0")},
            {"Reports": "no acute process", **label_row(No_Finding="yes")}]
    pd.DataFrame(rows).to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"sentence-label\.csv: data row 2 .*column 'No Finding' holds 'yes'"):
        medclip_sentence_pool(path)
    pd.DataFrame(rows[:1]).to_csv(path, index=False)  # floats, as pandas writes a column with blanks
    assert torch.equal(medclip_sentence_pool(path).labels, one_hot("Cardiomegaly")[None])


@pytest.mark.parametrize("content, reason", [
    (b"", r"No columns to parse from file"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", r"'utf-8' codec can't decode byte 0x89"),
    (b"imgpath,Edema\na.png,1\nb.png,1,0\n", r"Expected 2 fields in line 3, saw 3"),
])
def test_unreadable_csvs_name_the_file_and_the_expected_header(tmp_path, content, reason):
    path = tmp_path / "meta.csv"
    path.write_bytes(content)
    with pytest.raises(ValueError) as error:
        medclip_image_pool(path, SIZE)
    message = str(error.value)
    assert message.startswith(f"{path}: cannot read it as a CSV (") and re.search(reason, message)
    assert message.endswith("expected a UTF-8 CSV with a header row naming the columns: " + ", ".join(("imgpath", *CHEXPERT_LABELS)))
    assert "\n" not in message
    with pytest.raises(ValueError, match=r"header row naming the columns: No Finding.*, plus one of: Reports, report, sentence"):
        medclip_sentence_pool(path)


def test_missing_images_name_the_row_the_cell_and_where_paths_resolve(meta_csv, tmp_path):
    (tmp_path / "normal.jpg").unlink()
    with pytest.raises(FileNotFoundError) as error:
        medclip_image_pool(meta_csv, SIZE)
    assert str(error.value) == (
        f"{meta_csv}: 1 of 3 images not found; first: data row 2, imgpath 'normal.jpg' -> {tmp_path / 'normal.jpg'}; "
        f"expected each imgpath to be an image file, absolute or relative to {tmp_path} (the CSV's folder; pass "
        "image_root= if the images are elsewhere)"
    )
    frame = pd.read_csv(meta_csv)
    frame.loc[1, "imgpath"] = str(tmp_path / "wide.png")  # an absolute path is used as it is
    frame.loc[2, "imgpath"] = None
    frame.to_csv(meta_csv, index=False)
    with pytest.raises(FileNotFoundError, match=r"1 of 3 images not found; first: data row 3, imgpath ''"):
        medclip_image_pool(meta_csv, SIZE)
    frame.loc[2, "imgpath"] = "sub/effusion.png"
    frame.to_csv(meta_csv, index=False)
    assert len(medclip_image_pool(meta_csv, SIZE)) == 3


def test_paths_of_the_wrong_kind_or_relative_say_so(meta_csv, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path / "sub")
    with pytest.raises(FileNotFoundError, match=rf"^meta\.csv: file not found \(relative to {re.escape(str(tmp_path / 'sub'))}\)$"):
        medclip_image_pool("meta.csv", SIZE)
    with pytest.raises(IsADirectoryError, match=rf"^{re.escape(str(tmp_path))}: is a folder; expected a file$"):
        medclip_image_pool(tmp_path, SIZE)
    with pytest.raises(NotADirectoryError, match=r"^effusion\.png: is a file \(relative to .*\); expected a folder$"):
        medclip_image_pool(meta_csv, SIZE, image_root="effusion.png")


@pytest.mark.parametrize("size", ["abc", "64", 64.5, 0])
def test_an_image_size_that_is_not_a_positive_integer_is_refused(meta_csv, size):
    with pytest.raises(ValueError) as error:
        medclip_image_pool(meta_csv, image_size=size)
    assert str(error.value) == (f"image_size is {size!r}; expected a positive integer number of pixels, the model's"
                                " config.data.image_size (32 to 224)")


@pytest.mark.parametrize("content, reason", [(b"", "Expected a non empty file"), (b"II*\x00", "Unsupported image file")])
def test_undecodable_images_name_the_file_and_the_formats(tmp_path, content, reason):
    path = tmp_path / "scan.png"
    path.write_bytes(content)
    with pytest.raises(ValueError) as error:
        read_image_file(path)
    assert str(error.value) == f"{path}: cannot decode image ({reason}); expected a PNG or JPEG file"


# ---------------------------------------------------------------- torchxrayvision


@pytest.fixture
def rsna(tmp_path):
    """torchxrayvision's own RSNA class (labels from its wheel) over 20x30 PNGs named as it expects."""
    xrv = pytest.importorskip("torchxrayvision")
    dataset = xrv.datasets.RSNA_Pneumonia_Dataset(imgpath=str(tmp_path), nrows=20, views=["*"], extension=".png")
    for patient in dataset.csv["patientId"]:
        write_image(tmp_path / f"{patient}.png", np.full((20, 30), 255, np.uint8))
    return dataset


def test_xrv_image_pool_maps_labels_and_pixels(rsna):
    pool = xrv_image_pool(rsna, SIZE)
    pneumonia = rsna.labels[:, rsna.pathologies.index("Pneumonia")] == 1
    assert 0 < pneumonia.sum() < len(rsna)
    expected = torch.stack([one_hot("Pneumonia", "Lung Opacity") if sick else one_hot("No Finding") for sick in pneumonia])
    assert torch.equal(pool.labels, expected)
    image = pool.load(0)[0]  # 20x30 white in xrv's [-1024, 1024] -> back to 1, black padding above and below
    assert image.shape == (SIZE, SIZE)
    assert image[0].max() == 0 and torch.allclose(image[SIZE // 2], torch.ones(SIZE))


def test_xrv_eval_set_is_normal_vs_pathology(rsna):
    evalset = xrv_eval_set(rsna, "Pneumonia", SIZE, name="rsna")
    assert evalset.class_names == ("No Finding", "Pneumonia")
    assert evalset.targets.tolist() == (rsna.labels[:, rsna.pathologies.index("Pneumonia")] == 1).tolist()
    assert evalset.images.batch([0, len(evalset) - 1]).shape == (2, 1, SIZE, SIZE)


class FakeXrvDataset:
    """Just the torchxrayvision Dataset interface the adapters use: NIH names, 1/0/NaN labels, images."""

    pathologies = ["Effusion", "Mass", "Nodule", "Hernia", "Support Devices"]
    imgpath = "/fake"

    def __init__(self, labels):
        self.labels = np.asarray(labels, dtype=np.float32)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return {"img": np.full((1, 8, 8), -1024.0 + 2048.0 * index / max(len(self) - 1, 1))}


def test_xrv_names_map_onto_chexpert_columns():
    nan = math.nan
    labels = [
        [1, 0, nan, 0, 0],  # Effusion -> Pleural Effusion
        [0, 1, 1, nan, 0],  # Mass and Nodule -> one Lung Lesion
        [0, 0, 0, 1, 0],  # Hernia has no CheXpert column but is still a finding
        [0, 0, 0, 0, 1],  # Support Devices alone: No Finding, as CheXpert labels it
        [nan, nan, nan, nan, nan],
    ]
    expected = [
        one_hot("Pleural Effusion"),
        one_hot("Lung Lesion"),
        one_hot(),
        one_hot("Support Devices", "No Finding"),
        one_hot("No Finding"),
    ]
    assert torch.equal(chexpert_labels(np.array(labels), FakeXrvDataset.pathologies), torch.stack(expected))
    evalset = xrv_eval_set(FakeXrvDataset(labels), "Effusion", SIZE, name="fake")
    assert evalset.class_names == ("No Finding", "Pleural Effusion")
    assert evalset.targets.tolist() == [1, 0, 0]
    assert evalset.images.load(2).min() == 1  # the dataset's last item, which is all +1024


def test_xrv_errors(rsna, tmp_path):
    with pytest.raises(ValueError, match=r"unknown pathology 'Effusion'; expected one of: Lung Opacity, Pneumonia"):
        xrv_eval_set(rsna, "Effusion", SIZE, name="rsna")
    with pytest.raises(TypeError, match=r"list lacks \['pathologies', 'labels'\]; expected a torchxrayvision"):
        xrv_image_pool([1, 2], SIZE)
    with pytest.raises(ValueError, match=r"FakeXrvDataset \(images in /fake\): the dataset is empty"):
        xrv_image_pool(FakeXrvDataset(np.zeros((0, 5))), SIZE)
    first = tmp_path / f"{rsna.csv['patientId'].iloc[0]}.png"
    first.write_bytes(b"not an image")
    with pytest.raises(ValueError, match=rf"RSNA_Pneumonia_Dataset .*: cannot read item 0 .*{first.name}"):
        xrv_image_pool(rsna, SIZE).load(0)


# ---------------------------------------------------------------- MedMNIST


@pytest.fixture
def chestmnist(tmp_path):
    labels = np.zeros((4, 14), np.uint8)
    labels[0, CHESTMNIST_PATHOLOGIES.index("Effusion")] = 1
    labels[1, [CHESTMNIST_PATHOLOGIES.index("Cardiomegaly"), CHESTMNIST_PATHOLOGIES.index("Nodule")]] = 1
    labels[2, [CHESTMNIST_PATHOLOGIES.index("Edema"), CHESTMNIST_PATHOLOGIES.index("Atelectasis")]] = 1
    path = tmp_path / "chestmnist.npz"
    np.savez(
        path,
        train_images=np.full((4, 28, 28), 255, np.uint8),
        train_labels=labels,
        val_images=np.zeros((0, 28, 28), np.uint8),
        val_labels=np.zeros((0, 14), np.uint8),
    )
    return path


@pytest.fixture
def pneumoniamnist(tmp_path):
    path = tmp_path / "pneumoniamnist.npz"
    rgb = np.zeros((3, 28, 28, 3), np.uint8)
    rgb[..., 1] = 255  # pure green: grey = 0.587 in ITU-R 601-2
    np.savez(path, test_images=rgb, test_labels=np.array([[0], [1], [1]], np.uint8))
    return path


def test_medmnist_chest_pool_and_five_class_set(chestmnist):
    pool = medmnist_image_pool(chestmnist, "train", SIZE)
    assert torch.equal(pool.labels[0], one_hot("Pleural Effusion"))
    assert torch.equal(pool.labels[1], one_hot("Cardiomegaly", "Lung Lesion"))
    assert torch.equal(pool.labels[3], one_hot("No Finding"))
    assert torch.allclose(pool.batch([0, 3]), torch.ones(2, 1, SIZE, SIZE))
    evalset = medmnist_eval_set(chestmnist, "train", SIZE)
    assert evalset.class_names == FIVE_CLASS_TASK and evalset.name == "chestmnist-train"
    assert evalset.targets.tolist() == [FIVE_CLASS_TASK.index("Pleural Effusion"), FIVE_CLASS_TASK.index("Cardiomegaly")]


def test_medmnist_pneumonia_from_rgb(pneumoniamnist):
    pool = medmnist_image_pool(pneumoniamnist, "test", SIZE)
    assert torch.equal(pool.labels, torch.stack([one_hot("No Finding"), one_hot("Pneumonia"), one_hot("Pneumonia")]))
    assert torch.allclose(pool.load(0), torch.full((1, SIZE, SIZE), 0.587), atol=0.01)
    evalset = medmnist_eval_set(pneumoniamnist, "test", SIZE, flavour="pneumonia")
    assert evalset.class_names == ("No Finding", "Pneumonia")
    assert evalset.targets.tolist() == [0, 1, 1]


def test_medmnist_errors(chestmnist, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere\.npz: file not found"):
        medmnist_image_pool(tmp_path / "nowhere.npz", "train", SIZE)
    with pytest.raises(ValueError, match=r"chestmnist\.npz: unknown split 'valid'; expected one of: train, val, test"):
        medmnist_image_pool(chestmnist, "valid", SIZE)
    with pytest.raises(ValueError, match=r"chestmnist\.npz: split 'val' is empty"):
        medmnist_image_pool(chestmnist, "val", SIZE)
    with pytest.raises(ValueError, match=r"missing array\(s\) \['test_images', 'test_labels'\]; the file holds"):
        medmnist_image_pool(chestmnist, "test", SIZE)
    with pytest.raises(ValueError, match=r"14 label column\(s\) do not fit flavour 'pneumonia'; expected chest: 14"):
        medmnist_image_pool(chestmnist, "train", SIZE, flavour="pneumonia")
    with pytest.raises(ValueError, match=r"unknown MedMNIST flavour 'derma'; expected one of: chest, pneumonia"):
        medmnist_eval_set(chestmnist, "train", SIZE, flavour="derma")


def test_medmnist_files_that_are_not_binary_medmnist_are_refused(tmp_path):
    text = tmp_path / "notes.npz"
    text.write_text("not a zip")
    single = tmp_path / "single.npy"
    np.save(single, np.zeros((2, 28, 28), np.uint8))
    for path in (text, single):
        with pytest.raises(ValueError, match=rf"{path.name}: not an \.npz \(zip\) archive; expected a MedMNIST \.npz"):
            medmnist_image_pool(path, "train", SIZE)

    def npz(name, images, labels):
        path = tmp_path / name
        np.savez(path, train_images=images, train_labels=labels)
        return path

    pixels, labels = np.zeros((3, 28, 28), np.uint8), np.zeros((3, 1), np.uint8)
    with pytest.raises(ValueError, match=r"floats\.npz: train_images is float64 of shape \(3, 28, 28\); expected uint8"):
        medmnist_image_pool(npz("floats.npz", pixels / 255.0, labels), "train", SIZE)
    with pytest.raises(ValueError, match=r"short\.npz: 2 labels for 3 images in split 'train'; expected one label row per image"):
        medmnist_image_pool(npz("short.npz", pixels, labels[:2]), "train", SIZE)
    with pytest.raises(ValueError, match=r"organ\.npz: train_labels\[1, 0\] is 7 \(2 such value\(s\)\); expected 0 or 1"):
        medmnist_image_pool(npz("organ.npz", pixels, np.array([[0], [7], [10]], np.uint8)), "train", SIZE)

"""Real-data adapters: MedCLIP CSVs, torchxrayvision datasets and MedMNIST files as the package's pools.

Each adapter returns the containers the embedded phantoms fill in (`ImagePool`, `TextPool`, `EvalSet`), so
a learner who has real radiographs swaps one function call and trains and evaluates the same model.
Images are read lazily, one per `load`, as grey-scale floats in [0, 1]; each is padded to a black, centred
square (as MedCLIP's `_pad_img` does, so the aspect ratio survives) and resized with antialiasing.

Label rules, in one place:
- MedCLIP CSVs: 1 -> 1; 0, -1 (uncertain) and blank -> 0, MedCLIP's convention for image labels. The
  sentence table uses the same rule, so the label similarity of the semantic loss never goes negative.
  Any other cell (`yes`, `2`) is an error that names its row and column, not a silent negative.
- torchxrayvision and MedMNIST name their pathologies NIH-style; `XRV_TO_CHEXPERT` renames them onto the
  14 CheXpert columns (several may land on one column, which is then positive if any of them is). NaN -> 0.
  Pathologies with no CheXpert column (Emphysema, Fibrosis, Hernia, COVID-19, ...) set no column, but
  they still count as findings: "No Finding" is 1 only when no pathology except Support Devices is
  positive, the CheXpert labeler's own rule.
- Evaluation sets keep the rows with exactly one positive among their class names and skip the rest;
  that is how MedCLIP's CheXpert-5x200 and Normal-vs-X sets were drawn. A set left empty is an error.
"""
from __future__ import annotations

import operator
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torchvision.io import ImageReadMode, read_image
from torchvision.transforms.v2 import functional as F

from .labels import CHEXPERT_LABELS, FIVE_CLASS_TASK, NUM_LABELS, label_index, label_indices
from .pools import EvalSet, ImagePool, TextPool

# torchxrayvision / NIH spellings that differ from a CheXpert column; other names are used as they are.
XRV_TO_CHEXPERT: dict[str, str] = {
    "Effusion": "Pleural Effusion",
    "Nodule": "Lung Lesion",
    "Mass": "Lung Lesion",
    "Nodule/Mass": "Lung Lesion",
    "Infiltration": "Lung Opacity",  # the CheXpert labeler files "infiltrate" under Lung Opacity
    "Pleural_Thickening": "Pleural Other",  # and pleural thickening under Pleural Other
}
# ChestMNIST's 14 label columns: NIH ChestX-ray14's order, in torchxrayvision's spelling.
CHESTMNIST_PATHOLOGIES: tuple[str, ...] = (
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
    "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia",
)
MEDCLIP_IMAGE_COLUMNS: tuple[str, ...] = ("imgpath", *CHEXPERT_LABELS)
MEDCLIP_SENTENCE_COLUMNS: tuple[str, ...] = ("Reports", "report", "sentence")
MEDMNIST_SPLITS: tuple[str, ...] = ("train", "val", "test")
MEDMNIST_FLAVOURS: dict[str, tuple[str, ...]] = {"chest": CHESTMNIST_PATHOLOGIES, "pneumonia": ("Pneumonia",)}
MEDMNIST_EVAL_CLASSES: dict[str, tuple[str, ...]] = {"chest": FIVE_CLASS_TASK, "pneumonia": ("No Finding", "Pneumonia")}
# What a MedCLIP label cell may hold: 1 (positive), 0 (negative), -1 (uncertain) or blank.
MEDCLIP_LABEL_VALUES: tuple[int, ...] = (1, 0, -1)
# torchxrayvision's `normalize` maps pixel values onto this range.
XRV_PIXEL_RANGE = 1024.0


# ---------------------------------------------------------------- images


def square_resize(image: torch.Tensor, image_size: int) -> torch.Tensor:
    """(1, H, W) in [0, 1] -> (1, S, S): pad black to a centred square, then resize, so nothing is stretched.

    MedCLIP's canvas is at least 224 px; this one is max(H, W), so a small image (MedMNIST's 28 px) is
    enlarged instead of framed in black."""
    height, width = image.shape[-2:]
    side = max(height, width)
    left, top = (side - width) // 2, (side - height) // 2
    square = F.pad(image, [left, top, side - width - left, side - height - top], fill=0.0)
    return F.resize(square, [image_size, image_size], antialias=True).clamp(0, 1)


def read_image_file(path: Path) -> torch.Tensor:
    """Decode a JPEG/PNG (8- or 16-bit, grey or colour) to a grey (1, H, W) float image in [0, 1]."""
    path = _existing_file(path)
    try:
        image = read_image(str(path), mode=ImageReadMode.GRAY)
    except RuntimeError as err:
        # torchvision prefixes its C++ source location and suffixes advice on decoders this module does not call
        reason = re.sub(r"^.*\.cpp:\d+, ", "", str(err)).split(". ")[0]
        raise ValueError(f"{path}: cannot decode image ({reason}); expected a PNG or JPEG file") from err
    return F.to_dtype(image, torch.float32, scale=True)


class SquareImagePool(ImagePool):
    """A lazy pool: subclasses `read` an image at its own size, `load` makes it (1, S, S)."""

    def __init__(self, labels: torch.Tensor, image_size: int):
        super().__init__(labels)
        try:
            size = operator.index(image_size)  # int() would read "64" and cut 64.5 to 64 without a word
        except TypeError:
            size = 0
        if size < 1:
            raise ValueError(
                f"image_size is {image_size!r}; expected a positive integer number of pixels, the model's"
                " config.data.image_size (32 to 224)"
            )
        self.image_size = size

    def read(self, index: int) -> torch.Tensor:
        raise NotImplementedError

    def subset(self, rows: torch.Tensor) -> "SquareImagePool":
        """The same kind of pool holding only `rows` (a data spec's "skip" policy drops unreadable images)."""
        raise NotImplementedError

    def load(self, index: int) -> torch.Tensor:
        return square_resize(self.read(index), self.image_size)


class FileImagePool(SquareImagePool):
    """Images read from files on disk, one path per label row."""

    def __init__(self, paths: list[Path], labels: torch.Tensor, image_size: int):
        super().__init__(labels, image_size)
        self.paths = list(paths)

    def read(self, index: int) -> torch.Tensor:
        return read_image_file(self.paths[index])

    def subset(self, rows: torch.Tensor) -> "FileImagePool":
        return FileImagePool([self.paths[int(i)] for i in rows], self.labels[rows], self.image_size)


class XRVImagePool(SquareImagePool):
    """Images served by a torchxrayvision dataset (its own transform applies), mapped back to [0, 1]."""

    def __init__(self, dataset, indices: np.ndarray, labels: torch.Tensor, image_size: int):
        super().__init__(labels, image_size)
        self.dataset = dataset
        self.indices = [int(i) for i in indices]

    def read(self, index: int) -> torch.Tensor:
        item = self.indices[index]
        try:
            image = self.dataset[item]["img"]
        except Exception as err:  # xrv raises whatever its image reader raises; say which item failed
            raise ValueError(
                f"{_describe(self.dataset)}: cannot read item {item} ({type(err).__name__}: {err})"
            ) from err
        image = torch.as_tensor(np.asarray(image), dtype=torch.float32)
        image = image.reshape(1, *image.shape[-2:])
        return ((image + XRV_PIXEL_RANGE) / (2 * XRV_PIXEL_RANGE)).clamp(0, 1)

    def subset(self, rows: torch.Tensor) -> "XRVImagePool":
        return XRVImagePool(self.dataset, np.asarray(self.indices)[rows.numpy()], self.labels[rows], self.image_size)


class ArrayImagePool(SquareImagePool):
    """Images held as one uint8 tensor (N, 1, H, W) at their stored size, resized on load."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, image_size: int):
        super().__init__(labels, image_size)
        self.images = images

    def read(self, index: int) -> torch.Tensor:
        return self.images[index].float() / 255

    def subset(self, rows: torch.Tensor) -> "ArrayImagePool":
        return ArrayImagePool(self.images[rows], self.labels[rows], self.image_size)


# ---------------------------------------------------------------- labels and checks


def chexpert_labels(labels: np.ndarray, pathologies) -> torch.Tensor:
    """(N, K) labels named by `pathologies` (1 / 0 / -1 / NaN) -> (N, 14) CheXpert 0/1 vectors."""
    positive = np.asarray(labels, dtype=np.float32) == 1
    chexpert = np.zeros((len(positive), NUM_LABELS), dtype=bool)
    for column, name in enumerate(pathologies):
        target = XRV_TO_CHEXPERT.get(name, name)
        if target in CHEXPERT_LABELS:
            chexpert[:, label_index(target)] |= positive[:, column]
    findings = [column for column, name in enumerate(pathologies) if name != "Support Devices"]
    chexpert[:, label_index("No Finding")] = ~positive[:, findings].any(axis=1)
    return torch.from_numpy(chexpert).float()


def one_positive_targets(positives: np.ndarray, source: str, class_names) -> tuple[np.ndarray, np.ndarray]:
    """Rows with exactly one positive class are kept, with that class as the target; others are skipped."""
    positives = np.asarray(positives, dtype=bool)
    keep = positives.sum(axis=1) == 1
    if not keep.any():
        raise ValueError(
            f"{source}: none of its {len(positives)} rows has exactly one positive among {list(class_names)}"
        )
    return keep, positives[keep].argmax(axis=1)


def _where(path: Path) -> str:
    """A relative path is read against the working directory, which a notebook user rarely has in mind."""
    return "" if path.is_absolute() else f" (relative to {Path.cwd()})"


def _existing_file(path) -> Path:
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder{_where(path)}; expected a file")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found{_where(path)}")
    return path


def _existing_folder(path) -> Path:
    path = Path(path)
    if path.is_file():
        raise NotADirectoryError(f"{path}: is a file{_where(path)}; expected a folder")
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: folder not found{_where(path)}")
    return path


def _describe(dataset) -> str:
    return f"{type(dataset).__name__} (images in {getattr(dataset, 'imgpath', 'an unknown folder')})"


# ---------------------------------------------------------------- MedCLIP CSVs


def _read_csv(csv_path, required_columns, text_columns=()) -> tuple[Path, pd.DataFrame]:
    """Every MedCLIP CSV goes through here, so a bad file fails on reading, naming itself and what it should
    hold: readable UTF-8 text, a header with `required_columns` (and one of `text_columns`, if given), at least
    one row, and label cells that `_label_cells` accepts. Cells are read as text, so an error quotes them."""
    csv_path = _existing_file(csv_path)
    expected = f"expected a UTF-8 CSV with a header row naming the columns: {', '.join(required_columns)}"
    if text_columns:
        expected += f", plus one of: {', '.join(text_columns)}"
    try:
        frame = pd.read_csv(csv_path, dtype=str)
    except (UnicodeDecodeError, pd.errors.EmptyDataError, pd.errors.ParserError) as err:
        raise ValueError(f"{csv_path}: cannot read it as a CSV ({str(err).strip()}); {expected}") from err
    missing = [column for column in required_columns if column not in frame.columns]
    if missing:
        raise ValueError(f"{csv_path}: missing column(s) {missing}; {expected}")
    if text_columns and not set(text_columns) & set(frame.columns):
        raise ValueError(f"{csv_path}: missing the sentence column; expected one of: {', '.join(text_columns)}")
    if frame.empty:
        raise ValueError(f"{csv_path}: the CSV has no rows; expected at least one")
    frame[list(CHEXPERT_LABELS)] = _label_cells(frame[list(CHEXPERT_LABELS)], csv_path)
    return csv_path, frame


def _label_cells(cells: pd.DataFrame, csv_path: Path) -> pd.DataFrame:
    """Text label cells -> numbers (blank -> NaN), refusing anything else: read as a negative, a 'yes' or a 2
    would silently drop a finding."""
    numbers = cells.apply(pd.to_numeric, errors="coerce")
    bad = cells.notna() & ~numbers.isin(MEDCLIP_LABEL_VALUES)
    if bad.any(axis=None):
        rows, columns = np.nonzero(bad.to_numpy())
        raise ValueError(
            f"{csv_path}: data row {cells.index[rows[0]] + 1} (1 = the first row under the header), column "
            f"{cells.columns[columns[0]]!r} holds {cells.iat[rows[0], columns[0]]!r} ({len(rows)} bad cell(s) in all); "
            "expected 1 (positive), 0 (negative), -1 (uncertain) or a blank cell"
        )
    return numbers


def _positive(frame: pd.DataFrame, columns) -> np.ndarray:
    """MedCLIP's label rule: only an explicit 1 is positive (0, -1 and blank are not)."""
    return (frame[list(columns)] == 1).to_numpy()


def _file_pool(frame: pd.DataFrame, csv_path: Path, image_root, image_size: int) -> FileImagePool:
    root = csv_path.parent if image_root is None else _existing_folder(image_root)
    imgpaths = frame["imgpath"].fillna("")
    paths = [root / imgpath for imgpath in imgpaths]
    missing = [row for row, path in enumerate(paths) if not path.is_file()]
    if missing:
        first = missing[0]
        hint = " (the CSV's folder; pass image_root= if the images are elsewhere)" if image_root is None else ""
        raise FileNotFoundError(
            f"{csv_path}: {len(missing)} of {len(paths)} images not found; first: data row {frame.index[first] + 1}, "
            f"imgpath {imgpaths.iloc[first]!r} -> {paths[first].absolute()}; expected each imgpath to be an image "
            f"file, absolute or relative to {root.absolute()}{hint}"
        )
    labels = torch.from_numpy(_positive(frame, CHEXPERT_LABELS)).float()
    return FileImagePool(paths, labels, image_size)


def medclip_image_pool(csv_path, image_size: int, image_root=None) -> FileImagePool:
    """A MedCLIP image meta CSV (`imgpath`, optional `report`, 14 labels); relative paths resolve against
    `image_root`, else the CSV's folder."""
    csv_path, frame = _read_csv(csv_path, MEDCLIP_IMAGE_COLUMNS)
    return _file_pool(frame, csv_path, image_root, image_size)


def medclip_sentence_pool(csv_path) -> TextPool:
    """MedCLIP's sentence-label CSV (text in `Reports`, `report` or `sentence`); blank sentences are dropped."""
    csv_path, frame = _read_csv(csv_path, CHEXPERT_LABELS, MEDCLIP_SENTENCE_COLUMNS)
    text_column = next(column for column in MEDCLIP_SENTENCE_COLUMNS if column in frame.columns)
    sentences = frame[text_column].fillna("").astype(str).str.strip()
    frame = frame[sentences != ""]
    if frame.empty:
        raise ValueError(f"{csv_path}: every {text_column!r} entry is blank; expected at least one sentence")
    labels = torch.from_numpy(_positive(frame, CHEXPERT_LABELS)).float()
    return TextPool(sentences[frame.index].tolist(), labels)


def medclip_eval_set(csv_path, class_names, image_size: int, image_root=None, name: str | None = None) -> EvalSet:
    """A zero-shot set from a MedCLIP image meta CSV: rows with exactly one positive among `class_names`
    are kept, the target being that class's position in `class_names`."""
    class_names = tuple(class_names)
    class_columns = [CHEXPERT_LABELS[i] for i in label_indices(class_names)]
    csv_path, frame = _read_csv(csv_path, MEDCLIP_IMAGE_COLUMNS)
    keep, targets = one_positive_targets(_positive(frame, class_columns), str(csv_path), class_names)
    images = _file_pool(frame[keep], csv_path, image_root, image_size)
    return EvalSet(name or csv_path.stem, class_names, images, torch.from_numpy(targets))


# ---------------------------------------------------------------- torchxrayvision


def _check_xrv_dataset(dataset) -> None:
    missing = [attribute for attribute in ("pathologies", "labels", "__getitem__") if not hasattr(dataset, attribute)]
    if missing:
        raise TypeError(
            f"{type(dataset).__name__} lacks {missing}; expected a torchxrayvision.datasets.Dataset"
        )
    if len(dataset.labels) == 0:
        raise ValueError(f"{_describe(dataset)}: the dataset is empty; expected at least one image")


def xrv_image_pool(dataset, image_size: int) -> XRVImagePool:
    """Any torchxrayvision dataset (NIH, RSNA, CheXpert, COVID-19, ...) as a pool with CheXpert-14 labels."""
    _check_xrv_dataset(dataset)
    labels = chexpert_labels(dataset.labels, dataset.pathologies)
    return XRVImagePool(dataset, np.arange(len(labels)), labels, image_size)


def xrv_eval_set(dataset, positive_pathology: str, image_size: int, name: str) -> EvalSet:
    """A Normal-vs-X set: images positive for `positive_pathology` (target 1) and images with no finding
    (target 0); images with only other findings are skipped. X is named in CheXpert's spelling if it has one."""
    _check_xrv_dataset(dataset)
    pathologies = list(dataset.pathologies)
    if positive_pathology not in pathologies:
        raise ValueError(
            f"{_describe(dataset)}: unknown pathology {positive_pathology!r}; expected one of: {', '.join(pathologies)}"
        )
    labels = chexpert_labels(dataset.labels, pathologies)
    no_finding = labels[:, label_index("No Finding")].numpy() == 1
    has_x = np.asarray(dataset.labels, dtype=np.float32)[:, pathologies.index(positive_pathology)] == 1
    class_names = ("No Finding", XRV_TO_CHEXPERT.get(positive_pathology, positive_pathology))
    keep, targets = one_positive_targets(np.stack([no_finding, has_x], axis=1), _describe(dataset), class_names)
    images = XRVImagePool(dataset, np.flatnonzero(keep), labels[keep], image_size)
    return EvalSet(name, class_names, images, torch.from_numpy(targets))


# ---------------------------------------------------------------- MedMNIST


def _read_medmnist(npz_path, split: str, flavour: str | None) -> tuple[Path, torch.Tensor, torch.Tensor, str]:
    """Images (N, 1, H, W) uint8, CheXpert-14 labels and the flavour of one split of a MedMNIST file."""
    npz_path = _existing_file(npz_path)
    if split not in MEDMNIST_SPLITS:
        raise ValueError(f"{npz_path}: unknown split {split!r}; expected one of: {', '.join(MEDMNIST_SPLITS)}")
    if flavour is not None and flavour not in MEDMNIST_FLAVOURS:
        raise ValueError(f"unknown MedMNIST flavour {flavour!r}; expected one of: {', '.join(MEDMNIST_FLAVOURS)}")
    expected = "expected a MedMNIST .npz (ChestMNIST or PneumoniaMNIST) as medmnist downloads it"
    if not zipfile.is_zipfile(npz_path):  # np.load would return a lone .npy array, or offer to unpickle the file
        raise ValueError(f"{npz_path}: not an .npz (zip) archive; {expected}")
    with np.load(npz_path) as npz:
        keys = [f"{split}_images", f"{split}_labels"]
        missing = [key for key in keys if key not in npz.files]
        if missing:
            raise ValueError(f"{npz_path}: missing array(s) {missing}; the file holds {sorted(npz.files)}")
        images, labels = npz[keys[0]], npz[keys[1]]
    if len(images) == 0:
        raise ValueError(f"{npz_path}: split {split!r} is empty; expected at least one image")
    if images.dtype != np.uint8 or not (images.ndim == 3 or images.ndim == 4 and images.shape[-1] == 3):
        raise ValueError(
            f"{npz_path}: {keys[0]} is {images.dtype} of shape {images.shape}; expected uint8 pixels shaped"
            " (N, H, W) or (N, H, W, 3)"
        )
    if len(labels) != len(images):
        raise ValueError(
            f"{npz_path}: {len(labels)} labels for {len(images)} images in split {split!r}; expected one label row per image"
        )
    labels = labels.reshape(len(labels), -1)  # PneumoniaMNIST may store (N,) or (N, 1)
    bad = np.argwhere(~np.isin(labels, (0, 1)))
    if len(bad):
        raise ValueError(
            f"{npz_path}: {keys[1]}[{bad[0][0]}, {bad[0][1]}] is {labels[tuple(bad[0])]} ({len(bad)} such value(s));"
            " expected 0 or 1 in every label column (a binary multi-label file such as ChestMNIST or PneumoniaMNIST)"
        )
    detected = {len(columns): name for name, columns in MEDMNIST_FLAVOURS.items()}.get(labels.shape[1])
    if detected is None or flavour not in (None, detected):
        raise ValueError(
            f"{npz_path}: {labels.shape[1]} label column(s) do not fit flavour {flavour or 'auto'!r}; expected"
            f" {', '.join(f'{name}: {len(columns)}' for name, columns in MEDMNIST_FLAVOURS.items())}"
        )
    pixels = torch.from_numpy(images)
    pixels = F.rgb_to_grayscale(pixels.permute(0, 3, 1, 2)) if pixels.ndim == 4 else pixels[:, None]
    return npz_path, pixels, chexpert_labels(labels, MEDMNIST_FLAVOURS[detected]), detected


def medmnist_image_pool(npz_path, split: str, image_size: int, flavour: str | None = None) -> ArrayImagePool:
    """One split of ChestMNIST or PneumoniaMNIST; the flavour is read from the label width unless given."""
    _, images, labels, _ = _read_medmnist(npz_path, split, flavour)
    return ArrayImagePool(images, labels, image_size)


def medmnist_eval_set(
    npz_path, split: str, image_size: int, flavour: str | None = None, name: str | None = None
) -> EvalSet:
    """PneumoniaMNIST -> No Finding vs Pneumonia; ChestMNIST -> the five CheXpert competition classes
    (all five are NIH labels), keeping the images with exactly one of them."""
    npz_path, images, labels, flavour = _read_medmnist(npz_path, split, flavour)
    class_names = MEDMNIST_EVAL_CLASSES[flavour]
    positives = labels[:, label_indices(class_names)].numpy()
    keep, targets = one_positive_targets(positives, f"{npz_path} ({split})", class_names)
    keep = torch.from_numpy(keep)
    pool = ArrayImagePool(images[keep], labels[keep], image_size)
    return EvalSet(name or f"{npz_path.stem}-{split}", class_names, pool, torch.from_numpy(targets))

"""Phantoms and the CheXpert label sampler: shapes, determinism, and findings drawn where they belong."""
import pytest
import torch

from mini_medclip.data.label_sampler import DRAWN_LABELS, label_prevalence, sample_labels
from mini_medclip.data.labels import CHEXPERT_LABELS, NUM_LABELS, label_index
from mini_medclip.data.phantoms import FINDINGS, render, render_finding_pairs

SIZE = 64


def one_finding(name: str, n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """(normal, with_finding): the same n patients rendered without and with one finding."""
    normal = torch.zeros(n, NUM_LABELS)
    normal[:, label_index("No Finding")] = 1
    sick = torch.zeros(n, NUM_LABELS)
    sick[:, label_index(name)] = 1
    return render(normal, SIZE, seed=3)[:, 0], render(sick, SIZE, seed=3)[:, 0]


def test_shape_range_dtype():
    for size in (32, 100):  # 224 px: test_deterministic_across_chunks
        images = render(sample_labels(5, seed=0), size, seed=0)
        assert images.shape == (5, 1, size, size)
        assert images.dtype == torch.float32
        assert images.min() >= 0 and images.max() <= 1
        assert images.std() > 0.1  # an image, not a flat field


def test_deterministic_by_seed():
    labels = sample_labels(6, seed=1)
    assert torch.equal(render(labels, SIZE, seed=5), render(labels, SIZE, seed=5))
    assert not torch.allclose(render(labels, SIZE, seed=5), render(labels, SIZE, seed=6))


def test_deterministic_across_chunks():
    labels = sample_labels(50, seed=2)  # more than one chunk at 224 px
    batch = render(labels, 224, seed=0)
    assert batch.shape == (50, 1, 224, 224) and 0 <= batch.min() and batch.max() <= 1
    assert torch.equal(batch, render(labels, 224, seed=0))
    assert not torch.equal(batch[0], batch[45])


@pytest.mark.parametrize("size", [31, 225, 0, 64.0, True])
def test_bad_size_raises(size):
    with pytest.raises(ValueError, match=r"\[32, 224\]"):
        render(sample_labels(1, seed=0), size, seed=0)


def test_bad_labels_raise():
    with pytest.raises(ValueError, match="expected"):
        render(torch.zeros(3, 5), SIZE, seed=0)
    with pytest.raises(ValueError, match="covid_like"):
        render(torch.zeros(3, NUM_LABELS), SIZE, seed=0, covid_like=torch.zeros(2, dtype=torch.bool))


def test_effusion_whitens_the_lung_bases():
    normal, sick = one_finding("Pleural Effusion")
    lower, upper = slice(int(0.5 * SIZE), int(0.8 * SIZE)), slice(int(0.15 * SIZE), int(0.35 * SIZE))
    assert (sick[:, lower] - normal[:, lower]).mean() > 0.03
    assert (sick[:, upper] - normal[:, upper]).abs().mean() < 0.01


def test_cardiomegaly_widens_the_bright_centre():
    normal, sick = one_finding("Cardiomegaly")
    heart_rows = slice(int(0.55 * SIZE), int(0.72 * SIZE))

    def bright_width(images):
        return (images[:, heart_rows] > 0.7).float().sum(-1).mean()

    assert bright_width(sick) > bright_width(normal) + 0.08 * SIZE


def test_pneumothorax_darkens_the_upper_lung():
    normal, sick = one_finding("Pneumothorax")
    upper = slice(int(0.1 * SIZE), int(0.5 * SIZE))
    assert (sick[:, upper] - normal[:, upper]).mean() < -0.01
    assert (sick[:, upper] < normal[:, upper] - 0.05).float().mean() > 0.03


@pytest.mark.parametrize("name", [n for n in FINDINGS if n != "No Finding"])
def test_every_finding_changes_the_image(name):
    normal, sick = one_finding(name, n=4)
    changed = ((sick - normal).abs() > 0.05).float().mean(dim=(1, 2))
    assert (changed > 0.004).all(), f"{name} left some image almost unchanged: {changed.tolist()}"


def test_covid_like_whitens_the_lower_lungs():
    labels = torch.zeros(6, NUM_LABELS)
    labels[:, [label_index("Lung Opacity"), label_index("Pneumonia")]] = 1
    normal = render(torch.eye(NUM_LABELS)[[label_index("No Finding")] * 6], SIZE, seed=0)[:, 0]
    covid = render(labels, SIZE, seed=0, covid_like=torch.ones(6, dtype=torch.bool))[:, 0]
    lower, upper = slice(int(0.5 * SIZE), int(0.75 * SIZE)), slice(int(0.15 * SIZE), int(0.35 * SIZE))
    lower_change, upper_change = (covid[:, lower] - normal[:, lower]).mean(), (covid[:, upper] - normal[:, upper]).mean()
    assert lower_change > 0.03 and lower_change > 2 * upper_change


def test_finding_pairs_figure():
    normal, sick, names = render_finding_pairs(SIZE, seed=0)
    assert normal.shape == sick.shape == (len(names), 1, SIZE, SIZE)
    assert set(names) >= {"Cardiomegaly", "Pleural Effusion", "Pneumothorax", "COVID-like"}
    assert all(not torch.equal(a, b) for a, b in zip(normal, sick))


def test_sampler_respects_the_drawn_schema():
    labels = sample_labels(5_000, seed=0)
    assert labels.shape == (5_000, NUM_LABELS) and labels.dtype == torch.float32
    assert set(labels.unique().tolist()) <= {0.0, 1.0}
    for undrawable in ("Pleural Other", "Fracture"):
        assert undrawable not in DRAWN_LABELS
        assert labels[:, label_index(undrawable)].sum() == 0
    pathologies = [label_index(n) for n in DRAWN_LABELS if n not in ("No Finding", "Support Devices")]
    no_finding = labels[:, label_index("No Finding")] == 1
    assert labels[no_finding][:, pathologies].sum() == 0
    assert (labels.sum(1) > 0).all()
    assert labels[no_finding, label_index("Support Devices")].sum() > 0  # allowed, as in CheXpert


def test_sampler_is_deterministic_and_matches_the_real_table():
    assert torch.equal(sample_labels(100, seed=4), sample_labels(100, seed=4))
    assert not torch.equal(sample_labels(100, seed=4), sample_labels(100, seed=5))
    real, restricted = label_prevalence()
    assert real.shape == restricted.shape == (len(CHEXPERT_LABELS),)
    labels = sample_labels(20_000, seed=1)
    devices = label_index("Support Devices")
    assert abs(labels[:, devices].mean() - real[devices]) < 0.02
    assert torch.allclose(labels.mean(0), restricted, atol=0.02)


SMALL = dict(data__image_size=32, data__n_train_images=40, data__n_eval_per_class=4)


def _fresh_process():
    from mini_medclip.data import embedded

    embedded._load_or_render.cache_clear()  # what a new process starts with: nothing in memory


def test_the_embedded_data_is_rendered_once_per_data_config():
    from mini_medclip.config import get_config
    from mini_medclip.data.embedded import embedded_data

    _fresh_process()
    first = embedded_data(get_config("tiny", **SMALL))
    assert embedded_data(get_config("tiny", **SMALL, train__lr=0.1)) is first  # only the data config matters
    other = embedded_data(get_config("tiny", **SMALL, data__seed=1))
    assert other is not first and not torch.equal(other[0].images, first[0].images)


def test_a_new_process_reads_the_rendered_data_from_the_store(monkeypatch, isolated_model_cache):
    from mini_medclip.config import get_config
    from mini_medclip.data import embedded

    _fresh_process()
    cfg = get_config("tiny", **SMALL)
    rendered = embedded.embedded_data(cfg)
    (folder,) = (isolated_model_cache / "data").iterdir()
    _fresh_process()
    with monkeypatch.context() as patch:
        patch.setattr(embedded, "render_pool", lambda *a, **k: pytest.fail("rendered although the store holds the data"))
        stored = embedded.embedded_data(cfg)
    assert torch.equal(stored[0].images, rendered[0].images) and torch.equal(stored[0].labels, rendered[0].labels)
    for name, eval_set in rendered[2].items():
        again = stored[2][name]
        assert again.class_names == eval_set.class_names and torch.equal(again.targets, eval_set.targets)
        assert torch.equal(again.images.images, eval_set.images.images)
    # An altered entry is reported and rendered again, never read.
    pools = folder / "tensors.safetensors"
    pools.write_bytes(pools.read_bytes()[:-10] + bytes(10))
    _fresh_process()
    with pytest.warns(UserWarning, match="sha256 differs"):
        again = embedded.embedded_data(cfg)
    assert torch.equal(again[0].images, rendered[0].images)
    _fresh_process()

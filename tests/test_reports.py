import pytest

from mini_medclip.data import reports
from mini_medclip.data.reports import load_reports, load_sentences, split_sentences


def test_reports_load_with_sections_and_mesh_tags():
    frame = load_reports()
    assert 3900 <= len(frame) <= 4000
    assert frame.uid.is_unique
    with_text = (frame.findings.str.len() + frame.impression.str.len()) > 0
    assert with_text.sum() > 3900
    first = frame.set_index("uid").loc["CXR1"]
    assert "pleural effusion" in first.findings
    assert first.mesh_major == ["normal"]
    assert frame.mesh_major.map(len).gt(0).mean() > 0.95


def test_sentences_cover_the_corpus():
    sentences = load_sentences()
    assert list(sentences.columns) == ["sentence", "uid", "section"]
    assert len(sentences) > 15_000
    assert set(sentences.section) == {"findings", "impression"}
    assert sentences.sentence.str.split().map(len).min() >= 3
    assert not sentences.sentence.str.contains("xxxx").any()
    assert (sentences.sentence == sentences.sentence.str.lower()).all()
    assert "no acute cardiopulmonary abnormality" in set(sentences.sentence)


def test_split_sentences_on_ends_and_numbered_items():
    text = "1. No acute   disease. 2. Mild cardiomegaly, stable. A 1.5 cm nodule at T11. Ok."
    assert split_sentences(text) == [
        "no acute disease", "mild cardiomegaly, stable", "a 1.5 cm nodule at t11",
    ]


def test_split_sentences_handles_placeholders():
    text = "Normal chest x-XXXX. There are no XXXX of a pleural effusion. XXXX XXXX."
    assert split_sentences(text) == ["normal chest x-ray", "there are no of a pleural effusion"]


def test_load_reports_returns_a_copy():
    frame = load_reports()
    frame.loc[0, "findings"] = "changed"
    assert load_reports().loc[0, "findings"] != "changed"


def test_missing_archive_names_path_and_package(monkeypatch, tmp_path):
    missing = tmp_path / "NLMCXR_reports.tgz"
    monkeypatch.setattr(reports, "reports_archive_path", lambda: missing)
    with pytest.raises(FileNotFoundError, match=r"NLMCXR_reports\.tgz.*torchxrayvision"):
        load_reports()


def test_credit_names_source_and_licence():
    for part in ("Indiana University", "Open-i", "Demner-Fushman", "CC BY-NC-ND 4.0"):
        assert part in reports.REPORTS_CREDIT


def test_the_wheel_files_are_found_without_importing_torchxrayvision():
    import subprocess
    import sys

    probe = ("import sys; from mini_medclip.data.wheel_files import torchxrayvision_file; "
             "path = torchxrayvision_file('NLMCXR_reports.tgz'); "
             "assert path.is_file(), path; assert 'torchxrayvision' not in sys.modules")
    subprocess.run([sys.executable, "-c", probe], check=True)


def test_a_missing_torchxrayvision_is_named_with_the_file_and_the_install_command(monkeypatch):
    from mini_medclip.data import wheel_files

    monkeypatch.setattr(wheel_files.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"chexpert_train\.csv\.gz ships with the torchxrayvision wheel.*pip install torchxrayvision"):
        wheel_files.torchxrayvision_file("chexpert_train.csv.gz")

"""Model bundles: a verified round trip, and every hostile bundle refused with the cache left as it was."""
from __future__ import annotations

import hashlib
import http.server
import io
import json
import shutil
import tarfile
import threading
from pathlib import Path

import pytest
import torch

from mini_medclip import bundle
from mini_medclip.bundle import BUNDLE_MANIFEST, BundleError, export_bundle, import_bundle, list_entries
from mini_medclip.cache import cached_model
from mini_medclip.store import entry_folder, load_entry, stored
from mini_medclip.cli import main
from mini_medclip.train import TrainResult
from helpers import tiny_config, untrained_tiny_model


def _build(cfg, device):
    model, tokenizer, _ = untrained_tiny_model()
    return TrainResult(model, tokenizer, {"loss": []}, 0.0)


def _refuse(cfg, device):
    raise AssertionError("the cache should have held this model")


STORE_KEY = {"victim": "a model's cache key", "defense": "a detector's settings"}


def _scores():
    return {"scores": torch.arange(4.0)}, {"threshold": 0.5}


@pytest.fixture(scope="module")
def filled_cache(tmp_path_factory):
    """A cache holding two real entries (untrained tiny models under two keys) and one store entry (a
    defense's scores), built once per module."""
    root = tmp_path_factory.mktemp("filled") / "cache"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINI_MEDCLIP_CACHE", str(root))
        for seed in (0, 1):
            cached_model(tiny_config(train__seed=seed), device="cpu", build=_build)
        stored("results", STORE_KEY, _scores)
    assert len(list_entries(root)) == 2 and (root / "results").is_dir()
    return root


@pytest.fixture
def cache(filled_cache, tmp_path, monkeypatch):
    """A copy of the filled cache, set as this test's MINI_MEDCLIP_CACHE."""
    root = tmp_path / "cache"
    shutil.copytree(filled_cache, root)
    monkeypatch.setenv("MINI_MEDCLIP_CACHE", str(root))
    return root


def _snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tar(path: Path, members: list[tuple[str, bytes]], links: tuple[str, ...] = ()) -> Path:
    """Write a tar by hand, with exactly these members (and symlinks), as an attacker would."""
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name in links:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
    return path


def _members(archive: Path) -> list[tuple[str, bytes]]:
    with tarfile.open(archive) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]


def _with_manifest(members, edit) -> list[tuple[str, bytes]]:
    manifest = json.loads(dict(members)[BUNDLE_MANIFEST])
    edit(manifest)
    return [(BUNDLE_MANIFEST, json.dumps(manifest).encode())] + [m for m in members if m[0] != BUNDLE_MANIFEST]


def test_round_trip_exports_verifies_and_imports_into_an_empty_cache(cache, tmp_path):
    archive = tmp_path / "bundle.tar"
    digest = export_bundle(archive, cache)
    assert digest == _sha(archive)
    names = [e.name for e in list_entries(cache)]
    store_entry = entry_folder("results", STORE_KEY, cache)
    assert bundle.clear_cache(cache) == 2 and list_entries(cache) == [] and not store_entry.exists()
    imported = import_bundle(str(archive), digest, cache)
    assert imported == sorted(names + [f"results/{store_entry.name}"])
    assert [e.name for e in list_entries(cache) if e.valid] == names
    assert bundle.foreign_entries(imported, cache) == []
    for seed in (0, 1):  # the chapters' cache lookups now hit without building
        cached_model(tiny_config(train__seed=seed), device="cpu", build=_refuse)
    tensors, info = load_entry(store_entry, STORE_KEY)  # and so do the store's
    assert torch.equal(tensors["scores"], _scores()[0]["scores"]) and info == _scores()[1]


def test_entries_trained_on_phantoms_this_runtime_does_not_render_are_reported(cache, monkeypatch):
    names = [e.name for e in list_entries(cache)]
    monkeypatch.setattr("mini_medclip.cache.data_fingerprint", lambda data_cfg: "another-torch-release")
    assert bundle.foreign_entries(names, cache) == names


def test_export_refuses_an_empty_cache(tmp_path):
    with pytest.raises(BundleError, match="holds no valid entry"):
        export_bundle(tmp_path / "b.tar", tmp_path / "empty")


@pytest.fixture
def exported(cache, tmp_path):
    archive = tmp_path / "bundle.tar"
    export_bundle(archive, cache)
    target = tmp_path / "learner"
    target.mkdir()
    (target / "keep.txt").write_text("a learner's own file")
    return archive, target


def _refused(archive: Path, target: Path, match: str, digest: str | None = None) -> None:
    before = _snapshot(target)
    with pytest.raises(BundleError, match=match):
        import_bundle(str(archive), digest or _sha(archive), target)
    assert _snapshot(target) == before


def test_a_wrong_digest_is_refused_before_anything_is_read(exported, tmp_path):
    archive, target = exported
    _refused(archive, target, "differs from the published", digest="0" * 64)


def test_a_digest_that_is_not_64_hex_digits_is_named(exported):
    archive, target = exported
    _refused(archive, target, "expected the 64 hex digits", digest="abc")


def test_an_entry_whose_hash_differs_from_the_manifest_is_named(exported, tmp_path):
    archive, target = exported
    members = _members(archive)
    victim = next(name for name, _ in members if name.endswith("model.safetensors"))
    tampered = [(n, d[:-4] + b"\0\0\0\0" if n == victim else d) for n, d in members]
    entry = victim.split("/")[0]
    _refused(_tar(tmp_path / "t.tar", tampered), target, f"{victim} has sha256 .* \\(entry {entry} was altered\\)")


def test_an_entry_failing_its_own_checkpoint_manifest_is_named(exported, tmp_path):
    archive, target = exported
    members = _members(archive)
    name = next(n for n, _ in members if n.endswith("/config.json"))
    edited = json.dumps({"package_version": "9.9"}).encode()
    members = [(n, edited if n == name else d) for n, d in members]

    def fix(manifest):
        manifest["files"][name] = {"size": len(edited), "sha256": hashlib.sha256(edited).hexdigest()}

    _refused(_tar(tmp_path / "t.tar", _with_manifest(members, fix)), target, "fails its checkpoint check")


def _store_members(archive: Path) -> tuple[list[tuple[str, bytes]], str]:
    members = _members(archive)
    return members, next(n for n, _ in members if n.startswith("results/")).rsplit("/", 1)[0]


def _refix(members, names):
    """Rewrite the bundle manifest so that it vouches for `names` as they now are (a consistent forgery)."""
    data = dict(members)

    def fix(manifest):
        for name in names:
            manifest["files"].pop(name, None)
            if name in data:
                manifest["files"][name] = {"size": len(data[name]), "sha256": hashlib.sha256(data[name]).hexdigest()}

    return _with_manifest(members, fix)


def test_a_store_entry_whose_tensors_differ_from_its_own_hash_is_named(exported, tmp_path):
    archive, target = exported
    members, entry = _store_members(archive)
    tensors = f"{entry}/tensors.safetensors"
    members = [(n, d[:-4] + b"\0\0\0\0" if n == tensors else d) for n, d in members]
    forged = _tar(tmp_path / "t.tar", _refix(members, [tensors]))
    _refused(forged, target, f"entry {entry} fails its store check .*sha256 differs")


def test_a_store_entry_moved_under_another_keys_name_is_refused(exported, tmp_path):
    archive, target = exported
    members, entry = _store_members(archive)
    other = "results/0123456789abcdef"
    moved = [(n.replace(entry, other), d) for n, d in members]
    forged = _tar(tmp_path / "t.tar", _refix(moved, [n for n, _ in members if n.startswith(entry)] + [n for n, _ in moved if n.startswith(other)]))
    _refused(forged, target, "its key belongs in a folder named")


@pytest.mark.parametrize("name", ["results/0123456789abcdef/notes.json", "models/0123456789abcdef/entry.json",
                                  "results/0123456789abcdef/deeper/entry.json", "results/not-hex/entry.json"])
def test_members_outside_the_store_layout_are_refused(exported, tmp_path, name):
    _, target = exported
    _refused(_tar(tmp_path / "t.tar", [(BUNDLE_MANIFEST, b"{}"), (name, b"{}")]), target, "not ENTRY/FILE")


@pytest.mark.parametrize("name", ["tiny-0123456789abcdef/train_state.pt", "tiny-0123456789abcdef/model.pkl",
                                  "tiny-0123456789abcdef/run.py"])
def test_pickles_and_unknown_file_types_are_refused(exported, tmp_path, name):
    _, target = exported
    _refused(_tar(tmp_path / "t.tar", [(BUNDLE_MANIFEST, b"{}"), (name, b"x")]), target, "never carries pickles or code")


@pytest.mark.parametrize("name", ["../escape.json", "/etc/escape.json", "tiny-0123456789abcdef/../../escape.json",
                                  "deep/tiny-0123456789abcdef/x.json"])
def test_paths_that_escape_the_cache_are_refused(exported, tmp_path, name):
    _, target = exported
    _refused(_tar(tmp_path / "t.tar", [(BUNDLE_MANIFEST, b"{}"), (name, b"{}")]), target, "escapes the cache|not ENTRY/FILE")
    assert not (tmp_path / "escape.json").exists()


def test_symlinks_are_refused(exported, tmp_path):
    _, target = exported
    archive = _tar(tmp_path / "t.tar", [(BUNDLE_MANIFEST, b"{}")], links=("tiny-0123456789abcdef/config.json",))
    _refused(archive, target, "is a link, folder or device")


def test_a_member_the_manifest_does_not_list_is_refused(exported, tmp_path):
    archive, target = exported
    members = _members(archive) + [("tiny-0123456789abcdef/extra.json", b"{}")]
    _refused(_tar(tmp_path / "t.tar", members), target, "unlisted")


def test_an_archive_far_larger_than_its_manifest_is_refused(exported, tmp_path):
    archive, target = exported
    padded = tmp_path / "padded.tar"
    padded.write_bytes(archive.read_bytes() + b"\0" * (4 * archive.stat().st_size))
    _refused(padded, target, "far more than")


def test_a_file_that_is_not_a_tar_is_refused(exported, tmp_path):
    _, target = exported
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"PK\x03\x04 not a tar")
    _refused(junk, target, "not an uncompressed tar")


class _Server:
    """An HTTP server on the loopback address serving one file, honouring Range; it can cut a response short."""

    def __init__(self, payload: bytes):
        self.payload, self.cut_after, self.requests = payload, None, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers["Range"] else 0
                server.requests.append(start)
                body = server.payload[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_after is not None:
                    body, server.cut_after = body[: server.cut_after], None
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/bundle.tar"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_a_truncated_download_is_refused_then_resumes_where_it_stopped(exported):
    archive, target = exported
    digest = _sha(archive)
    with _Server(archive.read_bytes()) as server:
        server.cut_after = 5000
        before = [e.name for e in list_entries(target)]
        with pytest.raises(BundleError, match="truncated at 5000 of"):
            import_bundle(server.url, digest, target)
        assert [e.name for e in list_entries(target)] == before == []
        names = import_bundle(server.url, digest, target)
    assert server.requests == [0, 5000] and len(names) == 3  # two models and one store entry
    assert not list((target / ".downloads").iterdir())


def test_a_downloaded_bundle_with_the_wrong_digest_is_refused_and_discarded(exported):
    archive, target = exported
    with _Server(archive.read_bytes()) as server:
        with pytest.raises(BundleError, match="differs from the published"):
            import_bundle(server.url, "1" * 64, target)
    assert list_entries(target) == [] and not list((target / ".downloads").iterdir())


def test_plain_http_is_refused_off_the_loopback_address(tmp_path):
    with pytest.raises(BundleError, match="expected https://"):
        import_bundle("http://example.org/bundle.tar", "0" * 64, tmp_path)


def test_the_cli_lists_exports_imports_and_gives_one_line_errors(cache, tmp_path, capsys):
    archive = tmp_path / "b.tar"
    assert main(["cache", "list"]) == 0
    listed = capsys.readouterr().out
    assert "2 entries" in listed and "and 1 stored results" in listed
    assert main(["cache", "export", "--out", str(archive)]) == 0
    digest = capsys.readouterr().out.strip().splitlines()[-1]
    assert digest == _sha(archive)
    assert main(["cache", "clear"]) == 0 and list_entries(cache) == []
    assert main(["cache", "import", str(archive), "--sha256", "f" * 64]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "differs from the published" in err
    assert main(["cache", "import", str(archive), "--sha256", digest]) == 0
    assert len(list_entries(cache)) == 2


def test_a_move_that_fails_midway_puts_the_cache_back(exported, monkeypatch):
    archive, target = exported
    import_bundle(str(archive), _sha(archive), target)  # every entry is there once: the next import replaces
    real_replace, moves = bundle.os.replace, []

    def failing_replace(src, dst):
        if ".import-" in str(src) and not str(src).endswith(".replaced"):
            moves.append(dst)
            if len(moves) == 2:
                raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(bundle.os, "replace", failing_replace)
    _refused(archive, target, "could not move entry .* the cache is as it was")

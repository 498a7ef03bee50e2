"""Model bundles: the model cache packed into one verified archive, so a workshop's learners start warm.

An instructor runs every chapter once (`make book`), then `cache export` writes the cache's entries (the
trained models, and the store's rendered phantoms and defense results) into an uncompressed tar with a
manifest, `bundle.json`, that lists every file's size and sha256, and prints the archive's own sha256 to
publish next to the download link. A learner's `cache import` is the supply-chain discipline of chapter 8
in practice:

1. the archive's sha256 must equal the published one before anything inside it is read;
2. every member must be a regular file (no `..`, no absolute path, no link, no device) named `ENTRY/FILE`
   (a model) or `KIND/ENTRY/FILE` (a store entry), of a known type (`.safetensors` or `.json`: nothing
   that unpickles or executes), listed in the manifest with its size and hash, and the archive may not
   be larger than its manifest accounts for;
3. each entry is unpacked into a staging folder, checked against the manifest and against its own
   manifest (`checkpoint.verify_checkpoint` for a model, `store.verify_entry` for a store entry, which
   also checks that the entry sits under its own key's name), and only then moved into the cache.

Any failure raises `BundleError` naming the file or entry, and leaves the cache as it was.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from . import __version__
from .runtime import cache_root
from .checkpoint import CONFIG, CheckpointError, verify_checkpoint
from .files import sha256_file
from .store import ENTRY, KINDS, TENSORS, StoreError, list_store_entries, verify_entry
from .store import ENTRY_NAME as STORE_NAME

BUNDLE_MANIFEST = "bundle.json"
BUNDLE_FORMAT = "mini-medclip-bundle/2"
ALLOWED_SUFFIXES = (".safetensors", ".json")
ENTRY_NAME = re.compile(r"^[a-z0-9_]+-[0-9a-f]{16}$")
STORE_FILES = (TENSORS, ENTRY)
SHA256 = re.compile(r"^[0-9a-f]{64}$")
# A tar stores each file as a 512-byte header plus its data padded to 512 bytes, then end-of-archive blocks.
TAR_BLOCK, TAR_RECORD = 512, 10240
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
CHUNK = 1 << 20


class BundleError(ValueError):
    """A bundle that cannot be trusted or used; the message names the file, entry or value at fault."""


@dataclass(frozen=True)
class CacheEntry:
    name: str
    path: Path
    preset: str
    size: int
    extra_key: dict
    valid: bool
    problem: str = ""


def list_entries(root: Path | None = None) -> list[CacheEntry]:
    """Every model in the cache, verified, with its size and what it is keyed on beyond the config."""
    root = Path(root or cache_root())
    entries = []
    for path in sorted(p for p in root.glob("*") if p.is_dir() and ENTRY_NAME.match(p.name)):
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        try:
            meta = verify_checkpoint(path)
            key = meta["meta"].get("cache_key", {})
            entries.append(CacheEntry(path.name, path, meta["preset"], size, key.get("extra_key", {}), True))
        except CheckpointError as err:
            entries.append(CacheEntry(path.name, path, "?", size, {}, False, str(err)))
    return entries


def clear_cache(root: Path | None = None) -> int:
    """Delete every model entry and the store (rendered data, defense results); return how many model entries were deleted."""
    entries = list_entries(root)
    for entry in entries:
        shutil.rmtree(entry.path)
    for kind in KINDS:
        shutil.rmtree(Path(root or cache_root()) / kind, ignore_errors=True)
    return len(entries)


def _valid_store_entries(root: Path | None = None) -> dict[Path, str]:
    """{entry folder: sha256 of its tensors, just checked} for every store entry that verifies."""
    valid = {}
    for folder in list_store_entries(root):
        try:
            valid[folder] = verify_entry(folder)["sha256"]
        except StoreError:
            pass  # the store computes an unusable entry again; a bundle does not carry it
    return valid


def export_bundle(out, root: Path | None = None) -> str:
    """Write every valid cache entry (models and store entries) into the tar `out` atomically; return its sha256."""
    entries = [e for e in list_entries(root) if e.valid]
    if not entries:
        raise BundleError(f"the model cache {Path(root or cache_root())} holds no valid entry to export; "
                          "run the chapters first (make book)")
    files = {f"{e.name}/{f.name}": f for e in entries for f in sorted(e.path.iterdir()) if f.is_file()}
    checked = {}  # a store entry's tensors were hashed by verify_entry: large files are read once, not twice
    for folder, tensors_sha256 in _valid_store_entries(root).items():
        entry = f"{folder.parent.name}/{folder.name}"
        files |= {f"{entry}/{name}": folder / name for name in STORE_FILES}
        checked[f"{entry}/{TENSORS}"] = tensors_sha256
    manifest = {"format": BUNDLE_FORMAT, "package_version": __version__,
                "files": {name: {"size": path.stat().st_size, "sha256": checked.get(name) or sha256_file(path)}
                          for name, path in files.items()}}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        blob = json.dumps(manifest, indent=1, sort_keys=True).encode()
        info = tarfile.TarInfo(BUNDLE_MANIFEST)
        info.size = len(blob)
        tar.addfile(info, io.BytesIO(blob))
        for name, path in tqdm(files.items(), desc="export", unit="file"):
            tar.add(path, arcname=name, recursive=False)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, out)
    return sha256_file(out)


def download(url: str, folder: Path, max_bytes: int) -> Path:
    """Fetch `url` into `folder`, resuming a partial download with an HTTP Range request; show progress."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme != "https" and not (parsed.scheme == "http" and parsed.hostname in LOOPBACK_HOSTS):
        raise BundleError(f"bundle URL {url!r}: expected https:// (plain http only on the loopback address)")
    folder.mkdir(parents=True, exist_ok=True)
    part = folder / (hashlib.sha256(url.encode()).hexdigest()[:16] + ".tar.part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as err:
        if err.code != 416:  # 416: the partial file is already whole
            raise BundleError(f"bundle URL {url!r}: HTTP {err.code} {err.reason}") from None
        return part
    except (urllib.error.URLError, OSError) as err:
        raise BundleError(f"bundle URL {url!r}: {getattr(err, 'reason', err)}") from None
    with response:
        if have and response.status != 206:  # the server ignored the range: start over
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        if total is not None and total > max_bytes:
            raise BundleError(f"bundle URL {url!r}: {total} bytes, more than the limit of {max_bytes}")
        with open(part, "ab" if have else "wb") as f, tqdm(total=total, initial=have, unit="B", unit_scale=True,
                                                           desc="download") as bar:
            try:
                for block in iter(lambda: response.read(CHUNK), b""):
                    f.write(block)
                    bar.update(len(block))
                    if f.tell() > max_bytes:
                        raise BundleError(f"bundle URL {url!r}: more than the limit of {max_bytes} bytes")
            except (OSError, urllib.error.URLError) as err:
                raise BundleError(f"bundle URL {url!r}: download interrupted at {f.tell()} bytes ({err}); "
                                  "run the import again to resume") from None
            got = f.tell()
    if total is not None and got < total:
        raise BundleError(f"bundle URL {url!r}: download truncated at {got} of {total} bytes; run the import again to resume")
    return part


def _checked_members(tar: tarfile.TarFile, archive: Path) -> tuple[dict, dict[str, tarfile.TarInfo]]:
    """The manifest and the member of every file it lists, after checking names, types and sizes."""
    members: dict[str, tarfile.TarInfo] = {}
    for member in tar.getmembers():
        name = member.name
        path = PurePosixPath(name)
        if path.is_absolute() or ".." in path.parts or name != path.as_posix() or "\\" in name:
            raise BundleError(f"{archive}: member {name!r} escapes the cache (absolute path or '..')")
        if not member.isfile():
            raise BundleError(f"{archive}: member {name!r} is a link, folder or device; a bundle holds regular files only")
        if name in members:
            raise BundleError(f"{archive}: member {name!r} appears twice")
        if name != BUNDLE_MANIFEST:
            is_model = len(path.parts) == 2 and ENTRY_NAME.match(path.parts[0])
            is_store = (len(path.parts) == 3 and path.parts[0] in KINDS and STORE_NAME.match(path.parts[1])
                        and path.parts[2] in STORE_FILES)
            if not (is_model or is_store):
                raise BundleError(f"{archive}: member {name!r} is not ENTRY/FILE with ENTRY like 'tiny-0123456789abcdef', "
                                  f"nor KIND/ENTRY/FILE with KIND one of {', '.join(KINDS)} and FILE one of "
                                  f"{', '.join(STORE_FILES)}")
            if path.suffix not in ALLOWED_SUFFIXES:
                raise BundleError(f"{archive}: member {name!r} has type {path.suffix or '(none)'!r}; expected one of "
                                  f"{', '.join(ALLOWED_SUFFIXES)} (a bundle never carries pickles or code)")
        members[name] = member
    if BUNDLE_MANIFEST not in members:
        raise BundleError(f"{archive}: no {BUNDLE_MANIFEST}; not a mini-medclip bundle")
    try:
        manifest = json.loads(tar.extractfile(members.pop(BUNDLE_MANIFEST)).read())
        files = manifest["files"]
        fmt = manifest["format"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
        raise BundleError(f"{archive}: {BUNDLE_MANIFEST} is unreadable ({err})") from None
    if fmt != BUNDLE_FORMAT:
        raise BundleError(f"{archive}: format {fmt!r}; expected {BUNDLE_FORMAT!r}")
    if manifest.get("package_version") != __version__:
        raise BundleError(f"{archive}: made by mini_medclip {manifest.get('package_version')!r}; this is {__version__!r}, "
                          "whose cache would not use its models")
    if set(files) != set(members):
        extra, missing = sorted(set(members) - set(files)), sorted(set(files) - set(members))
        raise BundleError(f"{archive}: members and {BUNDLE_MANIFEST} disagree (unlisted: {extra[:3]}, missing: {missing[:3]})")
    for name, member in members.items():
        if member.size != files[name]["size"]:
            raise BundleError(f"{archive}: {name} has {member.size} bytes; {BUNDLE_MANIFEST} says {files[name]['size']}")
    accounted = sum(TAR_BLOCK + -(-m.size // TAR_BLOCK) * TAR_BLOCK for m in tar.getmembers())
    if archive.stat().st_size > 2 * accounted + 4 * TAR_RECORD:
        raise BundleError(f"{archive}: {archive.stat().st_size} bytes, far more than the {accounted} its manifest accounts for")
    return files, members


def _verify_archive(archive: Path, sha256: str) -> None:
    digest = sha256_file(archive)
    if digest != sha256:
        raise BundleError(f"{archive}: sha256 {digest} differs from the published {sha256}; "
                          "the download is incomplete or not the bundle you were given")


def foreign_entries(names: list[str], root: Path | None = None) -> list[str]:
    """The entries whose training data this runtime would not render: they are valid but the cache never hits them.

    The phantoms' random stream depends on the torch release, so a bundle made under another torch holds
    models of other images; the cache key's data fingerprint keeps them from being used.
    """
    from .cache import data_fingerprint
    from .config import DataConfig

    root = Path(root or cache_root())
    foreign, local = [], {}
    for name in filter(ENTRY_NAME.match, names):  # models, just verified by import_bundle: read, do not hash again
        info = json.loads((root / name / CONFIG).read_text())
        data_cfg = DataConfig(**info["config"]["data"])
        local.setdefault(data_cfg, data_fingerprint(data_cfg))
        if info["meta"].get("cache_key", {}).get("data_fingerprint") != local[data_cfg]:
            foreign.append(name)
    return foreign


def import_bundle(source: str, sha256: str, root: Path | None = None, max_bytes: int = 8 << 30) -> list[str]:
    """Verify the bundle at `source` (a file or an https URL) against `sha256`, then add its entries to the cache.

    Returns the names of the entries added: `tiny-...` for models, `KIND/...` for store entries. Entries
    already in the cache are replaced only after the new copy has been verified.
    """
    sha256 = sha256.strip().lower()
    if not SHA256.match(sha256):
        raise BundleError(f"--sha256 {sha256!r}: expected the 64 hex digits the bundle's publisher printed")
    root = Path(root or cache_root())
    downloads = root / ".downloads"
    if source.startswith(("https://", "http://")):
        archive = download(source, downloads, max_bytes)
    else:
        archive = Path(source).expanduser()
        if not archive.is_file():
            raise BundleError(f"bundle {source!r}: no such file (expected a .tar written by `cache export`, or an https URL)")
    try:
        _verify_archive(archive, sha256)
    except BundleError:
        if archive.parent == downloads:
            archive.unlink()  # a complete download with the wrong content cannot be resumed into the right one
        raise
    try:
        tar = tarfile.open(archive, "r:")
    except tarfile.TarError as err:
        raise BundleError(f"{archive}: not an uncompressed tar archive ({err})") from None
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".import-", dir=root))
    try:
        with tar:
            files, members = _checked_members(tar, archive)
            for name, member in members.items():
                _unpack(tar, member, staging / name, files[name]["sha256"], archive)
        names = sorted({PurePosixPath(n).parent.as_posix() for n in members})
        for name in names:
            try:
                verify_checkpoint(staging / name) if ENTRY_NAME.match(name) else verify_entry(staging / name)
            except CheckpointError as err:
                raise BundleError(f"{archive}: entry {name} fails its checkpoint check ({err})") from None
            except StoreError as err:
                raise BundleError(f"{archive}: entry {name} fails its store check ({err})") from None
        for kind in {PurePosixPath(n).parent for n in names} - {PurePosixPath(".")}:
            (root / kind).mkdir(parents=True, exist_ok=True)
        _move_in(names, staging, root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if archive.parent == downloads:
        archive.unlink()
    return names


def _move_in(names: list[str], staging: Path, root: Path) -> None:
    """Move verified entries from `staging` into the cache; an entry already there moves aside into `staging`
    (deleted with it). If a move fails, the entries moved so far are taken out and the old ones put back."""
    moved = []
    try:
        for name in names:
            if (root / name).exists():
                os.replace(root / name, staging / f"{name}.replaced")
            os.replace(staging / name, root / name)
            moved.append(name)
    except OSError as err:
        for name in reversed(moved):
            shutil.rmtree(root / name, ignore_errors=True)
        for name in names:
            if (staging / f"{name}.replaced").exists():
                os.replace(staging / f"{name}.replaced", root / name)
        raise BundleError(f"could not move entry {name} into the cache {root} ({err}); the cache is as it was") from None


def _unpack(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path, expected: str, archive: Path) -> None:
    """Copy one member out of the archive, hashing as it goes; refuse it if the hash differs from the manifest."""
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with tar.extractfile(member) as src, open(target, "wb") as dst:
        for block in iter(lambda: src.read(CHUNK), b""):
            digest.update(block)
            dst.write(block)
    if digest.hexdigest() != expected:
        raise BundleError(f"{archive}: {member.name} has sha256 {digest.hexdigest()}; {BUNDLE_MANIFEST} says {expected} "
                          f"(entry {PurePosixPath(member.name).parent} was altered)")

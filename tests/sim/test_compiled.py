"""The compiled simulator core gives the pure-Python fallback's results to the bit (issue 13).

Builds setup.py's COMPILED_MODULES with mypyc into a temporary directory (`scripts/build_compiled`,
about a minute on two cores; EQUINOX_COMPILED_DIR names an existing build instead), then runs
`equinox simulate` in subprocesses on the compiled and on the pure-Python modules of this checkout
and compares every file of the two run directories byte for byte. Every test runs twice: on the
plain build and on the profile-guided one (`build_compiled --pgo`, GCC only: about five minutes;
EQUINOX_COMPILED_PGO_DIR names an existing one), whose C code is the same but optimised apart.
Skipped only when there is no C compiler (no GCC: the profile-guided half) or no mypyc to build with.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
FLAGS = ("--duration", "150", "--no-progress")

# Each case is `equinox simulate` arguments: the three policies, both engines, the queueing
# `overload` preset, a KV pool small enough to preempt, and one run with its reference runs.
CASES = {
    "fcfs-vllm-preempting": ["-p", "fcfs", "--engine", "vllm", "--kv-tokens", "6000", "--no-reference"],
    "vtc-slora": ["-p", "vtc", "--engine", "slora", "--no-reference"],
    "vtc-vllm-async": ["-p", "vtc", "--engine", "vllm", "--async-scheduling", "--no-reference"],
    "equinox-vllm-reference": ["-p", "equinox", "--engine", "vllm"],
    "equinox-vtc-reduction-preempting": ["-p", "equinox", "--alpha", "1", "--beta", "0", "--engine", "vllm",
                                         "--kv-tokens", "6000", "--no-reference"],
    "equinox-slora": ["-p", "equinox", "--engine", "slora", "--no-reference"],
}

pytestmark = pytest.mark.slow


def _has_c_compiler() -> bool:
    cc = os.environ.get("CC") or str(sysconfig.get_config_var("CC") or "cc")
    return shutil.which(cc.split()[0]) is not None


@pytest.fixture(scope="module", params=["plain", "pgo"])
def compiled_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the compiled core, plain or profile-guided (built here unless
    EQUINOX_COMPILED_DIR or EQUINOX_COMPILED_PGO_DIR names one)."""
    pgo = request.param == "pgo"
    given = os.environ.get("EQUINOX_COMPILED_PGO_DIR" if pgo else "EQUINOX_COMPILED_DIR")
    if given:
        return Path(given)
    if not _has_c_compiler():
        pytest.skip("no C compiler found (set CC): the compiled core cannot be built")
    pytest.importorskip("mypyc", reason="mypyc (installed with mypy, the `dev` extra) builds the compiled core")
    out = tmp_path_factory.mktemp(f"compiled-{request.param}")
    cmd = [sys.executable, str(ROOT / "scripts" / "build_compiled"), *(["--pgo"] if pgo else []), str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if pgo and proc.returncode and "--pgo needs GCC" in proc.stderr:  # the script tells GCC from other compilers
        pytest.skip("the profile-guided build needs GCC")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    if pgo:
        assert "--pgo" in (out / ".equinox-compiled").read_text()
    return out


def _simulate(path: Path, args: list[str], out: Path) -> str:
    """`equinox simulate ARGS -o OUT` with `path` first on the module path; its stdout."""
    env = {**os.environ, "PYTHONPATH": str(path)}
    proc = subprocess.run([sys.executable, "-m", "equinox", "simulate", *args, *FLAGS, "-o", str(out)],
                          capture_output=True, text=True, env=env, cwd=out.parent, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_compiled_modules_are_the_ones_imported(compiled_dir: Path) -> None:
    code = "import equinox.compiled as c, equinox.sim.loop as l; print(c.is_compiled(), l.__file__)"
    got = {}
    for name, path in (("compiled", compiled_dir), ("pure", SRC)):
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONPATH": str(path)})
        got[name] = proc.stdout.split()
    assert got["compiled"][0] == "True" and got["compiled"][1].startswith(str(compiled_dir))
    assert got["pure"] == ["False", str(SRC / "equinox" / "sim" / "loop.py")]


@pytest.mark.parametrize("case", sorted(CASES))
def test_compiled_run_directory_equals_pure_python(tmp_path: Path, compiled_dir: Path, case: str) -> None:
    runs = {}
    for name, path in (("compiled", compiled_dir), ("pure", SRC)):
        (tmp_path / name).mkdir()  # its own parent: the reference runs' cache is not shared
        out = tmp_path / name / "run"
        stdout = _simulate(path, CASES[case], out)
        assert f"simulator core: {'compiled' if name == 'compiled' else 'pure Python'}" in stdout
        runs[name] = out
    files = sorted(p.name for p in runs["pure"].iterdir())
    assert files == sorted(p.name for p in runs["compiled"].iterdir())
    assert {"requests.csv", "summary.json", "steps.csv", "counters.csv"} <= set(files)
    for name in files:
        assert (runs["compiled"] / name).read_bytes() == (runs["pure"] / name).read_bytes(), name
    if "preempting" in case:  # the case exercises preemption, not only queueing
        assert '"num_preemptions": 0,' not in (runs["pure"] / "summary.json").read_text()


def test_golden_runs_and_exact_digests_hold_on_the_compiled_core(compiled_dir: Path) -> None:
    """The pinned golden numbers, policy-decision digests, CSV number texts and MoPE's statistics (the
    compiled-only branches of `rows.fnum` and `RecentStats`), from the compiled modules."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tests" / "golden"),
           str(ROOT / "tests" / "scheduling" / "test_policy_exact.py"),
           str(ROOT / "tests" / "metrics" / "test_rows.py"), str(ROOT / "tests" / "prediction" / "test_mope.py")]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False,
                          env={**os.environ, "PYTHONPATH": str(compiled_dir)})
    assert proc.returncode == 0, proc.stdout[-3000:]


_FROZEN_CHECK = """
import copyreg, dataclasses, importlib, pickle, runpy, sys
modules = runpy.run_path(sys.argv[1], run_name="equinox_setup")["COMPILED_MODULES"]
unregistered, compiled = [], 0
for path in modules:
    name = path[:-3].replace("/", ".")
    module = importlib.import_module(name)
    for cls in vars(module).values():
        if (isinstance(cls, type) and cls.__module__ == name and dataclasses.is_dataclass(cls)
                and cls.__dataclass_params__.frozen and hasattr(cls, "__mypyc_attrs__")):
            compiled += 1
            if cls not in copyreg.dispatch_table:
                unregistered.append(name + "." + cls.__name__)
from equinox.prediction.experts.output_length import OutputLengthConfig
from equinox.sim.cost_models.roofline import RooflineParams
for value in (OutputLengthConfig(quantile=0.8), RooflineParams()):
    assert pickle.loads(pickle.dumps(value)) == value, value
print(compiled, unregistered)
"""


def test_every_compiled_frozen_dataclass_pickles(compiled_dir: Path) -> None:
    """mypyc's default pickling assigns fields one by one, which a frozen dataclass refuses: each one the
    compiled core holds must be registered with `picklable_when_compiled` (process pools, deepcopy)."""
    proc = subprocess.run([sys.executable, "-c", _FROZEN_CHECK, str(ROOT / "setup.py")], capture_output=True,
                          text=True, cwd=ROOT, check=False, env={**os.environ, "PYTHONPATH": str(compiled_dir)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    compiled, unregistered = proc.stdout.strip().split(" ", 1)
    assert int(compiled) >= 10 and unregistered == "[]", proc.stdout

"""pip install: the wheel with the plugin, and the pure-Python wheel on a machine without Caffe.

Each wheel is built once per session, in this Python (the build requirements,
scikit-build-core and pybind11, come with the package's test extra, so
--no-build-isolation needs no download; without them pip fetches them). The plugin
wheel builds in <build>/pip-wheel-<hash of this Python>, which persists across sessions, so that only
the first build compiles (about 2 minutes on 2 cores; later ones are seconds).

The Caffe-free wheel is built with no Caffe in reach: no Caffe_ROOT/Caffe_DIR,
no pycaffe on the path, HOME elsewhere (no CMake package registry).

The wheels go into fresh virtual environments (venv --without-pip, installed by
this Python's pip with --no-deps --no-index, so nothing is downloaded), whose
dependencies are this environment's own packages, reached through a .pth file:
- the Caffe-free one sees links to numpy and scipy only, and no pycaffe, with
  this environment's protobuf, the oldest that pyproject.toml allows, or the
  newest (each installed once by pip into a venv of its own in the cache);
- the plugin one sees this environment's site-packages (pycaffe's own imports:
  scikit-image, six) and gets pycaffe from the .pth file the wheel installs.
"""

from __future__ import annotations

import ast
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import CACHE, REPO

EXAMPLE = REPO / "prototxt" / "deploy_example.prototxt"
BUILD_TIMEOUT = 1200


def caffe_root() -> Path:
    """The Caffe this checkout's plugin build was configured with."""
    cache = REPO / "build" / "CMakeCache.txt"
    if cache.is_file():
        for line in cache.read_text().splitlines():
            if line.startswith("Caffe_ROOT:"):
                return Path(line.split("=", 1)[1])
    found = sorted(path.parents[1] for path in CACHE.glob("caffe-*/share/Caffe"))
    if not found:
        pytest.skip("no Caffe to build against (run scripts/setup.sh)")
    return found[0]


def build_requirements_installed() -> bool:
    try:
        import google.protobuf  # noqa: F401
        import pybind11  # noqa: F401
        import scikit_build_core  # noqa: F401
    except ImportError:
        return False
    return True


def pip_wheel(out_dir: Path, env: dict[str, str], config: list[str]) -> Path:
    isolation = ["--no-build-isolation"] if build_requirements_installed() else []
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", *isolation, "-w", str(out_dir),
         *[f"--config-settings={setting}" for setting in config], str(REPO)],
        capture_output=True, text=True, env=env, timeout=BUILD_TIMEOUT,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    (wheel,) = out_dir.glob("caffe_temperature-*.whl")
    return wheel


def caffe_free_env(home: Path) -> dict[str, str]:
    """No Caffe named, no pycaffe importable, no CMake package registry (~/.cmake) in reach."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("PYTHON", "CAFFE_TEMPERATURE", "Caffe_", "LD_LIBRARY_PATH"))}
    env.update(HOME=str(home), CAFFE_TEMPERATURE_PLUGIN="OFF")
    assert subprocess.run([sys.executable, "-c", "import caffe"], env=env, capture_output=True).returncode != 0
    return env


@pytest.fixture(scope="session")
def pure_wheel(tmp_path_factory) -> Path:
    return pip_wheel(tmp_path_factory.mktemp("pure-wheel"), caffe_free_env(tmp_path_factory.mktemp("home")), [])


@pytest.fixture(scope="session")
def plugin_wheel(tmp_path_factory) -> Path:
    # One per Python: a build configured by another one would be redone from scratch.
    build_dir = REPO / "build" / f"pip-wheel-{hashlib.sha256(sys.prefix.encode()).hexdigest()[:8]}"
    build_dir.mkdir(parents=True, exist_ok=True)
    # Test runs side by side share the persistent build directory.
    with open(build_dir.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return pip_wheel(tmp_path_factory.mktemp("plugin-wheel"),
                         dict(os.environ, Caffe_ROOT=str(caffe_root()), CAFFE_TEMPERATURE_PLUGIN="ON"),
                         [f"build-dir={build_dir}"])


def make_venv(root: Path, wheel: Path, dependencies: list[Path]) -> Path:
    """A fresh venv with the wheel installed; `dependencies` become its .pth file."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    site = Path(subprocess.run(
        [str(root / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True).stdout.strip())
    subprocess.run([sys.executable, "-m", "pip", "--python", str(root / "bin" / "python"), "install", "-q",
                    "--no-deps", "--no-index", str(wheel)], check=True, capture_output=True, timeout=300)
    # Only now: pip would take a caffe-temperature installed there for this one.
    (site / "_test_dependencies.pth").write_text("".join(f"{path}\n" for path in dependencies))
    return root


def only_these_packages(root: Path, modules: list[str]) -> Path:
    """A directory holding links to these top-level packages of this environment (and their .libs)."""
    root.mkdir()
    for name in modules:
        module = __import__(name)
        package = Path(next(iter(module.__path__)))
        for path in [package, package.with_name(package.name + ".libs")]:
            if path.exists():
                (root / path.name).symlink_to(path)
    return root


def clean_env(**extra: str) -> dict[str, str]:
    """No PYTHONPATH (build/env.sh's pycaffe and source tree), the venv's bin first on PATH."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "CAFFE_TEMPERATURE"))}
    env.update(extra)
    return env


def run_in(venv: Path, args: list[str], cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    env = clean_env(PATH=f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}", VIRTUAL_ENV=str(venv))
    return subprocess.run(args, capture_output=True, text=True, env=env, cwd=cwd, timeout=300, **kwargs)


def protobuf_requirements() -> dict[str, str]:
    """pip requirements for the oldest protobuf that pyproject.toml allows and for the newest."""
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    (spec,) = [d for d in dependencies if re.match(r"protobuf\b", d)]
    lowest = re.search(r">=\s*([\w.]+)", spec)
    assert lowest, f"{spec}: no lower bound"
    return {"oldest": f"protobuf=={lowest.group(1)}", "newest": spec}


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".")[:3])


def protobuf_site(which: str) -> Path:
    """site-packages of a venv in the cache holding only protobuf (oldest or newest allowed),
    made once with pip (the newest is the newest on the day it was made)."""
    requirement = protobuf_requirements()[which]
    root = CACHE / "protobuf-venvs" / f"{which}-{hashlib.sha256(requirement.encode()).hexdigest()[:8]}"
    done = root / "installed.txt"
    if not done.is_file():
        shutil.rmtree(root, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, timeout=300)
        installed = subprocess.run([str(root / "bin" / "python"), "-m", "pip", "install", "-q", requirement],
                                   capture_output=True, text=True, timeout=600)
        assert installed.returncode == 0, f"pip install {requirement}: {installed.stderr[-2000:]}"
        version = subprocess.run([str(root / "bin" / "python"), "-c",
                                  "import google.protobuf as p; print(p.__version__)"],
                                 capture_output=True, text=True, check=True).stdout.strip()
        done.write_text(version + "\n")
    return Path(subprocess.run(
        [str(root / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True).stdout.strip())


@pytest.fixture(scope="session", params=["environment", "oldest", "newest"])
def pure_venv(request, pure_wheel, tmp_path_factory) -> Path:
    """The Caffe-free wheel with numpy, scipy and one protobuf: this environment's, or the
    oldest or newest that pyproject.toml allows."""
    tmp = tmp_path_factory.mktemp(f"pure-venv-{request.param}")
    import google.protobuf  # noqa: F401  (google/ holds protobuf and its _upb)

    if request.param == "environment":
        deps = [only_these_packages(tmp / "deps", ["numpy", "scipy", "google"])]
    else:
        deps = [only_these_packages(tmp / "deps", ["numpy", "scipy"]), protobuf_site(request.param)]
    return make_venv(tmp / "venv", pure_wheel, deps)


@pytest.fixture(scope="session")
def plugin_venv(plugin_wheel, tmp_path_factory) -> Path:
    return make_venv(tmp_path_factory.mktemp("plugin-venv") / "venv", plugin_wheel,
                     [Path(sysconfig.get_paths()["purelib"])])


# --------------------------------------------------------------------------
# What the wheels hold


def test_pure_wheel_is_pure_python_with_caffe_pb2_and_examples(pure_wheel):
    assert pure_wheel.name.endswith("-py3-none-any.whl")
    names = set(zipfile.ZipFile(pure_wheel).namelist())
    assert "caffe_temperature/_caffe_pb2.py" in names
    assert "caffe_temperature/prototxt/deploy_example.prototxt" in names
    assert not any(name.endswith((".so", ".cpp")) for name in names)
    info = json.loads(zipfile.ZipFile(pure_wheel).read("caffe_temperature/caffe_temperature_build.json"))
    assert info["plugin"] is False
    entry_points = zipfile.ZipFile(pure_wheel).read(
        next(name for name in names if name.endswith("entry_points.txt"))).decode()
    for command in ("caffe-add-temperature", "caffe-temperature-calibrate", "caffe-temperature-infogain",
                    "caffe-temperature-sample", "caffe-temperature-bench", "caffe-temperature-demo"):
        assert f"{command} = caffe_temperature." in entry_points


def assert_same_messages_as_pycaffe(generated: str) -> None:
    """The module's serialized FileDescriptorProto (read without importing it next to
    pycaffe's) names the same file and messages as pycaffe's caffe_pb2."""
    from caffe.proto import caffe_pb2
    from google.protobuf import descriptor_pb2

    start = generated.index("AddSerializedFile(") + len("AddSerializedFile(")
    serialized = ast.literal_eval(generated[start:generated.index(")\n", start)])
    ours = descriptor_pb2.FileDescriptorProto.FromString(serialized)
    theirs = descriptor_pb2.FileDescriptorProto()
    caffe_pb2.DESCRIPTOR.CopyToProto(theirs)
    assert ours.name == theirs.name == "caffe/proto/caffe.proto"
    assert [m.name for m in ours.message_type] == [m.name for m in theirs.message_type]
    assert [e.name for e in ours.enum_type] == [e.name for e in theirs.enum_type]


def test_pure_wheel_caffe_pb2_matches_pycaffe(pure_wheel, caffe):
    assert_same_messages_as_pycaffe(zipfile.ZipFile(pure_wheel).read("caffe_temperature/_caffe_pb2.py").decode())


# --------------------------------------------------------------------------
# The Caffe-free wheel in a venv with numpy, scipy and protobuf only


def test_pure_venv_has_no_caffe(pure_venv, tmp_path):
    result = run_in(pure_venv, ["python", "-c", """
import importlib.util, caffe_temperature as ct
import google.protobuf
from caffe_temperature import _caffe_pb2
print("protobuf", google.protobuf.__version__, _caffe_pb2.NetParameter.DESCRIPTOR.file.name, file=__import__("sys").stderr)
assert importlib.util.find_spec("caffe") is None
assert not ct.plugin_available()
print(ct.__file__)
try:
    ct.layer_types()
except ct.PluginLoadError as err:
    print("layer_types:", err)
try:
    from caffe_temperature import _native
except ct.PluginLoadError as err:
    print("_native:", err)
"""], tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(str(pure_venv))
    assert "layer_types: " in lines[1] and "built without the plugin" in lines[1]
    assert "_native: " in lines[2] and "built without the plugin" in lines[2]


def test_pure_add_temperature_matches_caffe(pure_venv, tmp_path):
    with_caffe = subprocess.run([sys.executable, "-m", "caffe_temperature.add_temperature_cli", str(EXAMPLE), "--T", "40"],
                                capture_output=True, text=True, timeout=120)
    assert with_caffe.returncode == 0, with_caffe.stderr
    without = run_in(pure_venv, ["caffe-add-temperature", str(EXAMPLE), "--T", "40"], tmp_path)
    assert without.returncode == 0, without.stderr
    assert without.stdout == with_caffe.stdout
    out = tmp_path / "deploy_T40.prototxt"
    written = run_in(pure_venv, ["caffe-add-temperature", str(EXAMPLE), "--T", "40", "-o", str(out)], tmp_path)
    assert written.returncode == 0, written.stderr
    assert out.read_text() == with_caffe.stdout


def test_pure_add_temperature_bad_input_is_one_line(pure_venv, tmp_path):
    result = run_in(pure_venv, ["caffe-add-temperature", str(tmp_path / "missing.prototxt"), "--T", "40"], tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("caffe-add-temperature: error: cannot read "), result.stderr


def test_pure_calibrate_from_logits(pure_venv, tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=200)
    logits = rng.normal(size=(200, 4)) + 3.0 * np.eye(4)[labels]
    np.save(tmp_path / "logits.npy", logits * 4)
    np.save(tmp_path / "labels.npy", labels)
    args = ["--logits", str(tmp_path / "logits.npy"), "--labels", str(tmp_path / "labels.npy"), "--json"]
    without = run_in(pure_venv, ["caffe-temperature-calibrate", *args, str(tmp_path / "pure.json")], tmp_path)
    assert without.returncode == 0, without.stderr
    with_caffe = subprocess.run([sys.executable, "-m", "caffe_temperature.calibrate", *args, str(tmp_path / "caffe.json")],
                                capture_output=True, text=True, timeout=120)
    assert with_caffe.returncode == 0, with_caffe.stderr
    assert json.loads((tmp_path / "pure.json").read_text()) == json.loads((tmp_path / "caffe.json").read_text())


def test_pure_infogain_identity(pure_venv, tmp_path):
    result = run_in(pure_venv, ["caffe-temperature-infogain", "identity", "--classes", "3", "-o",
                                str(tmp_path / "H.binaryproto")], tmp_path)
    assert result.returncode == 0, result.stderr
    check = run_in(pure_venv, ["python", "-c", f"""
from caffe_temperature import _caffe_pb2
blob = _caffe_pb2.BlobProto.FromString(open({str(tmp_path / 'H.binaryproto')!r}, 'rb').read())
print(list(blob.shape.dim), list(blob.data))
"""], tmp_path)
    assert check.returncode == 0, check.stderr
    assert check.stdout.split("]")[0] == "[1, 1, 3, 3"


def test_pure_sample(pure_venv, tmp_path):
    logits = np.log(np.tile([0.7, 0.2, 0.1], (4000, 1)))
    np.save(tmp_path / "logits.npy", logits)
    args = [str(tmp_path / "logits.npy"), "--T", "1", "--seed", "0"]
    without = run_in(pure_venv, ["caffe-temperature-sample", *args], tmp_path)
    assert without.returncode == 0, without.stderr
    draws = np.array(without.stdout.split(), dtype=int)
    assert np.allclose(np.bincount(draws, minlength=3) / draws.size, [0.7, 0.2, 0.1], atol=0.05)
    with_caffe = subprocess.run([sys.executable, "-m", "caffe_temperature.sampling", *args],
                                capture_output=True, text=True, timeout=120)
    assert with_caffe.returncode == 0, with_caffe.stderr
    assert with_caffe.stdout == without.stdout


# --------------------------------------------------------------------------
# The wheel with the plugin: Caffe_ROOT=... pip install .


def test_plugin_wheel_registers_the_layers(plugin_venv, tmp_path):
    result = run_in(plugin_venv, ["python", "-c", """
import caffe, caffe_temperature as ct
print(ct.plugin_path())
print(sorted(ct.layer_types()))
"""], tmp_path)
    assert result.returncode == 0, result.stderr
    path, types = result.stdout.splitlines()
    assert path.startswith(str(plugin_venv)) and path.endswith("caffe_temperature/libcaffe_temperature.so")
    assert types == str(sorted(["SoftmaxWithDistillationLoss", "SoftmaxWithInfogainLoss", "TemperatureSoftmax"]))


def test_plugin_wheel_console_scripts(plugin_venv, tmp_path):
    demo = run_in(plugin_venv, ["caffe-temperature-demo", "--T", "4"], tmp_path)
    assert demo.returncode == 0, demo.stderr
    added = run_in(plugin_venv, ["caffe-add-temperature", str(EXAMPLE), "--T", "40", "--fused"], tmp_path)
    assert added.returncode == 0, added.stderr
    assert 'type: "TemperatureSoftmax"' in added.stdout
    for command in ("caffe-temperature-calibrate", "caffe-temperature-infogain", "caffe-temperature-sample",
                    "caffe-temperature-bench"):
        assert run_in(plugin_venv, [command, "--help"], tmp_path).returncode == 0, command


def test_plugin_wheel_installs_nothing_outside_the_package(plugin_wheel):
    names = zipfile.ZipFile(plugin_wheel).namelist()
    outside = {name.split("/")[0] for name in names} - {"caffe_temperature"}
    assert all(top.endswith(".dist-info") or top == "caffe_temperature_pycaffe.pth" for top in outside), outside
    assert "caffe_temperature/libcaffe_temperature.so" in names
    assert any(name.startswith("caffe_temperature/_native.") for name in names)


def test_pure_legacy_net_says_it_needs_caffe(pure_venv, tmp_path):
    legacy = tmp_path / "v1.prototxt"
    legacy.write_text('name: "old" input: "data" input_dim: 1 input_dim: 3 input_dim: 1 input_dim: 1\n'
                      'layers { name: "prob" type: SOFTMAX bottom: "data" top: "prob" }\n')
    result = run_in(pure_venv, ["caffe-add-temperature", str(legacy), "--T", "2"], tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert "legacy" in result.stderr and "upgrade" in result.stderr


def test_pure_build_takes_the_caffe_proto_given(tmp_path, caffe):
    """A fork's users give their caffe.proto (CAFFE_TEMPERATURE_CAFFE_PROTO) instead of third_party's."""
    sources = sorted((CACHE / "src").glob("caffe-*/src/caffe/proto/caffe.proto"))
    if not sources:
        pytest.skip("no Caffe source tree in the cache")
    configure = subprocess.run(
        ["cmake", "-S", str(REPO), "-B", str(tmp_path / "b"), "-DCAFFE_TEMPERATURE_PLUGIN=OFF",
         f"-DCAFFE_TEMPERATURE_CAFFE_PROTO={sources[0]}", f"-DPython3_EXECUTABLE={sys.executable}"],
        capture_output=True, text=True, timeout=300)
    assert configure.returncode == 0, configure.stdout + configure.stderr
    assert f"_caffe_pb2 generated by" in configure.stdout and f"from {sources[0]}" in configure.stdout
    subprocess.run(["cmake", "--build", str(tmp_path / "b")], check=True, capture_output=True, timeout=300)
    assert_same_messages_as_pycaffe((tmp_path / "b" / "python_package" / "_caffe_pb2.py").read_text())


def test_pure_caffe_pb2_under_each_protobuf(pure_venv, request, tmp_path):
    """The generated module imports and serializes as Caffe expects (BlobProto.data packed) under
    this environment's protobuf and the oldest and newest that pyproject.toml allows."""
    which = request.node.callspec.params["pure_venv"]
    result = run_in(pure_venv, ["python", "-c", """
import google.protobuf
from caffe_temperature import _caffe_pb2
blob = _caffe_pb2.BlobProto(data=[1.5, 2.0])
print(google.protobuf.__version__, blob.SerializeToString().hex())
"""], tmp_path)
    assert result.returncode == 0, result.stderr
    version, serialized = result.stdout.split()
    assert serialized == "2a080000c03f00000040"  # field 5, packed: 8 bytes, 1.5f and 2.0f
    if which == "oldest":
        assert version == protobuf_requirements()["oldest"].split("==")[1]
    elif which == "newest":
        newest = protobuf_requirements()["newest"]
        upper = re.search(r"<\s*([\d.]+)", newest)
        assert upper, f"{newest}: no upper bound"
        oldest = protobuf_requirements()["oldest"].split("==")[1]
        assert version_tuple(oldest) < version_tuple(version) < version_tuple(upper.group(1)), (version, newest)

"""The plugin as users get it: import, install tree, build-tree Caffe, refusals."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CACHE, REPO


@pytest.fixture(scope="module")
def build_dir(caffe) -> Path:
    import caffe_temperature

    return caffe_temperature.plugin_path().parent.parent


def run_python(code: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


def test_import_registers_every_built_layer(caffe):
    import caffe_temperature

    types = caffe_temperature.layer_types()
    assert "TemperatureSoftmax" in types
    assert set(types) <= set(caffe.layer_type_list())


def test_loading_twice_is_harmless(caffe):
    import caffe_temperature

    before = caffe_temperature.layer_types()
    caffe_temperature.load_plugin()
    assert caffe_temperature.layer_types() == before


def test_missing_library_says_how_to_build(tmp_path):
    result = run_python("import caffe_temperature", {"CAFFE_TEMPERATURE_LIBRARY": str(tmp_path / "nope.so")})
    assert result.returncode != 0
    assert "does not exist" in result.stderr and "scripts/setup.sh" in result.stderr


def fake_build(root: Path, caffe_library: Path) -> Path:
    """A build directory as CMake lays it out: lib/ with the plugin and its build info."""
    lib = root / "lib"
    lib.mkdir(parents=True)
    (lib / "libcaffe_temperature.so").write_bytes(b"")
    (lib / "caffe_temperature_build.json").write_text(json.dumps({"caffe_library": str(caffe_library)}))
    return lib / "libcaffe_temperature.so"


def test_picks_the_build_made_for_the_loaded_caffe(caffe, tmp_path, monkeypatch):
    from caffe_temperature import _loader

    loaded = sorted(_loader._loaded_caffe_libraries())
    assert loaded, "pycaffe should have mapped libcaffe into this process"
    cpu = fake_build(tmp_path / "build", tmp_path / "other-caffe" / "libcaffe.so.1.0.0")
    cuda = fake_build(tmp_path / "build-cuda", loaded[0])
    monkeypatch.delenv("CAFFE_TEMPERATURE_LIBRARY", raising=False)
    monkeypatch.setattr(_loader, "_PACKAGE_DIR", tmp_path / "package")
    monkeypatch.setattr(_loader, "_REPO_BUILD_DIRS", (tmp_path / "build", tmp_path / "build-cuda"))
    assert _loader.plugin_path() == cuda
    (cuda.parent / "caffe_temperature_build.json").unlink()
    assert _loader.plugin_path() == cpu  # no match: the first one, which the Caffe check then refuses


def test_refuses_a_process_with_another_libcaffe(build_dir, tmp_path):
    import json

    built_with = Path(json.loads((build_dir / "lib" / "caffe_temperature_build.json").read_text())["caffe_library"])
    impostor = tmp_path / built_with.resolve().name
    shutil.copy(built_with.resolve(), impostor)
    result = run_python(f"import ctypes; ctypes.CDLL({str(impostor)!r}); import caffe_temperature")
    assert result.returncode != 0
    assert "was built against" in result.stderr and str(impostor) in result.stderr


def test_installed_package_loads_the_plugin_next_to_it(build_dir, tmp_path):
    subprocess.run(["cmake", "--install", str(build_dir), "--prefix", str(tmp_path)], check=True,
                   capture_output=True, timeout=120)
    site = next(tmp_path.glob("lib/python*/site-packages"))
    pycaffe = os.environ["PYTHONPATH"].split(os.pathsep)[0]
    result = run_python(
        "import caffe_temperature as ct; print(ct.plugin_path()); print(ct.layer_types())",
        {"PYTHONPATH": os.pathsep.join([str(site), pycaffe])},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == str(site / "caffe_temperature" / "libcaffe_temperature.so")
    assert "TemperatureSoftmax" in result.stdout
    assert (tmp_path / "lib" / "cmake" / "CaffeTemperature" / "CaffeTemperatureConfig.cmake").is_file()
    assert (site / "caffe_temperature" / "prototxt" / "deploy_example.prototxt").is_file()

    # The installed command finds the package under the prefix given to `cmake --install`
    # (not the one configured), from any folder; `sh -x` shows the path it puts first.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    example = REPO / "prototxt" / "deploy_example.prototxt"
    command = subprocess.run(["sh", "-x", str(tmp_path / "bin" / "caffe-add-temperature"), str(example), "--T", "40"],
                             capture_output=True, text=True, cwd=elsewhere, timeout=120)
    assert command.returncode == 0, command.stderr
    (trace,) = [line for line in command.stderr.splitlines() if "PYTHONPATH=" in line]
    package_dir = Path(trace.split("PYTHONPATH=")[1].split()[0].strip("'").split(":")[1])
    assert package_dir.resolve() == site.resolve()
    assert 'type: "Scale"' in command.stdout and "0.025" in command.stdout


CONSUMER_CMAKE = """cmake_minimum_required(VERSION 3.18)
project(consumer CXX)
find_package(CaffeTemperature REQUIRED)
add_library(consumer SHARED consumer.cpp)
target_link_libraries(consumer PRIVATE CaffeTemperature::caffe_temperature)
"""
CONSUMER_CPP = """#include "caffe_temperature/layer_params.hpp"
int SoftmaxAxisOf(const caffe::LayerParameter& p) { return caffe_temperature::InfogainSoftmaxAxis(p); }
"""


def test_installed_cmake_package_finds_its_caffe_again(build_dir, tmp_path):
    """Another CMake project links CaffeTemperature::caffe_temperature from an install."""
    prefix = tmp_path / "prefix"
    subprocess.run(["cmake", "--install", str(build_dir), "--prefix", str(prefix)], check=True,
                   capture_output=True, timeout=120)
    source = tmp_path / "consumer"
    source.mkdir()
    (source / "CMakeLists.txt").write_text(CONSUMER_CMAKE)
    (source / "consumer.cpp").write_text(CONSUMER_CPP)
    configured = subprocess.run(["cmake", "-S", str(source), "-B", str(tmp_path / "b"), f"-DCMAKE_PREFIX_PATH={prefix}",
                                 f"-DPython3_EXECUTABLE={sys.executable}"], capture_output=True, text=True, timeout=300)
    assert configured.returncode == 0, configured.stdout + configured.stderr
    built = subprocess.run(["cmake", "--build", str(tmp_path / "b")], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    linked = subprocess.run(["ldd", str(tmp_path / "b" / "libconsumer.so")], capture_output=True, text=True).stdout
    assert str(prefix / "lib" / "libcaffe_temperature.so") in linked


def test_env_sh_leaves_caffe_logging_alone_and_the_tools_quiet_it():
    """After `source build/env.sh`, `caffe train` logs as Caffe does; the package's tools
    keep Caffe's INFO lines out of their output unless GLOG_minloglevel asks for them."""
    env = {key: value for key, value in os.environ.items() if key != "GLOG_minloglevel"}
    sourced = subprocess.run(["bash", "-c", f"source {REPO}/build/env.sh; echo ${{GLOG_minloglevel-unset}}"],
                             capture_output=True, text=True, env=env, timeout=60)
    assert sourced.stdout.strip() == "unset"
    demo = [sys.executable, "-m", "caffe_temperature.demo", "--T", "4"]
    quiet = subprocess.run(demo, capture_output=True, text=True, env=env, timeout=300)
    assert quiet.returncode == 0, quiet.stderr
    assert "Initializing net" not in quiet.stderr
    verbose = subprocess.run(demo, capture_output=True, text=True, env=dict(env, GLOG_minloglevel="0"), timeout=300)
    assert verbose.returncode == 0, verbose.stderr
    assert "Initializing net" in verbose.stderr


@pytest.mark.parametrize("variable", ["Caffe_ROOT", "Caffe_DIR"])
def test_configures_against_a_caffe_build_tree(tmp_path, variable):
    """A build tree's CaffeConfig lacks the generated caffe.pb.h directory."""
    trees = sorted((CACHE / "build").glob("caffe-*/CaffeConfig.cmake"))
    if not trees:
        pytest.skip("no Caffe build tree in the cache (Caffe came from Caffe_ROOT)")
    result = subprocess.run(
        ["cmake", "-S", str(REPO), "-B", str(tmp_path / "b"), f"-D{variable}={trees[0].parent}",
         f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    cache = (tmp_path / "b" / "CMakeCache.txt").read_text()
    assert f"CAFFE_PROTO_INCLUDE_DIR:PATH={trees[0].parent}/include" in cache


def test_native_upgrades_a_v1_net(caffe):
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format

    import caffe_temperature._native as native

    legacy = text_format.Parse(
        'name: "old" input: "data" input_dim: 1 input_dim: 3 input_dim: 1 input_dim: 1 '
        'layers { name: "prob" type: SOFTMAX bottom: "data" top: "prob" }',
        caffe_pb2.NetParameter(),
    )
    upgraded_bytes, upgraded = native.upgrade_net(legacy.SerializeToString(), "old")
    net = caffe_pb2.NetParameter.FromString(upgraded_bytes)
    assert upgraded
    assert [(layer.type, layer.name) for layer in net.layer] == [("Input", "input"), ("Softmax", "prob")]
    assert not net.layers and not net.input


def test_import_without_pycaffe_loads_nothing_and_says_why():
    """The pure tools need no Caffe: the import succeeds, the plugin's entry points explain."""
    result = run_python("""
import sys
import caffe_temperature as ct
assert "caffe" not in sys.modules and not ct.plugin_available()
for attempt in (ct.layer_types, ct.load_plugin, lambda: exec("from caffe_temperature import _native")):
    try:
        attempt()
    except ct.PluginLoadError as err:
        print(err)
from caffe_temperature import sample
print(sample([0.0, 50.0], T=1.0))
""", {"PYTHONPATH": str(REPO / "python")})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 4 and lines[-1] == "1"
    assert all("pycaffe cannot be imported" in line and "PYTHONPATH" in line for line in lines[:3])

"""Finding and loading libcaffe_temperature.so into the running process."""

from __future__ import annotations

import ctypes
import json
import os
import sys
from pathlib import Path

LIBRARY_NAME = "libcaffe_temperature.so"
BUILD_INFO_NAME = "caffe_temperature_build.json"
_PACKAGE_DIR = Path(__file__).resolve().parent
# scripts/setup.sh builds into build/, or build-cuda/ against a CUDA Caffe.
_REPO_BUILD_DIRS = tuple(_PACKAGE_DIR.parent.parent / name for name in ("build", "build-cuda"))

BUILD_HINT = (
    "Install the package with it (Caffe_ROOT=<your caffe> pip install caffe-temperature), "
    "build it in a source tree with scripts/setup.sh (or cmake -DCaffe_ROOT=... && cmake --build), "
    "or point CAFFE_TEMPERATURE_LIBRARY at libcaffe_temperature.so."
)


class PluginLoadError(ImportError):
    """The plugin cannot be loaded into this process."""


def built_without_plugin() -> bool:
    """True for a package built with CAFFE_TEMPERATURE_PLUGIN=OFF (the pure-Python wheel),
    unless CAFFE_TEMPERATURE_LIBRARY names a plugin: its build info says so, and no
    library was ever meant to be next to it."""
    info_file = _PACKAGE_DIR / BUILD_INFO_NAME
    if os.environ.get("CAFFE_TEMPERATURE_LIBRARY") or not info_file.is_file():
        return False
    return json.loads(info_file.read_text()).get("plugin", True) is False


def pycaffe_importable() -> bool:
    """Whether ``import caffe`` works (it is imported, if so: the plugin must come after it)."""
    try:
        import caffe  # noqa: F401
    except ImportError:
        return False
    return True


def plugin_available() -> bool:
    """Whether ``import caffe_temperature`` should load the plugin: pycaffe is importable
    and this package has (or CAFFE_TEMPERATURE_LIBRARY names) a plugin. Without pycaffe the
    layers could not be used anyway, and a pure-Python install has no plugin to load."""
    return not built_without_plugin() and pycaffe_importable()


def plugin_path() -> Path:
    """Where the plugin library is: $CAFFE_TEMPERATURE_LIBRARY, next to the
    installed package, or in one of the source tree's build directories (the
    one built against the libcaffe this process has loaded, when several are)."""
    override = os.environ.get("CAFFE_TEMPERATURE_LIBRARY")
    if override:
        path = Path(override)
        if not path.is_file():
            raise PluginLoadError(f"CAFFE_TEMPERATURE_LIBRARY={override} does not exist. {BUILD_HINT}")
        return path
    candidates = [_PACKAGE_DIR / LIBRARY_NAME] + [d / "lib" / LIBRARY_NAME for d in _REPO_BUILD_DIRS]
    found = [candidate for candidate in candidates if candidate.is_file()]
    if not found:
        places = ", ".join(str(d / "lib") for d in _REPO_BUILD_DIRS)
        raise PluginLoadError(f"{LIBRARY_NAME} not found next to {_PACKAGE_DIR} or in {places}. {BUILD_HINT}")
    loaded = _loaded_caffe_libraries()
    return next((library for library in found if _built_against(library) in loaded), found[0])


def _loaded_caffe_libraries() -> set[Path]:
    """libcaffe shared objects already mapped into this process (by pycaffe)."""
    maps = Path("/proc/self/maps")
    if not maps.exists():
        return set()
    found = set()
    for line in maps.read_text().splitlines():
        path = line.split(maxsplit=5)[-1] if line.count(" ") >= 5 else ""
        if Path(path).name.startswith("libcaffe.so"):
            found.add(Path(path).resolve())
    return found


def build_info(library: Path) -> dict | None:
    """What CMake recorded next to a plugin build: the libcaffe it was linked with
    ("caffe_library") and whether that Caffe is CPU-only ("cpu_only")."""
    info_file = library.parent / BUILD_INFO_NAME
    if not info_file.is_file():
        return None
    return json.loads(info_file.read_text())


def _built_against(library: Path) -> Path | None:
    info = build_info(library)
    return Path(info["caffe_library"]).resolve() if info else None


def _check_same_caffe(library: Path) -> None:
    """Refuse a process whose Caffe is not the one the plugin was built with:
    the dynamic loader would bind the plugin to it by soname, and layer
    registries or class layouts that differ fail much later, or crash."""
    built_with = _built_against(library)
    if built_with is None:
        return
    for loaded in _loaded_caffe_libraries():
        if loaded != built_with:
            raise PluginLoadError(
                f"{library} was built against {built_with}, but this process already "
                f"loaded {loaded} (through pycaffe from {_pycaffe_origin()}). "
                "Use the pycaffe of the Caffe the plugin was built with, or rebuild the "
                "plugin with -DCaffe_ROOT pointing at this one."
            )


def _pycaffe_origin() -> str:
    caffe = sys.modules.get("caffe")
    return str(getattr(caffe, "__file__", "an unknown location"))


def _extend_package_path(library: Path) -> None:
    """In a source tree, _native lives in <build>/python/caffe_temperature."""
    package = sys.modules["caffe_temperature"]
    native_dir = library.parent.parent / "python" / "caffe_temperature"
    if native_dir.is_dir() and str(native_dir) not in package.__path__:
        package.__path__.append(str(native_dir))


def load_plugin() -> ctypes.CDLL:
    """Load the plugin with RTLD_GLOBAL so that its layer registrations land in
    the same registry as pycaffe's. Loading twice returns the same handle."""
    if built_without_plugin():
        raise PluginLoadError(
            f"this caffe_temperature ({_PACKAGE_DIR}) was built without the plugin "
            "(CAFFE_TEMPERATURE_PLUGIN=OFF): its tools that need no Caffe work, but the layers need "
            f"pycaffe and the compiled plugin. {BUILD_HINT}"
        )
    # pycaffe first: its libcaffe is the one the plugin must match, and a
    # plugin loaded first would impose its own libcaffe on pycaffe by soname.
    try:
        import caffe  # noqa: F401
    except ImportError as err:
        raise PluginLoadError(
            f"pycaffe cannot be imported ({err}), and the plugin's layers only exist inside Caffe: "
            "put <caffe>/python on PYTHONPATH (source build/env.sh does this for the Caffe that "
            "scripts/setup.sh built; `Caffe_ROOT=... pip install` adds it to the environment it installs into)"
        ) from err
    library = plugin_path()
    _check_same_caffe(library)
    handle = ctypes.CDLL(str(library), mode=ctypes.RTLD_GLOBAL)
    _extend_package_path(library)
    return handle

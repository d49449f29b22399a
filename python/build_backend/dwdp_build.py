"""A PEP 517 build backend for the pure-Python dwdp package, standard library only (see
pyproject.toml for why). It builds a py3-none-any wheel of python/dwdp/, an editable wheel
(PEP 660: a .pth file pointing at python/), and an sdist of python/.
"""

import base64
import hashlib
import io
import os
import re
import tarfile
import zipfile

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_NAME = "dwdp"
_SUMMARY = "Distributed Weight Data Parallelism of MoE experts for PyTorch engines (libdwdp.so)"
_TAG = "py3-none-any"
# Fixed timestamps keep the archives reproducible.
_EPOCH = (1980, 1, 1, 0, 0, 0)


def _version():
    with open(os.path.join(_ROOT, _NAME, "__init__.py"), encoding="utf-8") as source:
        match = re.search(r'^__version__ = "([^"]+)"', source.read(), re.M)
    if not match:
        raise RuntimeError("dwdp/__init__.py has no __version__")
    return match.group(1)


def _metadata():
    return ("Metadata-Version: 2.1\nName: %s\nVersion: %s\nSummary: %s\n"
            "Requires-Python: >=3.8\n" % (_NAME, _version(), _SUMMARY)).encode()


def _dist_info():
    return "%s-%s.dist-info" % (_NAME, _version())


def _package_files():
    files = []
    for directory, _, names in os.walk(os.path.join(_ROOT, _NAME)):
        for name in sorted(names):
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                files.append((os.path.relpath(path, _ROOT).replace(os.sep, "/"), path))
    return sorted(files)


def _digest(data):
    encoded = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + encoded.decode()


def _write_wheel(wheel_directory, entries):
    """entries: [(archive name, bytes)]; the dist-info files and RECORD are added."""
    info = _dist_info()
    wheel = ("Wheel-Version: 1.0\nGenerator: dwdp_build\nRoot-Is-Purelib: true\nTag: %s\n"
             % _TAG).encode()
    entries = list(entries) + [(info + "/METADATA", _metadata()), (info + "/WHEEL", wheel)]
    record = "".join("%s,%s,%d\n" % (name, _digest(data), len(data)) for name, data in entries)
    record += info + "/RECORD,,\n"
    entries.append((info + "/RECORD", record.encode()))
    filename = "%s-%s-%s.whl" % (_NAME, _version(), _TAG)
    with zipfile.ZipFile(os.path.join(wheel_directory, filename), "w",
                         zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            item = zipfile.ZipInfo(name, _EPOCH)
            item.external_attr = 0o644 << 16
            archive.writestr(item, data, zipfile.ZIP_DEFLATED)
    return filename


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_editable(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    info = os.path.join(metadata_directory, _dist_info())
    os.makedirs(info, exist_ok=True)
    with open(os.path.join(info, "METADATA"), "wb") as out:
        out.write(_metadata())
    return _dist_info()


prepare_metadata_for_build_editable = prepare_metadata_for_build_wheel


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    entries = []
    for name, path in _package_files():
        with open(path, "rb") as source:
            entries.append((name, source.read()))
    return _write_wheel(wheel_directory, entries)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    return _write_wheel(wheel_directory, [("dwdp.pth", (_ROOT + "\n").encode())])


def build_sdist(sdist_directory, config_settings=None):
    base = "%s-%s" % (_NAME, _version())
    filename = base + ".tar.gz"
    members = [("pyproject.toml", os.path.join(_ROOT, "pyproject.toml")),
               ("build_backend/dwdp_build.py", os.path.abspath(__file__))]
    members += _package_files()
    with tarfile.open(os.path.join(sdist_directory, filename), "w:gz") as archive:
        for name, path in members:
            with open(path, "rb") as source:
                data = source.read()
            item = tarfile.TarInfo("%s/%s" % (base, name))
            item.size, item.mode = len(data), 0o644
            archive.addfile(item, io.BytesIO(data))
        pkg_info = _metadata()
        item = tarfile.TarInfo(base + "/PKG-INFO")
        item.size, item.mode = len(pkg_info), 0o644
        archive.addfile(item, io.BytesIO(pkg_info))
    return filename

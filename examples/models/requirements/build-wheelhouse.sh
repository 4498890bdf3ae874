#!/bin/sh
# Builds the wheel of src/mpshout into ./wheelhouse, without network, for an agent started
# with --python-find-links (MODELPLANE_PYTHON_FIND_LINKS) pointing there.
#
# With setuptools and wheel importable, pip builds it; otherwise a few lines of Python write
# the wheel (a zip of the module and its dist-info) themselves.
set -eu
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
mkdir -p wheelhouse
if "$PYTHON" -c 'import setuptools, wheel' 2>/dev/null; then
	"$PYTHON" -m pip wheel --no-deps --no-build-isolation --no-index -w wheelhouse ./src/mpshout
else
	"$PYTHON" - <<'PY'
import base64, hashlib, os, zipfile

name, version = "mpshout", "1.0"
info = f"{name}-{version}.dist-info"
files = {
    f"{name}/__init__.py": open(f"src/{name}/{name}/__init__.py", "rb").read(),
    f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
    f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: build-wheelhouse.sh\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = ""
for path, data in files.items():
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    record += f"{path},sha256={digest},{len(data)}\n"
files[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
out = os.path.join("wheelhouse", f"{name}-{version}-py3-none-any.whl")
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
    for path, data in files.items():
        z.writestr(path, data)
print(f"wrote {out}")
PY
fi

#!/usr/bin/env bash
# Regenerate requirements.lock, the exact versions scripts/test.sh installs (the ones the suite last passed on): uv
# resolves settings.ini's requirements, its dev extra and the build backend's own requirements, for the CI interpreter.
# Run it after changing a requirement in settings.ini, then run scripts/test.sh and commit both files.
set -euo pipefail
cd "$(dirname "$0")/.."
tools=$(mktemp -d /tmp/nbdeploy-lock.XXXX); trap 'rm -rf "$tools"' EXIT
python3 -m venv "$tools/venv" && "$tools/venv/bin/pip" install -q "uv>=0.5" "hatchling>=1.24"
"$tools/venv/bin/python" - > "$tools/requirements.in" <<'PY'
import shlex, tomllib
from hatch_build import settings
c = settings()
build = tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]
print(*shlex.split(c["requirements"]), *shlex.split(c["dev_requirements"]), *build, sep="\n")
PY
"$tools/venv/bin/uv" pip compile "$tools/requirements.in" -o requirements.lock --quiet --no-annotate \
  --python-version "${LOCK_PYTHON:-3.11}" --python-platform x86_64-manylinux_2_28 \
  --custom-compile-command "bash scripts/lock.sh"
echo "requirements.lock: $(grep -c '==' requirements.lock) pinned distributions"

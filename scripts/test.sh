#!/usr/bin/env bash
# Install everything the test suite needs, start the services it uses, and run it all.
# The README's second command; .ci/run calls it. Stops what it started (by recorded PID) on exit.
# It installs into a virtual environment made anew on every run (NBDEPLOY_TEST_VENV, default .venv-test), at the
# versions of requirements.lock; NBDEPLOY_REUSE_VENV=1 keeps an existing one, for quick local reruns only.
# Arguments go to pytest: `bash scripts/test.sh -m "not fresh_install"` skips the clean-clone install tests.
set -euo pipefail
cd "$(dirname "$0")/.."
export DOCKER_BUILDKIT=0 BENTOML_DO_NOT_TRACK=true PIP_DISABLE_PIP_VERSION_CHECK=1

echo "== a virtual environment made from scratch, with the interpreter's stock pip (never the machine's site-packages)"
VENV="${NBDEPLOY_TEST_VENV:-$PWD/.venv-test}"
if [ "${NBDEPLOY_REUSE_VENV:-0}" = 1 ] && [ -x "$VENV/bin/python" ]; then echo "reusing $VENV (NBDEPLOY_REUSE_VENV=1)"
else python3 -m venv --clear "$VENV"; fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"
python -m pip --version

echo "== Debian's chromium for the browser test (tests/test_sidebar.py skips and says why without it)"
command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } || echo "no chromium: the browser test will skip"

echo "== Debian packages for the registry, Spark, manifest, endpoint and Prometheus tests (each skips and says why without its tool)"
need=(); command -v docker-registry >/dev/null || need+=(docker-registry)
command -v java >/dev/null || need+=(openjdk-17-jre-headless); command -v kubectl >/dev/null || need+=(kubernetes-client)
command -v nginx >/dev/null || need+=(nginx)  # the stable endpoint's tests (bookworm's nginx-light is just nginx plus the echo module)
command -v promtool >/dev/null || need+=(prometheus)  # monitoring: a real Prometheus scrapes a deployment; promtool
[ ${#need[@]} -eq 0 ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; } || echo "could not install ${need[*]}"

echo "== nbdeploy and its dev extra at the versions of requirements.lock (the build hook builds the sidebar)"
start=$SECONDS
PIP_CONSTRAINT="$PWD/requirements.lock" python -m pip install -q -e ".[dev]"
echo "installed in $((SECONDS - start)) s"
python -m pip check
if ! jupyter labextension list 2>&1 | grep -q "nbdeploy-labextension.*enabled.*OK"; then
  jupyter labextension list; echo "the install did not bring the JupyterLab sidebar (is node on PATH?)"; exit 1
fi

echo "== the sidebar's TypeScript and CSS: the extension template's eslint, prettier and stylelint"
(cd labextension && jlpm lint:check)

echo "== nbdev: nbdeploy/ must equal a fresh export of nbs/, and nbs/ must carry no outputs"
nbdev_export
if [ -n "$(git status --porcelain --untracked-files=all -- nbdeploy)" ]; then
  git status --short -- nbdeploy; git diff --stat -- nbdeploy
  echo "nbdev_export changed nbdeploy/: run nbdev_export and commit nbs/ and nbdeploy/ together"; exit 1
fi
nbdev_clean
if [ -n "$(git status --porcelain -- nbs)" ]; then
  git status --short -- nbs; echo "nbs/ carries outputs or unclean metadata: run nbdev_clean and commit"; exit 1
fi

echo "== the documentation site from nbs/ and tutorials/ (tests/test_docs.py reads it in Chromium)"
bash scripts/docs.sh "$PWD/_site"
export NBDEPLOY_DOCS_SITE="$PWD/_site"

echo "== the notebooks' own test cells"
nbdev_test --n_workers 2

echo "== a Docker engine for the container tests"
dockerd_dir=$(mktemp -d /tmp/nbdeploy-dockerd.XXXX)
export NBDEPLOY_DOCKERD_DIR="$dockerd_dir"
trap 'bash scripts/docker-engine.sh stop || true' EXIT
bash scripts/docker-engine.sh start || echo "no Docker engine could be started: the container tests will skip and say why"

echo "== pytest"
python -m pytest -q -p no:cacheprovider --timeout 900 --durations=15 tests "$@"

#!/usr/bin/env bash
# Build the documentation site from nbs/ and tutorials/ (rendered as they are, never executed) and an API reference
# generated from the installed package, with Sphinx + myst-nb (docs/conf.py). Run it in the venv scripts/test.sh
# makes (or any with nbdeploy's dev extra). Writes _site/ (or the folder given as $1); fails on any error or warning
# that docs/conf.py does not name as unavoidable. Open _site/index.html, or `python -m http.server -d _site`.
set -euo pipefail
cd "$(dirname "$0")/.."
out="$(realpath -m "${1:-_site}")"
stage=$(mktemp -d /tmp/nbdeploy-docs.XXXX); trap 'rm -rf "$stage"' EXIT
start=$SECONDS
python docs/pages.py "$stage/src"
python docs/api.py "$stage/src/api"
rm -rf "$out"
python -m sphinx -b html -c docs -W --keep-going -q -j auto -d "$stage/doctrees" "$stage/src" "$out"
echo "documentation site: $out/index.html (built in $((SECONDS - start)) s)"

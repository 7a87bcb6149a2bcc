"""Sphinx configuration of nbdeploy's documentation site (Sphinx + myst-nb + furo): scripts/docs.sh builds it.

The source folder is staged at build time by docs/pages.py and docs/api.py; this folder only holds the config.
"""
import configparser
from pathlib import Path

_ini = configparser.ConfigParser()
_ini.read(Path(__file__).resolve().parents[1] / "settings.ini")
_cfg = _ini["DEFAULT"]

project = _cfg["title"]
author = _cfg["author"]
copyright = _cfg["copyright"]
release = version = _cfg["version"]

extensions = ["myst_nb"]
root_doc = "index"
exclude_patterns = [".doctrees", "**/.ipynb_checkpoints"]

# The notebooks are rendered as they are: never executed (they start servers, build images and deploy).
nb_execution_mode = "off"
nb_merge_streams = True
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

html_theme = "furo"
html_title = f"{project} {version}"
html_show_sourcelink = False
html_copy_source = False

suppress_warnings = [
    "image.not_readable",  # tutorials show screenshots the browser test writes to tests/artifacts/ (not in a clone)
    "myst.header",  # notebooks may step from a title straight to a level-3 heading
]

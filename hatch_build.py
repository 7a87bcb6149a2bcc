"""Build hooks: nbdeploy's metadata read from settings.ini, and the JupyterLab sidebar built as the wheel is made."""
import os
import shlex
import shutil
import warnings
from configparser import ConfigParser
from pathlib import Path

from hatchling.metadata.plugin.interface import MetadataHookInterface

LICENSES = {"apache2": "Apache-2.0"}  # settings.ini's name -> an SPDX expression
STATUSES = ["Planning", "Pre-Alpha", "Alpha", "Beta", "Production/Stable", "Mature", "Inactive"]


def settings(root: str = ".") -> dict:
    "The [DEFAULT] section of settings.ini, nbdev 2.4's single source of the project's metadata."
    cfg = ConfigParser(delimiters=["="])
    cfg.read(Path(root) / "settings.ini", encoding="utf-8")
    return dict(cfg["DEFAULT"])


class CustomMetadataHook(MetadataHookInterface):
    "Fill pyproject's dynamic [project] fields from settings.ini."
    def update(self, metadata: dict) -> None:
        c = settings(self.root)
        status = int(c["status"])
        metadata.update({
            "version": c["version"], "description": c["description"], "keywords": c["keywords"].split(),
            "readme": {"file": "README.md", "content-type": "text/markdown"}, "requires-python": f">={c['min_python']}",
            "license": LICENSES[c["license"]], "authors": [{"name": c["author"], "email": c["author_email"]}],
            "urls": {"Repository": c["git_url"], "Documentation": c["doc_host"] + c["doc_baseurl"]},
            "dependencies": shlex.split(c.get("requirements", "")),
            "optional-dependencies": {"dev": shlex.split(c.get("dev_requirements", ""))},
            "scripts": dict(s.strip().split("=", 1) for s in c.get("console_scripts", "").split(",") if s.strip()),
            "entry-points": {"nbdev": {c["lib_path"]: f"{c['lib_path']}._modidx:d"}},
            "classifiers": [f"Development Status :: {status + 1} - {STATUSES[status]}", "Framework :: Jupyter",
                            "Framework :: Jupyter :: JupyterLab", "Framework :: Jupyter :: JupyterLab :: 4",
                            "Framework :: Jupyter :: JupyterLab :: Extensions :: Prebuilt",
                            "Programming Language :: Python :: 3",
                            *(f"Programming Language :: Python :: 3.{m}" for m in range(10, 14))]})


NO_NODE = ("nbdeploy: Node.js (`node`) is not on PATH, so the JupyterLab sidebar in labextension/ cannot be built "
           "from this clone.")


def stale(build_dir: str, path: str) -> bool:
    "Is the sidebar's build missing, or older than any of its sources?"
    from hatch_jupyter_builder.utils import is_stale
    return any(is_stale(build_dir, Path(path) / s) for s in ("src", "style", "schema", "package.json", "yarn.lock"))


def sidebar(target_name: str, version: str, path: str, build_dir: str, **kwargs) -> None:
    "Build the sidebar with the extension template's npm_builder; without node, warn (editable) or stop (a wheel)."
    from hatch_jupyter_builder.utils import npm_builder
    if not stale(build_dir, path): return print("nbdeploy: the JupyterLab sidebar's build is up to date")
    if shutil.which("node") is None:
        if version == "editable" or os.environ.get("NBDEPLOY_NO_SIDEBAR") == "1":
            return warnings.warn(NO_NODE + " Installing without it: `jupyter labextension list` will not show it.")
        raise RuntimeError(NO_NODE + " Install Node.js 18 or newer and try again, install a wheel that carries the "
                           "prebuilt sidebar, or set NBDEPLOY_NO_SIDEBAR=1 to build a wheel without it.")
    npm_builder(target_name, version, path=path, build_dir=build_dir, force=True, **kwargs)

"""Stage the site's pages, at build time: nbs/ and tutorials/ as they are (never executed), and the home page.

Each notebook of nbs/ goes through nbdev's own processor with the processors `nbdev_docs` uses that run no code:
`#| hide` cells are dropped, nbdev's `#|` directive lines are taken out of the code, and headings ending in " -"
are removed. The tutorials are copied unchanged. The home page is nbs/index.ipynb (README.md where it does not
exist yet), with the site's navigation (nbs/ in file order, the tutorials, the API reference) appended to it.
Usage: `python docs/pages.py STAGE_DIR` (scripts/docs.sh runs it, then docs/api.py writes STAGE_DIR/api).
"""
import re
import shutil
import sys
from pathlib import Path

import nbformat
from nbdev.process import NBProcessor
from nbdev.processors import hide_, hide_line, rm_header_dash

REPO = Path(__file__).resolve().parents[1]
DIRECTIVE = re.compile(r"^\s*#\s*\|")


def _no_directives(cell):
    "Take out the `#| ...` option lines nbdev leaves for Quarto (`#| eval: false`): they mean nothing to a reader."
    if cell.cell_type == "code" and cell.source:
        cell.source = "\n".join(l for l in cell.source.splitlines() if not DIRECTIVE.match(l)).strip("\n")


def notebook(src: Path, dest: Path) -> nbformat.NotebookNode:
    "Write `src` processed for reading (no code run) to `dest`; return it."
    proc = NBProcessor(src, procs=[hide_, hide_line, rm_header_dash, _no_directives], rm_directives=True)
    proc.process()
    nb = nbformat.from_dict({k: v for k, v in proc.nb.items() if not k.endswith("_")})  # nbdev's path_
    nb.cells = [c for c in nb.cells if c.get("source", "").strip() or c.get("outputs")]
    for c in nb.cells:
        for k in [k for k in c if k.endswith("_")]: del c[k]  # nbdev's working attributes (directives_, idx_)
    nbformat.write(nb, dest)
    return nb


def toctree(caption: str, entries: list) -> str:
    if not entries: return ""
    return f"```{{toctree}}\n:caption: {caption}\n:maxdepth: 1\n:hidden:\n\n" + "\n".join(entries) + "\n```\n"


def stage(out: Path, repo: Path = REPO) -> dict:
    "Stage every page in `out`; the pages' names by section."
    out.mkdir(parents=True, exist_ok=True)
    nbs = sorted(p for p in (repo / "nbs").glob("*.ipynb") if p.stem != "index")
    tuts = sorted((repo / "tutorials").glob("*.ipynb"))
    for p in nbs: notebook(p, out / p.name)
    (out / "tutorials").mkdir(exist_ok=True)
    for p in tuts: shutil.copy(p, out / "tutorials" / p.name)
    nav = "\n".join(filter(None, [toctree("Notebooks (nbs/)", [p.stem for p in nbs]),
                                  toctree("Tutorials", [f"tutorials/{p.stem}" for p in tuts]),
                                  toctree("Reference", ["api/index"])]))
    home = repo / "nbs" / "index.ipynb"
    if home.exists():
        nb = notebook(home, out / "index.ipynb")
        nb.cells.append(nbformat.v4.new_markdown_cell(nav))
        nbformat.write(nb, out / "index.ipynb")
    else: (out / "index.md").write_text((repo / "README.md").read_text() + "\n\n" + nav)
    return {"home": "nbs/index.ipynb" if home.exists() else "README.md", "nbs": len(nbs), "tutorials": len(tuts)}


if __name__ == "__main__":
    got = stage(Path(sys.argv[1]))
    print(f"pages: home from {got['home']}, {got['nbs']} notebooks of nbs/, {got['tutorials']} tutorials")

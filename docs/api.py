"""Write the API reference as MyST pages, at build time, from the installed package: one page per nbdeploy module.

Each page documents every name of the module's `__all__` through nbdev's `show_doc` (with a renderer that reads
fastcore's docments into a parameter table), and each class with its public methods and properties, those
attached with fastcore's `@patch` included. Nothing here names a module or a symbol: rename freely in nbs/.
Usage: `python docs/api.py OUT_DIR` (scripts/docs.sh runs it).
"""
import importlib
import inspect
import pkgutil
import re
import sys
from pathlib import Path

from fastcore.docments import MarkdownRenderer, docments
from nbdev.showdoc import show_doc

PKG = "nbdeploy"
MAXLINE = 110


def _cell(s, code: bool = False) -> str:
    "One table cell: a single line, pipes escaped; `code` makes it literal (a type or a default value)."
    s = " ".join(str(s).split()).replace("|", "\\|")
    return f"`{s}`" if code and s and "`" not in s else s


def _anno(a) -> str:
    if a is inspect.Parameter.empty: return ""
    return inspect.formatannotation(a).strip("'") if not isinstance(a, str) else a


def _default(d) -> str:
    if d is inspect.Parameter.empty: return ""
    if inspect.isclass(d) or inspect.isfunction(d): return f"{d.__module__}.{d.__qualname__}"
    return re.sub(r" at 0x[0-9a-f]+", "", repr(d))


class DocRenderer(MarkdownRenderer):
    "`show_doc` renderer: a labelled heading, the signature, the docstring and the docments as a parameter table."
    def __init__(self, sym, name: str | None = None, title_level: int = 3, maxline: int = MAXLINE):
        try: super().__init__(sym, name=name, title_level=title_level, maxline=maxline)
        except (NameError, OSError):  # a type checker's name in an annotation, a function made without source
            self.sym = inspect.unwrap(getattr(sym, "fget", None) or sym)
            self.nm, self.title_level = name or self.sym.__qualname__, title_level
            self.sig = inspect.signature(self.sym)
        # the object's own docstring only (fastcore falls back to its type's: "Call self as a function.")
        self.docs = inspect.cleandoc(d) if isinstance(d := getattr(self.sym, "__doc__", None), str) else ""

    def _signature(self) -> str:
        ps, kw = [], False
        for p in self.sig.parameters.values():
            if p.name in ("self", "cls"): continue
            if p.kind == p.KEYWORD_ONLY and not kw: ps.append("*")
            kw = kw or p.kind in (p.KEYWORD_ONLY, p.VAR_POSITIONAL)
            s = ("*" if p.kind == p.VAR_POSITIONAL else "**" if p.kind == p.VAR_KEYWORD else "") + p.name
            if p.annotation is not p.empty: s += f":{_anno(p.annotation)}"
            if p.default is not p.empty: s += f"={_default(p.default)}"
            ps.append(s)
        r = self.sig.return_annotation
        ret = "" if r is inspect.Signature.empty else f" -> {_anno(r)}"
        one = f"{self.nm}({', '.join(ps)}){ret}"
        return one if len(one) <= MAXLINE else f"{self.nm}(\n" + "".join(f"    {p},\n" for p in ps) + f"){ret}"

    def _table(self) -> str:
        try: dm = docments(self.sym, full=True, returns=True, eval_str=True)
        except NameError: dm = docments(self.sym, full=True, returns=True)
        except OSError: return ""  # no source to read the docments from
        rows = [(k, v) for k, v in dm.items() if k not in ("self", "cls", "return")]
        ret = dm.get("return", {})
        if not any(v.get("docment") for _, v in rows) and not ret.get("docment"): return ""
        out = ["| Parameter | Type | Default | Details |", "| --- | --- | --- | --- |"]
        for k, v in rows:
            out.append(f"| `{k}` | {_cell(_anno(v['anno']), True)} | {_cell(_default(v['default']), True)} "
                       f"| {_cell(v.get('docment') or '')} |")
        if ret.get("docment") or ret.get("anno", inspect.Parameter.empty) is not inspect.Parameter.empty:
            out.append(f"| **Returns** | {_cell(_anno(ret['anno']), True)} | | {_cell(ret.get('docment') or '')} |")
        return "\n".join(out)

    def _repr_markdown_(self) -> str:
        out = [f"{'#' * self.title_level} `{self.nm}`"]
        if self.sig is not None: out.append(f"```python\n{self._signature()}\n```")
        if self.docs: out.append(self.docs)
        if self.sig is not None and (t := self._table()): out.append(t)
        return "\n\n".join(out)


def key(mod: str, name: str, obj=None) -> str:
    "A Sphinx label for `mod.name`; labels ignore case, so capitals get a suffix (`Deployment`, `deployment`)."
    head, _, tail = name.partition(".")
    if head != head.lower(): head = f"{head.lower()}-{'class' if inspect.isclass(obj) else 'value'}"
    return f"{mod}.{head}" + (f".{tail}" if tail else "")


def _label(mod: str, name: str, obj=None) -> str: return f"({key(mod, name, obj)})="


def _value(mod: str, name: str, obj, level: int) -> str:
    "A constant or other non-callable: its type and a short repr (show_doc would print its class's docstring)."
    r = re.sub(r" at 0x[0-9a-f]+", "", repr(obj))
    r = r if len(r) <= 300 else r[:300] + " ..."
    return f"{_label(mod, name, obj)}\n{'#' * level} `{name}`\n\n`{type(obj).__name__}` value:\n\n```text\n{r}\n```"


def _members(cls) -> list:
    "Public methods and properties a class defines itself (in its body or with `@patch`), in definition order."
    out = []
    for k, v in vars(cls).items():
        if k.startswith("_"): continue
        f = v.__func__ if isinstance(v, (classmethod, staticmethod)) else v
        if inspect.isfunction(f) or isinstance(v, property): out.append((k, v))
    return out


def render(mod: str, name: str, obj) -> str:
    "The markdown of one public name of `mod` (a class with its methods)."
    if not (callable(obj) or isinstance(obj, property)): return _value(mod, name, obj, 2)
    parts = [_label(mod, name, obj), show_doc(obj, renderer=DocRenderer, name=name, title_level=2)._repr_markdown_()]
    home = getattr(obj, "__module__", mod)
    if home != mod: parts.append(f"*Defined in `{home}`.*")
    if inspect.isclass(obj):
        bases = [b for b in obj.__bases__ if b is not object]
        if bases: parts.append("Bases: " + ", ".join(f"`{b.__module__}.{b.__qualname__}`" for b in bases))
        for k, v in _members(obj):
            f = inspect.unwrap(v.fget if isinstance(v, property) else getattr(v, "__func__", v))
            if isinstance(v, property):
                md = f"### `{name}.{k}`\n\n*property*" + (f"\n\n{inspect.getdoc(v)}" if inspect.getdoc(v) else "")
            else: md = show_doc(v, renderer=DocRenderer, name=f"{name}.{k}", title_level=3)._repr_markdown_()
            where = getattr(f, "__module__", home)
            if where != home: md += f"\n\n*Attached by `{where}`.*"
            parts += [_label(mod, f"{name}.{k}", obj), md]
    return "\n\n".join(parts)


def modules() -> list:
    "nbdeploy's public modules, in the order of the notebooks that export them (the reading order of nbs/)."
    pkg = importlib.import_module(PKG)
    names = [m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_")]
    def nb(m):
        head = Path(pkg.__path__[0], f"{m}.py").read_text()[:500]
        hit = re.search(r"File to edit: \S*?([^/\s]+\.ipynb)", head)
        return (hit.group(1) if hit else "~", m)
    return sorted(names, key=nb)


def page(modname: str) -> str:
    "One module's page: its docstring, then every name of its `__all__`."
    mod = importlib.import_module(modname)
    doc = inspect.getdoc(mod) or ""
    names = list(getattr(mod, "__all__", []))
    out = [f"({modname})=", f"# `{modname}`", doc]
    src = re.search(r"File to edit: \S*?([^/\s]+\.ipynb)", Path(mod.__file__).read_text()[:500])
    if src: out.append(f"Written in the notebook [{src.group(1)}](../{src.group(1)}).")
    if not names: out.append("This module has no public names of its own (`__all__` is empty).")
    for n in names:
        try: out.append(render(modname, n, getattr(mod, n)))
        except Exception as e: raise RuntimeError(f"cannot document {modname}.{n}: {e!r}") from e
    return "\n\n".join(o for o in out if o) + "\n"


def package_page(mods: list) -> str:
    "The reference's index: the package's own namespace (`nd.*`) and the list of modules."
    pkg = importlib.import_module(PKG)
    out = ["(api)=", "# API reference", inspect.getdoc(pkg) or "",
           f"Every public name of every module (its `__all__`), generated with nbdev's `show_doc` from the installed "
           f"`{PKG}` when the site is built. Parameter tables come from the docments (the comments beside each "
           "parameter).", f"## `import {PKG}`"]
    rows = ["| Name | Where it is defined |", "| --- | --- |"]
    for n, v in sorted(vars(pkg).items()):
        if n.startswith("_") or inspect.ismodule(v): continue
        home = getattr(v, "__module__", None)
        if home and home.startswith(PKG + ".") and n in getattr(sys.modules[home], "__all__", ()):
            rows.append(f"| {{ref}}`{n} <{key(home, n, v)}>` | `{home}` |")
        else: rows.append(f"| `{n}` | `{home or type(v).__name__}` |")
    out.append("\n".join(rows))
    out += ["## Modules", "```{toctree}\n:maxdepth: 1\n\n" + "\n".join(m.split(".")[-1] for m in mods) + "\n```"]
    return "\n\n".join(o for o in out if o) + "\n"


def write(out: Path) -> list:
    "Write api/index.md and one page per module into `out`; the modules' names."
    out.mkdir(parents=True, exist_ok=True)
    mods = [f"{PKG}.{m}" for m in modules()]
    for m in mods: (out / f"{m.split('.')[-1]}.md").write_text(page(m))
    (out / "index.md").write_text(package_page(mods))
    return mods


if __name__ == "__main__":
    mods = write(Path(sys.argv[1]))
    print(f"API reference: {len(mods)} modules in {sys.argv[1]}")

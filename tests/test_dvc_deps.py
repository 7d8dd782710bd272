"""dvc.yaml's deps are complete: every project module a stage's script can import (its static import
closure, function-local imports included, plus the `_target_` classes in the stage's params) is
covered by a dep of that stage, so editing it reruns the stage."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
# gensr/__init__.py holds only the version string, which no stage reads: a release bump must not
# rerun the pipeline (test_package_init_stays_inert keeps that true).
INERT = SRC / "gensr" / "__init__.py"


def _module_file(module: str) -> Path | None:
    base = SRC.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _package(path: Path) -> str:
    """The package a file under src/ belongs to (its folder): what relative imports start from."""
    return ".".join(path.relative_to(SRC).parts[:-1])


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(test)


def _imports(path: Path) -> set[str]:
    """gensr modules `path` imports anywhere (module level or inside functions); `from a import b`
    names a.b too when b is a submodule."""
    found: set[str] = set()
    stack = [ast.parse(path.read_text(), str(path))]
    while stack:
        node = stack.pop()
        if _is_type_checking(node):  # never executed
            continue
        stack.extend(ast.iter_child_nodes(node))
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against the importing file's package
                pkg = _package(path).split(".")
                pkg = pkg[: len(pkg) - node.level + 1]
                base = ".".join([*pkg, base] if base else pkg)
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names if _module_file(f"{base}.{a.name}")}
    return {m for m in found if m == "gensr" or m.startswith("gensr.")}


def closure(script: Path, roots: set[str] = frozenset()) -> set[Path]:
    """The script and every project file importing it (and `roots`) executes, package __init__s included."""
    files, todo = {script}, [*_imports(script), *roots]
    seen: set[str] = set()
    while todo:
        module = todo.pop()
        parts = module.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__, a/b/__init__ too
            name = ".".join(parts[:i])
            path = _module_file(name)
            if name in seen or path is None:
                continue
            seen.add(name)
            files.add(path)
            todo.extend(_imports(path))
    return files


def _lookup(params: dict, dotted: str):
    node = params
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _targets(node) -> set[str]:
    """The modules of every `_target_` (a class or function path) under a params node."""
    if isinstance(node, dict):
        out = {str(node["_target_"]).rsplit(".", 1)[0]} if "_target_" in node else set()
        return out.union(*(_targets(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_targets(v) for v in node))
    return set()


def _resolve(text: str, params: dict, local: dict) -> str | None:
    """`${...}` from the foreach item (key, item) or params.yaml; None when one is unset (no dep)."""
    values = {m: local.get(m, _lookup(params, m)) for m in re.findall(r"\$\{([^}]+)\}", text)}
    if any(v is None for v in values.values()):
        return None
    return re.sub(r"\$\{([^}]+)\}", lambda m: str(values[m.group(1)]), text)


def stages() -> dict[str, dict]:
    """dvc.yaml's stages, one per foreach item, with ${...} resolved as DVC does."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    out = {}
    for name, stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].items():
        if "foreach" in stage:
            items = _lookup(params, stage["foreach"].strip("${}"))
            expanded = {f"{name}@{k}": (stage["do"], {"key": k, "item": v}) for k, v in items.items()}
        else:
            expanded = {name: (stage, {})}
        for full, (spec, local) in expanded.items():
            deps, keys = (_entries(spec.get(field, []), params, local) for field in ("deps", "params"))
            out[full] = {"cmd": _resolve(spec["cmd"], params, local), "deps": deps,
                         "targets": set().union(*(_targets(_lookup(params, k)) for k in keys))}
    return out


def _entries(entries: list, params: dict, local: dict) -> list[str]:
    """A deps or params list's paths / keys (an entry may be a one-key mapping), resolved; unset ones dropped."""
    resolved = (_resolve(next(iter(e)) if isinstance(e, dict) else e, params, local) for e in entries)
    return [r for r in resolved if r]


STAGES = stages()


def _covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(ROOT)
    return any(rel == Path(d) or Path(d) in rel.parents for d in deps)


def test_closure_follows_function_local_and_submodule_imports():
    files = closure(ROOT / "pipelines" / "train.py")
    assert SRC / "gensr" / "training" / "run.py" in files  # imported inside main()
    assert SRC / "gensr" / "training" / "__init__.py" in files
    assert all(p.is_relative_to(SRC) or p.parent == ROOT / "pipelines" for p in files)


def test_package_init_stays_inert():
    body = ast.parse(INERT.read_text()).body
    assert all(isinstance(n, ast.Expr) or (isinstance(n, ast.Assign) and ast.unparse(n.targets[0]) == "__version__")
               for n in body), f"{INERT} runs code: list it in every stage's deps instead of exempting it"


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_deps_cover_its_import_closure(stage):
    spec = STAGES[stage]
    script = next(w for w in spec["cmd"].split() if w.startswith("pipelines/") and w.endswith(".py"))
    missing = sorted(str(p.relative_to(ROOT)) for p in closure(ROOT / script, spec["targets"])
                     if p != INERT and not _covered(p, spec["deps"]))
    assert not missing, f"dvc.yaml stage {stage} imports files none of its deps covers: {missing}"


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_code_deps_exist(stage):
    """A dep on a moved or deleted module would make `dvc repro` fail on a missing dependency."""
    gone = [d for d in STAGES[stage]["deps"] if d.startswith(("src/", "pipelines/")) and not (ROOT / d).exists()]
    assert not gone, f"dvc.yaml stage {stage} depends on files that do not exist: {gone}"

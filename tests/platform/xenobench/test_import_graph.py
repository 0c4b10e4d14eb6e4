"""Layering of the Django apps: views import selectors and services, never another app's views.

Two import circles (challenges.views <-> leaderboards.views) once made the result depend on
which module happened to be imported first. The static check reads every module's imports;
the dynamic one imports each view module first thing in a fresh interpreter."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

PLATFORM = Path(__file__).resolve().parents[3] / "platform"
REPO = PLATFORM.parent


def app_modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the platform's apps (migrations excluded)."""
    out = {}
    for path in PLATFORM.rglob("*.py"):
        rel = path.relative_to(PLATFORM)
        if "migrations" in rel.parts or rel.parts[0] in {"static", "templates"}:
            continue
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def is_view_module(name: str) -> bool:
    """Modules that serve requests: views.py, *_views.py and the modules views.py routes."""
    last = name.rsplit(".", 1)[-1]
    return last == "views" or last.endswith("_views") or name == "leaderboards.method"


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Platform modules imported by a module (absolute and relative, at any depth)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(p for p in [*parent, base] if p)
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return {m for m in found if m in known}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    mods = app_modules()
    return {name: imports_of(name, path, set(mods)) for name, path in mods.items()}


def test_views_never_import_another_apps_views(graph):
    bad = sorted(
        f"{name} imports {dep}"
        for name, deps in graph.items()
        if is_view_module(name)
        for dep in deps
        if is_view_module(dep) and dep.split(".")[0] != name.split(".")[0]
    )
    assert not bad, bad


def test_selectors_and_services_never_import_views(graph):
    bad = sorted(
        f"{name} imports {dep}"
        for name, deps in graph.items()
        if name.rsplit(".", 1)[-1] in {"selectors", "services", "permissions", "tasks"}
        for dep in deps
        if is_view_module(dep)
    )
    assert not bad, bad


def test_no_import_circle_between_view_modules(graph):
    views = {n for n in graph if is_view_module(n)}

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for dep in graph[todo.pop()] & views:
                if dep not in seen:
                    seen.add(dep)
                    todo.append(dep)
        return seen

    circles = sorted(n for n in views if n in reach(n))
    assert not circles, circles


def test_the_check_sees_an_import_circle(tmp_path):
    """Guards the static check against vacuous passes: it finds views importing views."""
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "views.py").write_text("from b.views import x\nfrom .selectors import y\n")
    deps = imports_of("a.views", tmp_path / "a" / "views.py", {"b.views", "a.selectors", "b"})
    assert deps == {"b.views", "a.selectors"}


@pytest.mark.slow
def test_every_view_module_imports_first_in_a_fresh_interpreter(tmp_path):
    names = sorted(n for n in app_modules() if is_view_module(n))
    assert {"challenges.views", "leaderboards.views", "submissions.views", "api.views"} <= set(
        names
    )
    code = (
        f"import sys, django; sys.path.append({str(PLATFORM)!r}); "
        "import os; os.environ['DJANGO_SETTINGS_MODULE'] = 'xenobench.settings_test'; "
        "django.setup(); import importlib; importlib.import_module(sys.argv[1])"
    )
    procs = {
        n: subprocess.Popen(
            [sys.executable, "-c", code, n],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, "XENOBENCH_TEST_DATA_ROOT": str(tmp_path)},
        )
        for n in names
    }
    failed = {}
    for n, p in procs.items():
        out, _ = p.communicate(timeout=240)
        if p.returncode:
            failed[n] = out.decode(errors="replace")[-1500:]
    assert not failed, failed

"""The layering of the packages, read from their source with `ast` (nothing is imported): the
planner at the bottom, viz on it, the executor on both, and llama_arena, the `arena` command,
on top of all three. Imports inside functions count: a lazy import is still a dependency."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# the packages each one may import, itself included
ALLOWED = {
    "planner": {"planner"},
    "viz": {"planner", "viz"},
    "executor": {"planner", "viz", "executor"},   # viz.trace writes the trace of `arena run --trace`
    "llama_arena": {"planner", "viz", "executor", "llama_arena"},
}


def imports(package: str) -> list[tuple[str, str, str]]:
    """(file:line, imported top-level module, the statement) for every import in the package;
    a relative import names the package it lives in."""
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no modules found in {ROOT / package}"
    found = []
    for path in files:
        where = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [package if node.level else node.module]
            else:
                continue
            found += [(f"{where}:{node.lineno}", name.split(".")[0], ast.unparse(node)) for name in names]
    return found


def offending(package: str, forbidden) -> list[str]:
    return [f"{where}: {statement}" for where, top, statement in imports(package) if forbidden(top)]


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_the_packages_below_it(package):
    others = set(ALLOWED) - ALLOWED[package]
    bad = offending(package, lambda top: top in others)
    assert not bad, f"{package} may import only {sorted(ALLOWED[package])}, but:\n" + "\n".join(bad)


def test_planner_never_imports_torch():
    bad = offending("planner", lambda top: top == "torch")
    assert not bad, "the planner must run without torch, but:\n" + "\n".join(bad)


def test_a_wheel_holds_the_schedules_and_the_compiled_parts(tmp_path):
    """A plain `pip install .` (not -e) runs from site-packages: the schedules that plan and
    run read must be installed beside the packages, where planner/schedule.py finds them.
    Built from a copy of the sources without what .gitignore names: pip builds in the folder
    it is given, and setuptools' build/ keeps files of older builds, which would pass here."""
    import shutil
    import subprocess
    import sys
    import zipfile
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "__pycache__", "*.egg-info", ".pytest_cache", ".hypothesis", "build", ".whl", "*.so",
        "gpu-check"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(source)],
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    names = zipfile.ZipFile(next(tmp_path.glob("*.whl"))).namelist()
    assert {f"planner/schedules/{p.name}" for p in (ROOT / "schedules").glob("*.yaml")} <= set(names)
    assert not any(n.startswith("schedules/") for n in names)      # no top-level folder of that name
    for extension in ("executor/_kernels", "planner/place/_canonical", "planner/place/_skyline"):
        assert any(n.startswith(extension) and n.endswith(".so") for n in names), extension


def test_the_sdist_holds_every_tracked_file_its_tests_and_readme_need(tmp_path):
    """The tests import their helpers and benchmarks/families.py, the README links docs/, and
    .ci/run is the test command: an sdist without them had tests that could not be collected."""
    import subprocess
    import sys
    import tarfile
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if tracked.returncode != 0:
        pytest.skip("not a git checkout")
    built = subprocess.run([sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(tmp_path),
                            "sdist", "-d", str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    with tarfile.open(next(tmp_path.glob("*.tar.gz"))) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    wanted = {name for name in tracked.stdout.splitlines() if name.startswith(("tests/", "benchmarks/", "docs/", ".ci/"))}
    assert wanted and wanted <= names, sorted(wanted - names)
    assert not any(name.endswith((".so", ".pyc")) for name in names)


def test_a_compiled_part_missing_or_built_from_another_source_says_to_build_it(tmp_path):
    """A checkout changed after its build kept the old build: a TypeError deep in a run."""
    from planner.compiled import NotBuilt, load
    source = tmp_path / "skyline.c"
    source.write_text("/* another skyline.c */\n")
    with pytest.raises(NotBuilt, match=r"^planner.place._skyline was built from another skyline.c "
                                         r"than the one there now; rebuild it: pip install -e \."):
        load("planner.place._skyline", source)
    with pytest.raises(NotBuilt, match=r"^planner.place._nothing is not built \(.*\); build it"):
        load("planner.place._nothing", source)
    assert load("planner.place._skyline", tmp_path / "absent.c").skyline_pass      # no source to compare
    assert load("planner.place._skyline", ROOT / "planner/place/skyline.c").skyline_pass

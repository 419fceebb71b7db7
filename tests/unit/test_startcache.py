"""The start cache (servicehost/_startcache.py): each test starts real Python processes that import
real modules from real files, the way a Windows service's boot does, and changes those files
between starts as an admin or a deploy would.

What must hold: a module comes from the cache only while the import system would find and load the
very same source; anything else is imported as without the cache; a damaged or foreign file, or
one that cannot be written, costs the start its speed and nothing else.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HANG_GUARD = 60

# One start: sys.path = [the test's folders..., what Python has]; the cache; the imports; a report.
START = textwrap.dedent("""
    import json, sys, traceback
    folders, cache_path, names = json.loads(sys.argv[1])
    sys.path[:0] = [sys.argv[2]]
    import servicehost._startcache as startcache
    sys.path[1:1] = folders
    cache = startcache.use(cache_path)
    import importlib
    values = {}
    for name in names:
        module = importlib.import_module(name)
        values[name] = [getattr(module, "VALUE", None), module.__file__,
                        isinstance(module.__loader__, importlib.machinery.SourceFileLoader)]
    try:
        importlib.import_module(names[-1]).fail()
    except RuntimeError:
        shown = traceback.format_exc()
    served = sorted(n for n in cache.served if n in names)
    print(json.dumps({"served": served, "values": values, "saved": cache.save(), "shown": shown}))
""")


class Tree:
    """A folder of modules on the search path, and the starts run on it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.early = root / "early"  # searched first: empty until a test puts a module there
        self.lib = root / "lib"
        self.cache = root / "cache" / "modules.bin"
        for folder in (self.early, self.lib, self.cache.parent):
            folder.mkdir(parents=True, exist_ok=True)
        self.write("pkg/__init__.py", "VALUE = 'pkg 1'\n")
        self.write("pkg/sub.py", "VALUE = 'sub 1'\n")
        self.write("pkg/data.txt", "resource")
        self.write("top.py", "import pkg.sub\nVALUE = 'top 1'\n\ndef fail():\n    raise RuntimeError('the line shown')\n")

    def preamble(self) -> str:
        """The first lines of a start written out by a test: the search path tree.start() has,
        and the cache in use (``cache``)."""
        return textwrap.dedent(f"""
            import sys
            sys.path[:0] = [{str(ROOT / 'src')!r}]
            import servicehost._startcache as startcache
            sys.path[1:1] = [{str(self.early)!r}, {str(self.lib)!r}]
            cache = startcache.use({str(self.cache)!r})
        """)

    def run(self, code: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                              timeout=HANG_GUARD, cwd=self.root)

    def write(self, relative: str, text: str, folder: Path | None = None) -> Path:
        path = (folder or self.lib) / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def start(self, names: tuple[str, ...] = ("pkg", "pkg.sub", "top"), folders: list[Path] | None = None,
              cache: Path | None = None) -> dict:
        folders = [self.early, self.lib] if folders is None else folders
        spec = json.dumps([[str(f) for f in folders], str(cache or self.cache), list(names)])
        proc = subprocess.run([sys.executable, "-S", "-c", START, spec, str(ROOT / "src")], capture_output=True,
                              text=True, timeout=HANG_GUARD, cwd=self.root)
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr
        return json.loads(proc.stdout)


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    return Tree(tmp_path)


def values(report: dict) -> dict[str, str]:
    return {name: v[0] for name, v in report["values"].items()}


def test_the_next_start_runs_every_source_module_from_the_cache_as_the_same_ordinary_module(tree):
    first = tree.start()
    assert first["served"] == [] and first["saved"] is True
    second = tree.start()
    assert second["served"] == ["pkg", "pkg.sub", "top"]
    assert second["saved"] is False  # it held exactly what this start imported: nothing to write
    assert second["values"] == first["values"]  # same values, same __file__, a SourceFileLoader
    assert all(is_source for _, _, is_source in second["values"].values())
    assert "raise RuntimeError('the line shown')" in second["shown"]  # tracebacks show the source
    assert [p.name for p in tree.cache.parent.iterdir()] == ["modules.bin"]  # no temporary file left


def test_the_package_data_of_a_module_run_from_the_cache_is_read_as_always(tree):
    tree.start()
    code = tree.preamble() + textwrap.dedent("""
        import importlib.resources, pkg
        assert "pkg" in cache.served
        print(importlib.resources.files(pkg).joinpath("data.txt").read_text())
    """)
    out = tree.run(code)
    assert out.stdout.strip() == "resource", out.stderr


@pytest.mark.parametrize("same_size", [True, False])
def test_a_changed_source_is_imported_as_it_is_now_and_cached_again(tree, same_size):
    tree.start()
    path = tree.lib / "pkg" / "sub.py"
    before = path.stat()
    path.write_text("VALUE = 'sub 2'\n" if same_size else "VALUE = 'sub 2, longer'\n")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))  # a coarse clock may not move
    changed = tree.start()
    assert values(changed)["pkg.sub"] == ("sub 2" if same_size else "sub 2, longer")
    assert "pkg.sub" not in changed["served"] and changed["saved"] is True
    again = tree.start()
    assert again["served"] == ["pkg", "pkg.sub", "top"] and values(again) == values(changed)


def test_a_module_the_import_system_would_find_first_wins_as_without_the_cache(tree):
    tree.start()
    tree.write("top.py", "import pkg.sub\nVALUE = 'top, earlier'\n\ndef fail():\n    raise RuntimeError()\n",
               folder=tree.early)
    report = tree.start()
    assert values(report)["top"] == "top, earlier" and "top" not in report["served"]
    assert report["values"]["top"][1] == str(tree.early / "top.py")


def test_a_package_put_beside_a_cached_module_of_its_name_wins_as_without_the_cache(tree):
    tree.start()
    tree.write("pkg/sub/__init__.py", "VALUE = 'sub, a package now'\n")
    report = tree.start()
    assert values(report)["pkg.sub"] == "sub, a package now" and "pkg.sub" not in report["served"]


def test_a_module_moved_away_is_imported_from_where_it_is_now(tree):
    tree.start()
    (tree.lib / "top.py").rename(tree.early / "top.py")
    report = tree.start()
    assert report["values"]["top"][1] == str(tree.early / "top.py") and "top" not in report["served"]


def test_another_search_path_serves_no_top_level_module(tree):
    tree.start()
    other = tree.root / "other"
    other.mkdir()
    report = tree.start(folders=[other, tree.early, tree.lib])
    assert "top" not in report["served"] and "pkg" not in report["served"]
    assert values(report) == {"pkg": "pkg 1", "pkg.sub": "sub 1", "top": "top 1"}


def test_a_damaged_or_foreign_cache_file_is_a_start_without_it_and_is_written_again(tree):
    tree.start()
    whole = tree.cache.read_bytes()
    rng = random.Random(7)
    damaged = [whole[:n] for n in sorted(rng.sample(range(len(whole)), 12))]
    damaged += [bytes(rng.randrange(256) for _ in range(200)), whole.replace(b"start cache", b"other cache"),
                b"", bytes(len(whole))]
    for data in damaged:
        tree.cache.write_bytes(data)
        report = tree.start()
        assert report["served"] == [] and values(report)["top"] == "top 1"
        assert report["saved"] is True
        assert tree.start()["served"] == ["pkg", "pkg.sub", "top"]


def test_a_cache_made_by_another_interpreter_is_not_served(tree):
    tree.start()
    import marshal

    from servicehost import _startcache

    data = tree.cache.read_bytes()
    header, entries = marshal.loads(data[len(_startcache.MAGIC):])
    other = (header[0], header[1] + 1, *header[2:])  # another Python version
    tree.cache.write_bytes(_startcache.MAGIC + marshal.dumps((other, entries)))
    report = tree.start()
    assert report["served"] == [] and report["saved"] is True


def test_a_cache_that_cannot_be_written_costs_the_start_nothing_but_speed(tree):
    nowhere = tree.root / "missing" / "modules.bin"
    for _ in range(2):
        report = tree.start(cache=nowhere)
        assert report["served"] == [] and report["saved"] is False
        assert values(report)["top"] == "top 1"
    assert not nowhere.parent.exists()


def test_modules_imported_after_an_import_hook_came_are_left_to_the_import_system(tree):
    """A hook that a library puts on sys.meta_path during the start (to rewrite or watch what is
    imported next) sees every later import, as without the cache."""
    tree.start()
    hook = tree.preamble() + textwrap.dedent("""
        import json
        import pkg
        seen = []

        class Watch:
            @staticmethod
            def find_spec(name, path=None, target=None):
                seen.append(name)
                return None

        sys.meta_path.insert(1, Watch)
        import top
        print(json.dumps([sorted(cache.served), "top" in seen, "pkg.sub" in seen]))
    """)
    out = tree.run(hook)
    assert json.loads(out.stdout) == [["pkg"], True, True], out.stderr


def test_a_file_named_like_a_cached_module_but_for_case_is_seen(tree):
    """Windows compares names without case, Linux with: a name that differs only in case is a
    change in the folder either way, and the cached module is not taken on trust."""
    tree.start()
    (tree.lib / "Top.py").write_text("VALUE = 'other'\n")
    report = tree.start()
    assert "top" not in report["served"] and values(report)["top"] == "top 1"  # Linux imports top.py


def test_the_process_keeps_no_code_object_once_the_cache_is_saved(tree):
    tree.start()
    code = tree.preamble() + textwrap.dedent("""
        import top
        assert cache.entries and "top" in cache.served
        cache.save()
        assert cache.entries == {} and cache.served == {} and cache.searched == {}
        assert cache.finder not in sys.meta_path
        print("ok")
    """)
    out = tree.run(code)
    assert out.stdout.strip() == "ok", out.stderr

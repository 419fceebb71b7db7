"""The start cache: the compiled code of every source module a service's start imported, kept in
one file, so that the next start reads one file instead of finding and reading each module.

Why: an import from a folder costs a stat of the folder, a stat of the source and an open and read
of its ``.pyc``. Where file access is slow this dominates a start: under Wine a stat costs 0.8 ms
and an open and read 1.4 ms, so one import of an empty module costs 4 ms, and a service's start,
which imports some 26 modules of its own and of its target, pays about 100 ms for finding and
reading them (on Windows, an antivirus scan of every file opened has the same effect).

How: :func:`use` (the first step of a Windows service process, ``platforms/windows/boot.py``) reads
the file and puts a finder first on ``sys.meta_path``. The finder answers only for a module the
file holds, and only when everything the import system would look at is as it was when the code
was taken:

* the same interpreter (version, cache tag, optimization level, executable) and the same finders
  on ``sys.meta_path``, from the start's first import to its last (a module imported after an
  import hook came is left to the import system, and not learned);
* the same search: ``sys.path`` (a top-level module) or the package's ``__path__`` (a submodule)
  exactly as when the module was first imported;
* in every folder of that search up to the module's own, the same names that could be the module
  (``name.py``, ``name/``, ``name.pyd``, ...): nothing found first has appeared or gone;
* the source file's size and modification time as they were (read from one listing per folder:
  on Windows the listing carries them, no stat per file).

Anything else is left to the import system, as without the cache. The module is then an ordinary
source module (its loader is a ``SourceFileLoader``; ``__file__``, tracebacks and
``importlib.resources`` work as always). After the start (:func:`save`, once the service is
ready), the finder leaves ``sys.meta_path`` and, when a source module was imported without it,
the file is written again (atomically: a reader sees the old file or the new one), holding exactly
the source modules this start imported.

Trust: the file is code. The Windows service keeps it in a folder that only SYSTEM,
Administrators and the service's own account may write (``install`` makes it), so it lets no one
run anything they could not already run as the service. A file that cannot be read, or is not
one of ours, is ignored.

This module imports nothing at its top but ``sys``, ``os``, ``marshal`` and ``importlib.machinery``
(which every start imports anyway): it runs before the rest of servicehost is imported.
"""

from __future__ import annotations

import marshal
import os
import sys
from importlib.machinery import (
    BYTECODE_SUFFIXES, EXTENSION_SUFFIXES, SOURCE_SUFFIXES, ModuleSpec, PathFinder, SourceFileLoader,
)
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

#: Bumped whenever what the file holds changes shape.
FORMAT = 1
MAGIC = b"servicehost start cache\n"
#: What a folder may hold that the import system could take for a module ``m``: ``m/`` and these.
SUFFIXES = tuple(s.lower() for s in (*EXTENSION_SUFFIXES, *SOURCE_SUFFIXES, *BYTECODE_SUFFIXES))

# One entry per module: (origin, search, folders, source key, code).
#   search:  how the import system was asked for it: ("path", the package's __path__) for a
#            submodule, ("sys.path", sys.path as it was) for a top-level module;
#   folders: ((folder, what in it could be the module), ...) up to the module's own folder;
#   key:     the source's (mtime_ns, size).
Search = tuple[str, tuple[str, ...]]
Entry = tuple[str, Search, tuple[tuple[str, Any], ...], tuple[int, int], Any]

_current: StartCache | None = None


def _header() -> tuple[Any, ...]:
    """The interpreter and the finders the file was made for (it serves no other)."""
    finders = tuple(f"{getattr(f, '__module__', '?')}.{getattr(f, '__qualname__', type(f).__qualname__)}"
                    for f in sys.meta_path if not isinstance(f, _Finder))
    return (FORMAT, sys.hexversion, sys.implementation.cache_tag, sys.flags.optimize,
            os.path.normcase(sys.executable), finders)


def _search(path: Sequence[str] | None) -> Search:
    return ("path", tuple(path)) if path is not None else ("sys.path", tuple(sys.path))


class _Listing:
    """Folders' names (lower-cased, as Windows compares them) → their DirEntries, each folder read
    once. Where the file system tells case apart, two names that differ only in case are both kept."""

    def __init__(self) -> None:
        self._folders: dict[str, dict[str, list[os.DirEntry[str]]] | None] = {}

    def names(self, folder: str) -> dict[str, list[os.DirEntry[str]]] | None:
        folder = folder or os.getcwd()  # "" on sys.path: the working directory
        key = os.path.normcase(folder)
        if key not in self._folders:
            names: dict[str, list[os.DirEntry[str]]] | None = {}
            try:
                with os.scandir(folder) as it:
                    for e in it:
                        names.setdefault(e.name.lower(), []).append(e)  # type: ignore[union-attr]
            except OSError:
                names = None  # missing, not a folder (a zip), unreadable
            self._folders[key] = names
        return self._folders[key]

    def candidates(self, folder: str, last: str) -> Any:
        """What in ``folder`` the import system could take for a module named ``last``: the names
        (sorted); for a file on the search path (a zip), its (mtime, size); None if neither."""
        names = self.names(folder)
        if names is None:
            try:
                st = os.stat(folder)
            except OSError:
                return None
            return (st.st_mtime_ns, st.st_size)
        low = last.lower()
        return tuple(sorted(e.name for n, entries in names.items() for e in entries
                            if n == low or (n.startswith(low) and n[len(low):] in SUFFIXES)))

    def source_key(self, origin: str) -> tuple[int, int] | None:
        names = self.names(os.path.dirname(origin))
        base = os.path.basename(origin)
        entries = names.get(base.lower(), []) if names else []
        exact = [e for e in entries if e.name == base]
        entry = exact[0] if exact else entries[0] if len(entries) == 1 else None
        if entry is None:
            return None
        try:
            st = entry.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)


def _folders_searched(search: Sequence[str], origin: str, is_package: bool) -> list[str] | None:
    """The folders of ``search`` up to the one that holds the module (None: it is not there)."""
    home = os.path.dirname(os.path.dirname(origin) if is_package else origin)
    home = os.path.normcase(os.path.abspath(home))
    folders = []
    for folder in search:
        folders.append(folder)
        if os.path.normcase(os.path.abspath(folder or os.getcwd())) == home:
            return folders
    return None


class _CachedSourceLoader(SourceFileLoader):
    """A ``SourceFileLoader`` that executes the code the cache holds (once; then as always)."""

    def __init__(self, fullname: str, path: str, code: Any) -> None:
        super().__init__(fullname, path)
        self._code = code

    def get_code(self, fullname: str) -> Any:
        code, self._code = self._code, None
        if code is None or fullname != self.name:
            return super().get_code(fullname)
        return code


class _Finder:
    """First on ``sys.meta_path`` during a start: serves what the file holds and is still true;
    notes how everything else was searched (for :meth:`StartCache.save`)."""

    def __init__(self, cache: StartCache) -> None:
        self.cache = cache

    def find_spec(self, name: str, path: Sequence[str] | None = None, target: Any = None) -> ModuleSpec | None:
        cache = self.cache
        if sys.meta_path != cache.meta_path:  # an import hook came (or went) since: not ours to judge
            return None
        search = _search(path)
        entry = cache.entries.get(name)
        if entry is not None and cache.still_true(name, entry, search):
            cache.served[name] = entry
            return cache.spec(name, entry)
        cache.searched[name] = search
        return None


class StartCache:
    """The file at ``path`` and this start's use of it (see the module docstring)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.entries: dict[str, Entry] = {}
        self.served: dict[str, Entry] = {}
        self.searched: dict[str, Search] = {}  # name → how it was searched, when not served
        self.listing = _Listing()
        self.finder = _Finder(self)
        self.meta_path: list[Any] = []  # sys.meta_path as the start began (this finder first)
        self.before = frozenset(sys.modules)
        self._saver: Any = None

    def load(self) -> bool:
        """Read the file; False (and nothing held) if it is missing, damaged or not made for this
        interpreter and these finders."""
        try:
            with open(self.path, "rb") as file:
                data = file.read()
            if not data.startswith(MAGIC):
                return False
            header, entries = marshal.loads(data[len(MAGIC):])
            if header != _header() or not isinstance(entries, dict):
                return False
        except Exception:  # missing, unreadable, damaged: the start imports as always
            return False
        self.entries = entries
        return True

    def still_true(self, name: str, entry: Entry, search: Search) -> bool:
        try:
            origin, want, folders, key, _code = entry
            if search != want:
                return False
            last = name.rpartition(".")[2]
            for folder, names in folders:
                if self.listing.candidates(folder, last) != names:
                    return False
            return self.listing.source_key(origin) == key
        except Exception:  # an entry of another shape: not ours to serve
            return False

    def spec(self, name: str, entry: Entry) -> ModuleSpec:
        origin, _search, _folders, _key, code = entry
        is_package = os.path.basename(origin).lower().startswith("__init__.")
        spec = ModuleSpec(name, _CachedSourceLoader(name, origin, code), origin=origin, is_package=is_package)
        spec.has_location = True
        if is_package:
            spec.submodule_search_locations = [os.path.dirname(origin)]
        return spec

    # -- after the start --------------------------------------------------------------------------
    def stop_serving(self) -> None:
        try:
            sys.meta_path.remove(self.finder)
        except ValueError:
            pass

    def learned(self) -> dict[str, Entry] | None:
        """What the file should hold after this start; None when it holds exactly that."""
        entries: dict[str, Entry] = dict(self.served)
        for name, search in list(self.searched.items()):
            entry = self._entry(name, search)
            if entry is not None:
                entries[name] = entry
        if entries.keys() == self.entries.keys() and all(entries[n] is self.entries[n] for n in entries):
            return None
        return entries

    def _entry(self, name: str, search: Search) -> Entry | None:
        """The entry of a source module this start imported without the cache (None: not one)."""
        module = sys.modules.get(name)
        spec = getattr(module, "__spec__", None)
        if name in self.before or spec is None or spec.name != name:
            return None
        loader, origin = spec.loader, spec.origin
        if not isinstance(loader, SourceFileLoader) or not origin or origin != loader.path:
            return None
        if not origin.lower().endswith(".py"):
            return None
        kind, where = search
        try:  # only what the path machinery itself finds there (not another meta-path finder)
            again = PathFinder.find_spec(name, list(where) if kind == "path" else None)
        except Exception:
            return None
        if again is None or again.origin != origin:
            return None
        folders = _folders_searched(where, origin, spec.submodule_search_locations is not None)
        if folders is None:
            return None
        listing = _Listing()  # fresh: the source may have changed since it was imported
        key = listing.source_key(origin)
        try:
            code = loader.get_code(name)
        except Exception:
            return None
        if key is None or code is None or _Listing().source_key(origin) != key:
            return None  # changed while it was read: the next start takes it as it is then
        last = name.rpartition(".")[2]
        return (origin, search, tuple((f, listing.candidates(f, last)) for f in folders), key, code)

    def save(self) -> bool:
        """After the start: stop serving, and write the file again if this start imported a source
        module it did not hold (or held one it no longer needs). True if written. Never raises:
        a start cache that cannot be written costs only the next start its speed."""
        self.stop_serving()
        try:
            entries = self.learned()
            if entries is None:
                return False
            data = MAGIC + marshal.dumps((_header(), entries))
            tmp = f"{self.path}.{os.getpid()}.tmp"
            try:
                with open(tmp, "wb") as file:
                    file.write(data)
                os.replace(tmp, self.path)
            finally:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
        except Exception:
            return False
        finally:  # the code objects are no longer needed: the process does not keep them
            self.entries, self.served, self.searched = {}, {}, {}
        return True


    def save_soon(self) -> None:
        """:meth:`save` on a thread of its own (the service is ready: nothing waits for it)."""
        import threading

        if self._saver is None:
            self._saver = threading.Thread(target=self.save, name="servicehost-start-cache", daemon=True)
            self._saver.start()

    def wait_saved(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for a :meth:`save_soon` begun (before the process exits)."""
        if self._saver is not None:
            self._saver.join(timeout)


def use(path: str) -> StartCache:
    """The start cache at ``path``: read it and serve from it for this start, until
    :meth:`StartCache.save`. Never raises; a missing or unusable file is a start without it."""
    global _current
    cache = StartCache(path)
    cache.load()
    sys.meta_path.insert(0, cache.finder)
    cache.meta_path = list(sys.meta_path)
    _current = cache
    return cache


def current() -> StartCache | None:
    """The start cache this process started with (None: it did not use one)."""
    return _current


__all__ = ["FORMAT", "StartCache", "current", "use"]

"""What a user names as their code, found and imported: a TARGET (``path/to/file.py[:Class]`` or
``package.module:Class``, the command line's) and a pywin32 class string (``package.module.Class`` or
``/dir/module.Class``, ``servicehost.compat``'s). Every way it can fail is a
:class:`~servicehost.errors.UsageError` (exit 2) that says what and where, never a traceback."""

from __future__ import annotations

import importlib
import inspect
import os
import stat
import sys
import traceback
from pathlib import Path
from types import ModuleType

from .arguments import _SHOWN
from .config import file_kind
from .errors import UsageError, error_message


def import_named(module_name: str, what: str, hint: str = "servicehost debug TARGET shows the traceback") -> ModuleType:
    """Import ``module_name`` for ``what`` (how the error names the user's input; ``hint``: how to see
    the traceback). A module that is not there is a UsageError naming the missing one; an exception
    its code raises (a SyntaxError as any other) is a UsageError ``file:line: Kind: message`` with
    the traceback in ``detail``."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name + ".").startswith(exc.name + "."):
            raise UsageError(f"{what}: no module named {exc.name!r} (is it installed, or on PYTHONPATH?)") from None
        raise _import_error(what, exc, hint) from None
    except Exception as exc:  # SyntaxError, ImportError, OSError, anything its module-level code raises
        raise _import_error(what, exc, hint) from None


def service_classes(module: ModuleType) -> list[type]:
    """The Service subclasses a module defines (not ones it imports)."""
    from .service import Service

    try:
        members = inspect.getmembers(module, inspect.isclass)
    except Exception as exc:  # a module __getattr__ that raises
        raise UsageError(f"module {module.__name__}: listing its classes raised {exc.__class__.__name__}: "
                         f"{error_message(exc)[:_SHOWN]}") from None
    return [
        obj for _, obj in members
        if issubclass(obj, Service) and obj is not Service and obj.__module__ == module.__name__
    ]


def _import_error(what: str, exc: BaseException, hint: str) -> UsageError:
    """``file:line: Kind: message`` for an exception raised while importing ``what``: code that
    cannot be imported is bad input (exit 2, no restart), whatever went wrong inside it."""
    if isinstance(exc, SyntaxError):
        where = f"{exc.filename}:{exc.lineno}"
        message = exc.msg
    else:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<frozen")]
        where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else what
        message = error_message(exc)
    if len(message) > _SHOWN:
        message = message[:_SHOWN] + "..."
    error = UsageError(f"{where}: {exc.__class__.__name__}: {message} (importing {what}; {hint})")
    error.detail = "".join(traceback.format_exception(exc))
    return error


def _target_file(target: str, where: str) -> Path:
    """The target's file: a readable regular file, named as a module can be (UsageError otherwise)."""
    path = Path(where)
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise UsageError(f"target {target!r}: no such file {where!r}") from None
    except OSError as exc:
        raise UsageError(f"target {target!r}: {exc.strerror or exc}") from None
    except ValueError:
        raise UsageError(f"target {target!r}: a file name cannot hold a NUL byte") from None
    if not stat.S_ISREG(mode):
        raise UsageError(f"target {target!r}: expected a Python file, found {file_kind(mode)}")
    try:
        os.close(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)))
    except OSError as exc:
        raise UsageError(f"target {target!r}: cannot read it: {exc.strerror or exc} (run as a user who may, "
                         "or change its permissions)") from None
    if path.suffix != ".py" or not path.stem or "." in path.stem:
        raise UsageError(f"target {target!r}: expected a Python file named like a module (name.py)")
    return path


def load_target(target: str) -> type:
    """Import ``file.py[:Class]`` or ``module:Class`` and return the service class.

    Every way this can fail is a UsageError (exit 2): a missing, unreadable or non-regular file,
    a module that does not import (``file:line: message``, for a SyntaxError as for any exception
    its code raises), no or several Service classes.
    """
    from .service import Service

    if "://" in target:  # sqlite:///..., postgresql://...: a URL where a TARGET was expected
        from .config import redact_urls

        raise UsageError(f"target {redact_urls(target)!r} is a URL, not a TARGET: expected path/to/file.py[:Class] "
                         "or package.module:Class (`servicehost jobs` takes a store URL in place of NAME)")
    drive = target[:2] if target[1:2] == ":" and target[2:3] in ("\\", "/") else ""  # C:\app\svc.py:Class
    where, _, cls_name = target[len(drive):].partition(":")
    where = drive + where
    if where.endswith(".py") or os.sep in where or "/" in where:
        path = _target_file(target, where)
        # Import it under its own name from its folder, so spawned worker processes can too.
        real = os.path.realpath(path)
        folder = os.path.dirname(real)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        module_name = path.stem
        existing = sys.modules.get(module_name)
        if existing is not None and os.path.realpath(getattr(existing, "__file__", "") or "") != real:
            raise UsageError(f"target {target!r}: its name {module_name!r} clashes with module {existing.__name__}; rename the file")
    else:
        module_name = where
        if not all(part.isidentifier() for part in module_name.split(".")):
            raise UsageError(f"target {target!r}: expected path/to/file.py[:Class] or package.module:Class")
    module = import_named(module_name, f"target {target!r}")
    if cls_name:
        try:
            cls = getattr(module, cls_name, None)
        except Exception:  # a module __getattr__ that raises something else than AttributeError
            cls = None
        if not (isinstance(cls, type) and issubclass(cls, Service)):
            found = ", ".join(c.__name__ for c in service_classes(module)) or "none"
            raise UsageError(f"target {target!r}: {cls_name!r} is not a Service subclass in {module_name} (services there: {found})")
        return cls
    found_classes = service_classes(module)
    if not found_classes:
        raise UsageError(f"target {target!r}: {module_name} defines no Service subclass")
    if len(found_classes) > 1:
        names = ", ".join(c.__name__ for c in found_classes)
        raise UsageError(f"target {target!r} defines several services ({names}); choose one: {where}:CLASS")
    return found_classes[0]


def class_target(service_cls: type) -> str:
    """The TARGET that loads ``service_cls`` again in another process (what install records for
    ``python my_service.py install``): ``module:Class``, or ``/abs/path/my_service.py:Class`` for a
    class of the script being run (its module is ``__main__``, which names another program there)."""
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    if service_cls.__module__ == "__main__" and main_file and main_file.endswith(".py"):
        return f"{os.path.abspath(main_file)}:{service_cls.__qualname__}"
    return f"{service_cls.__module__}:{service_cls.__qualname__}"

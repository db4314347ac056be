"""The optional compiled simulator core (issue 13): whether it is in use, and mypyc's class markers.

setup.py's COMPILED_MODULES may be compiled with mypyc (`EQUINOX_COMPILE=1 pip install .` or
`scripts/build_compiled DIR`); the same .py files are the pure-Python fallback and give identical
results. This module itself is never compiled.
"""

from __future__ import annotations

import copyreg
import dataclasses
import importlib.machinery
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_extensions import mypyc_attr
else:
    try:
        from mypy_extensions import mypyc_attr
    except ImportError:  # a pure-Python install without mypy: the marker does nothing, as it does when interpreted

        def mypyc_attr(*attrs: str, **kwattrs: Any) -> Any:
            """mypy_extensions.mypyc_attr's no-op stand-in."""
            return lambda cls: cls


__all__ = ["is_compiled", "is_extension", "mypyc_attr", "picklable_when_compiled"]


def is_compiled() -> bool:
    """Whether the simulation loop runs as a compiled extension module (False: pure Python)."""
    import equinox.sim.loop

    return is_extension(str(equinox.sim.loop.__file__))


def is_extension(module_file: str) -> bool:
    """Whether a module's `__file__` is a compiled extension module (a module passes its own `__file__`
    to pick code that is faster compiled but slower interpreted)."""
    return module_file.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def picklable_when_compiled(*classes: type) -> None:
    """Let pickle and copy rebuild these frozen dataclasses through their constructor when mypyc compiled them.

    mypyc's default pickling assigns the fields one by one, which a frozen dataclass refuses
    (FrozenInstanceError), so process pools and copy.deepcopy would fail on the compiled core.
    Interpreted classes keep Python's own pickling: nothing is registered for them.
    """
    for cls in classes:
        if hasattr(cls, "__mypyc_attrs__"):
            copyreg.pickle(cls, _rebuild_args)


def _rebuild_args(obj: Any) -> tuple[Any, tuple[Any, ...]]:
    return type(obj), tuple(getattr(obj, f.name) for f in dataclasses.fields(obj))

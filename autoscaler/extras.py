"""Optional dependencies: which pip extra brings what a command needs beyond `autoscaler run`.

`pip install autoscaler` installs the in-cluster server alone (metrics pipeline and HPA
controller). The other commands need extras (pyproject.toml keeps the same lists):

* ``cli``: ``recommend`` (rich tables); ``explain`` needs nothing more than the server;
* ``sim``: the emulator, replay and recording (``sim up``, ``sim agree``, ``sim replay``,
  ``record``): rich tables and progress bars;
* ``report``: PNG plots in replay reports (matplotlib; brings ``sim``);
* ``distributed``: replay sweeps on a Dask cluster (``sim replay --executor dask://HOST:PORT``);
* ``all``: everything.

A command checks its extra first (:func:`require`), so a missing package is one line naming
the extra to install, not a traceback; :func:`hint` words the same for a ModuleNotFoundError
caught later.
"""

from __future__ import annotations

import importlib.util

#: import names each extra provides (pyproject.toml's lists, by the name code imports)
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "cli": ("rich",),
    "sim": ("rich",),
    "report": ("matplotlib",),
    "distributed": ("distributed",),
}
#: the extra each command other than `run` needs (`sim replay --report` needs ``report`` too)
COMMAND_EXTRAS: dict[str, str] = {"recommend": "cli", "record": "sim", "sim up": "sim",
                                  "sim replay": "sim", "sim agree": "sim"}


class MissingExtra(SystemExit):
    """Ends the command with the message (exit status 1) when an extra is not installed."""


def _message(command: str, extra: str, missing: list[str]) -> str:
    return (f"error: autoscaler {command} needs the '{extra}' extra (missing: {', '.join(missing)}): "
            f"pip install 'autoscaler[{extra}]'")


def missing_modules(extra: str) -> list[str]:
    """The import names of ``extra`` that cannot be found (importing none of them)."""
    return [m for m in EXTRA_MODULES[extra] if importlib.util.find_spec(m) is None]


def require(command: str, extra: str) -> None:
    """Raise :class:`MissingExtra` naming ``extra`` if any of its packages is not installed."""
    missing = missing_modules(extra)
    if missing:
        raise MissingExtra(_message(command, extra, missing))


def hint(exc: ModuleNotFoundError, command: str) -> str | None:
    """The line to print for ``exc`` raised while running ``command``, or None when the missing
    module is not one an extra provides (a real bug, whose traceback should show)."""
    top = (exc.name or "").split(".")[0]
    own = COMMAND_EXTRAS.get(command)
    candidates = [own] if own else []
    candidates += [e for e in EXTRA_MODULES if e != own]
    for extra in candidates:
        if top in EXTRA_MODULES[extra]:
            return _message(command, extra, [top])
    return None

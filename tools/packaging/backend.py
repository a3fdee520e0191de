"""PEP 517 build backend: setuptools, plus mypy and numpy in the build environment when
``AUTOSCALER_MYPYC=1`` asks for the compiled decision core (``setup.py`` then runs mypyc, which
type-checks the modules against numpy's stubs before compiling them). Every other hook is
setuptools' own."""

from __future__ import annotations

import os

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403 (the hooks this module leaves as they are)

# mypyc's output depends on its version: pinned, so a compiled wheel is rebuilt the same way.
COMPILER = ["mypy==2.4.1", "numpy>=1.26"]


def _compiling() -> bool:
    return os.environ.get("AUTOSCALER_MYPYC") == "1"


# setuptools answers these by running setup.py, which would import mypyc before it is installed;
# setup.py declares no setup_requires, so when compiling the compiler is the whole answer.
def get_requires_for_build_wheel(config_settings: dict | None = None) -> list[str]:
    return list(COMPILER) if _compiling() else _setuptools.get_requires_for_build_wheel(config_settings)


def get_requires_for_build_editable(config_settings: dict | None = None) -> list[str]:
    return list(COMPILER) if _compiling() else _setuptools.get_requires_for_build_editable(config_settings)

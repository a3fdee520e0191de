"""Plain Python unless ``AUTOSCALER_MYPYC=1``: then mypyc compiles the HPA decision core, the
code every controller sync, dry-run, ``explain`` and replayed sync runs, to C extensions. The
results are the same (the test suite runs against both, tests/test_compiled_core.py); a sync
costs about half the CPU. Everything else stays interpreted.

Leave it off for editable installs: a compiled module is imported in place of its ``.py``, so
later edits of that file would not take effect until the next build.
"""

import os

from setuptools import setup

CORE = [f"autoscaler/hpa/{m}.py" for m in ("decide", "metrics_eval", "calculator", "normalize", "status")]


def ext_modules() -> list:
    if os.environ.get("AUTOSCALER_MYPYC") != "1":
        return []
    from mypyc.build import mypycify

    return mypycify(CORE, opt_level="3", group_name="autoscaler_core")


setup(ext_modules=ext_modules())

"""Kubernetes horizontal pod autoscaler with its own metrics pipeline."""

__version__ = "0.1.0"


def decision_core() -> str:
    """How the HPA decision core runs here: ``compiled (mypyc)`` when the wheel was built with
    ``AUTOSCALER_MYPYC=1`` (setup.py), else ``interpreted``. Looked up on disk, so asking costs no import."""
    from pathlib import Path

    return "compiled (mypyc)" if any((Path(__file__).parent / "hpa").glob("decide.*.so")) else "interpreted"

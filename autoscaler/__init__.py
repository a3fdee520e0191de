"""Kubernetes horizontal pod autoscaler with its own metrics pipeline."""

__version__ = "0.1.0"

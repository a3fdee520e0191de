"""Structured logging: JSON in a cluster (or when piped), readable console lines on a terminal.

structlog (with what it pulls in: asyncio, rich) is imported only by :func:`configure_logging` for
commands that log through it; a command module that never does says ``LOGS = False`` and starts
without it."""

from __future__ import annotations

import logging
import os
import sys


def configure_logging(fmt: str = "auto", level: str = "info", *, structured: bool = True) -> None:
    """Set up logging once per process. ``fmt`` is ``json``, ``console`` or ``auto``; without
    ``structured`` only the standard library's logging is set up (structlog is not loaded)."""
    if fmt == "auto":
        in_cluster = bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
        fmt = "json" if in_cluster or not sys.stderr.isatty() else "console"
    lvl = logging.getLevelName(level.upper())
    if not isinstance(lvl, int):
        raise ValueError(f"unknown log level {level!r}")
    logging.basicConfig(level=lvl, stream=sys.stderr, format="%(message)s")
    if not structured:
        return
    import structlog

    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def add_logging_flags(parser) -> None:  # type: ignore[no-untyped-def]
    parser.add_argument("--log-format", choices=["auto", "json", "console"], default="auto",
                        help="log format: json in a cluster or when stderr is not a terminal, console otherwise (default auto)")
    parser.add_argument("-v", "--log-level", default="info",
                        help="minimum log level: debug, info, warning, error (default info)")

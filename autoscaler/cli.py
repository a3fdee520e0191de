"""The ``autoscaler`` command.

Every subcommand lives in a small ``*_cmd`` module exposing ``HELP``, ``add_arguments(parser)`` and
``main(args) -> int``; heavy imports happen inside ``main`` so ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from autoscaler import __version__
from autoscaler.logs import add_logging_flags, configure_logging

# (command path, module)
COMMANDS: list[tuple[tuple[str, ...], str]] = [
    (("run",), "autoscaler.server.run_cmd"),
    (("explain",), "autoscaler.hpa.explain_cmd"),
    (("recommend",), "autoscaler.controller.recommend_cmd"),
    (("record",), "sim.replay.record_cmd"),
    (("sim", "up"), "sim.up_cmd"),
    (("sim", "replay"), "sim.replay.replay_cmd"),
    (("sim", "agree"), "sim.controlplane.agreement"),
]

GROUP_HELP = {"sim": "emulated cluster (sim up), replay simulator (sim replay), HPA agreement (sim agree)"}

DESCRIPTION = """\
A Kubernetes horizontal pod autoscaler with its own metrics pipeline.

  autoscaler run          metrics pipeline (drop-in metrics-server) and HPA controller
  autoscaler explain      why an HPA would choose its replica count, from a snapshot
  autoscaler recommend    live table of what the controller recommends (dry-run)
  autoscaler record       record a load trace from the live metrics store
  autoscaler sim up       run an emulated cluster (API server and kubelets) on this machine
  autoscaler sim replay   replay a recorded load against HPA configurations
  autoscaler sim agree    our dry-run HPA decisions beside kube-controller-manager's, sync by sync
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autoscaler", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"autoscaler {__version__}")
    top = parser.add_subparsers(dest="command", metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction] = {}
    for path, module_name in COMMANDS:
        module = importlib.import_module(module_name)
        subs = top
        for part in path[:-1]:
            if part not in groups:
                grp = top.add_parser(part, help=GROUP_HELP.get(part, f"{part} commands"))
                groups[part] = grp.add_subparsers(dest=f"{part}_command", metavar="COMMAND")
            subs = groups[part]
        sub = subs.add_parser(
            path[-1],
            help=module.HELP.splitlines()[0],
            description=module.HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(sub)
        if not any(a.dest == "log_format" for a in sub._actions):
            add_logging_flags(sub)
        sub.set_defaults(_main=module.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    run = getattr(args, "_main", None)
    if run is None:
        parser.print_help()
        return 2
    configure_logging(args.log_format, args.log_level)
    try:
        return int(run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

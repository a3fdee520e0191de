"""The ``autoscaler`` command.

Every subcommand lives in a small ``*_cmd`` module exposing ``HELP``, ``add_arguments(parser)`` and
``main(args) -> int``. Only the module of the command being run is imported (its one-line summary
for the listing is kept here), and heavy imports happen inside ``main``: ``autoscaler --help``
loads no command at all, and the product's commands never load the emulator (``sim``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

from autoscaler import __version__


class Command:
    """One subcommand: where it lives and the line that lists it (the module's HELP says the rest)."""

    __slots__ = ("module", "path", "summary")

    def __init__(self, path: tuple[str, ...], module: str, summary: str):
        self.path, self.module, self.summary = path, module, summary


COMMANDS: list[Command] = [
    Command(("run",), "autoscaler.server.run_cmd",
            "the metrics pipeline (a drop-in metrics-server) and the HPA controller"),
    Command(("explain",), "autoscaler.hpa.explain_cmd",
            "why an HPA would choose its replica count, from a snapshot (offline)"),
    Command(("recommend",), "autoscaler.controller.recommend_cmd",
            "live table of what the HPA controller recommends (dry-run, nothing written)"),
    Command(("record",), "sim.replay.record_cmd",
            "record a load trace from a cluster for `autoscaler sim replay`"),
    Command(("sim", "up"), "sim.up_cmd",
            "run an emulated cluster (API server and kubelets) on this machine"),
    Command(("sim", "replay"), "sim.replay.replay_cmd",
            "replay a recorded load against HPA configurations and rank them"),
    Command(("sim", "agree"), "sim.controlplane.agreement",
            "our dry-run HPA decisions beside kube-controller-manager's, sync by sync"),
]

GROUPS = {
    "sim": ("the emulator: an emulated cluster, the replay simulator and the HPA agreement check",
            "Tools that run the autoscaler against something other than a production cluster: an emulated\n"
            "cluster on this machine, recorded load replayed on a virtual clock, and our decisions beside\n"
            "kube-controller-manager's."),
}

DESCRIPTION = """\
A Kubernetes horizontal pod autoscaler with its own metrics pipeline: a drop-in metrics-server
serving metrics.k8s.io, an HPA controller that decides exactly like kube-controller-manager's
(live, dry-run or offline with `explain`), and an emulated cluster with a replay simulator."""

EPILOG = "Run `autoscaler COMMAND --help` (e.g. `autoscaler sim replay --help`) for a command's flags."


class _LeafParser(argparse.ArgumentParser):
    """A command's parser: an unknown flag is reported with this command's usage, not the top level's
    (argparse otherwise hands a subcommand's leftovers back to the top-level parser)."""

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[no-untyped-def,override]
        ns, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return ns, extras


def _listing(commands: list[Command], prefix: tuple[str, ...]) -> str:
    rows = [(" ".join(c.path), c.summary) for c in commands if c.path[: len(prefix)] == prefix]
    width = max(len(name) for name, _ in rows) + 2
    return "commands:\n" + "".join(f"  autoscaler {name.ljust(width)}{summary}\n" for name, summary in rows)


class _Version(argparse.Action):
    """--version, which also says whether the decision core is compiled (looked up only when asked)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kw: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kw)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        from autoscaler import decision_core

        print(f"autoscaler {__version__} (decision core: {decision_core()})")  # stdout, as argparse's own
        parser.exit()


def _chosen(argv: list[str]) -> tuple[str, ...] | None:
    """The command path ``argv`` names (the top level takes no flags before it but -h/--version)."""
    for c in COMMANDS:
        if tuple(argv[: len(c.path)]) == c.path:
            return c.path
    return None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; only the command that ``argv`` names gets its flags (and its module imported).
    Without ``argv`` every command is loaded (for tests and tools that inspect all flags)."""
    chosen = _chosen(argv) if argv is not None else None
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="autoscaler", usage="%(prog)s [-h] [--version] COMMAND ...",
                                     description=DESCRIPTION + "\n\n" + _listing(COMMANDS, ()), epilog=EPILOG,
                                     formatter_class=raw)
    parser.add_argument("--version", action=_Version, help="show the version and how the decision core runs, and exit")
    # The listing above names every command once; the subparsers themselves are not listed again.
    top = parser.add_subparsers(dest="command", metavar="COMMAND", help=argparse.SUPPRESS, parser_class=_LeafParser)
    groups: dict[str, argparse._SubParsersAction] = {}
    for c in COMMANDS:
        subs = top
        for part in c.path[:-1]:
            if part not in groups:
                summary, text = GROUPS[part]
                members = [m for m in COMMANDS if m.path[0] == part]
                grp = top.add_parser(
                    part, prog=f"autoscaler {part}", usage="%(prog)s [-h] COMMAND ...", formatter_class=raw,
                    description=f"{summary[0].upper()}{summary[1:]}.\n\n{text}\n\n" + _listing(members, (part,)),
                    epilog=f"Run `autoscaler {part} COMMAND --help` for a command's flags.")
                grp.set_defaults(_help=grp.print_help)
                groups[part] = grp.add_subparsers(dest=f"{part}_command", metavar="COMMAND", help=argparse.SUPPRESS,
                                                  parser_class=_LeafParser)
            subs = groups[part]
        if argv is not None and c.path != chosen:
            # named, so argparse knows the word, but never parsed: its module stays unimported
            subs.add_parser(c.path[-1], prog=" ".join(("autoscaler", *c.path)), add_help=False)
            continue
        module = importlib.import_module(c.module)
        sub = subs.add_parser(c.path[-1], prog=" ".join(("autoscaler", *c.path)), description=module.HELP,
                              formatter_class=raw)
        module.add_arguments(sub)
        if not any(a.dest == "log_format" for a in sub._actions):
            from autoscaler.logs import add_logging_flags

            add_logging_flags(sub)
        sub.set_defaults(_main=module.main, _logs=getattr(module, "LOGS", True))
    return parser


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    try:
        parser = build_parser(argv)
        args = parser.parse_args(argv)
        run = getattr(args, "_main", None)
        if run is None:  # `autoscaler` or `autoscaler sim` alone: that level's help
            getattr(args, "_help", parser.print_help)()
            return 2
        from autoscaler.logs import configure_logging

        configure_logging(args.log_format, args.log_level, structured=args._logs)
        return int(run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except ModuleNotFoundError as exc:  # a package an extra brings is not installed: say which extra
        from autoscaler.extras import hint

        line = hint(exc, " ".join(_chosen(argv) or ()))
        if line is None:
            raise
        print(line, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

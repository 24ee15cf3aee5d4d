"""The command: ``python3 -m loadtests.bench [flags]`` (``--help`` lists them)."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loadtests.bench import CLIENT_CPU, ROOT, SERVER_CPU, progress
from loadtests.bench.page import DOCS_PAGE, write_docs
from loadtests.bench.report import markdown
from loadtests.bench.rounds import run_all
from loadtests.bench.servers import DEFAULT_VENV, QUICK_SERVERS, SERVERS, Env, ensure_venv, snapshot_sources
from loadtests.bench.wrk import ALL_WORKLOADS, WORKLOAD_ALIASES, WORKLOADS


def _names(text: str, table: dict[str, Any], what: str, aliases: dict[str, str] | None = None) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    names = [(aliases or {}).get(name, name) for name in names]
    unknown = [name for name in names if name not in table]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown {what} {', '.join(unknown) or '(none given)'}; choose from {', '.join(table)}"
        )
    # Table order, so that the subject stays first whatever order was asked.
    return [name for name in table if name in names]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python3 -m loadtests.bench",
        description="Measure reactor and peer servers with wrk (see loadtests/bench/__init__.py).",
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument(
        "--servers",
        type=lambda text: _names(text, SERVERS, "server"),
        help=f"comma list of servers (default all: {','.join(SERVERS)})",
    )
    parser.add_argument(
        "--workloads",
        type=lambda text: _names(text, ALL_WORKLOADS, "workload", WORKLOAD_ALIASES),
        default=list(ALL_WORKLOADS),
        help=f"comma list of workloads (default all: {','.join(ALL_WORKLOADS)}; post is post-1k)",
    )
    parser.add_argument(
        "--idle",
        type=int,
        default=5000,
        help="idle connections held per server for the idle workload (default %(default)s)",
    )
    parser.add_argument(
        "--idle-subject",
        type=int,
        default=15000,
        help="reactor is also measured holding this many idle connections; 0: don't (default %(default)s)",
    )
    parser.add_argument(
        "--static-mib", type=int, default=256, help="size of the static file in MiB (default %(default)s)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke: {','.join(QUICK_SERVERS)} only (unless --servers), --duration 2 --rounds 1 "
        "--retries 0, 500 idle connections, a 32 MiB static file, no docs",
    )
    parser.add_argument(
        "--venv",
        type=Path,
        default=DEFAULT_VENV,
        help="the peers' virtualenv, created and filled if needed (default %(default)s)",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=60.0,
        help="before each run, wait up to this many seconds for the machine to be idle; 0: don't "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--max-other",
        type=float,
        default=15.0,
        help="redo a run in which others used more than this %% of a core (default %(default)s)",
    )
    parser.add_argument("--retries", type=int, default=2, help="redos per run at most (default 2)")
    parser.add_argument(
        "--no-snapshot",
        dest="snapshot",
        action="store_false",
        help="run the servers from the work tree, not from a copy taken at the start",
    )
    parser.add_argument(
        "--src",
        type=Path,
        help="run the servers from this directory (holding reactor/ and loadtests/, e.g. a git "
        "worktree of another commit) instead of a snapshot of the work tree",
    )
    parser.add_argument(
        "--out", type=Path, help="the JSON file (default loadtests/results/bench-<time>.json)"
    )
    parser.add_argument(
        "--docs",
        type=Path,
        default=DOCS_PAGE,
        help="the page written from the results (default %(default)s; charts go to docs/img/)",
    )
    parser.add_argument(
        "--no-docs", dest="write_docs", action="store_false", help="write no docs page and no charts"
    )
    parser.add_argument(
        "--report",
        type=Path,
        metavar="JSON",
        help="measure nothing: re-write the docs page and the charts from this results file",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.rounds, args.retries = 2, 1, 0
        args.quiet_wait = min(args.quiet_wait, 5.0)
        args.idle, args.idle_subject, args.static_mib = 500, 0, 32
        args.write_docs = False
        if args.servers is None:
            args.servers = list(QUICK_SERVERS)
    if args.servers is None:
        args.servers = list(SERVERS)
    if args.duration < 1 or args.rounds < 1:
        parser.error("--duration and --rounds must be at least 1")
    if args.src is not None:
        args.src = args.src.resolve()
        if not (args.src / "reactor").is_dir() or not (args.src / "loadtests").is_dir():
            parser.error(f"--src {args.src} holds no reactor/ and loadtests/")
    return args


def _check_tools(workloads: Sequence[str]) -> None:
    tools = ["wrk", "taskset"] + (["nginx"] if "static" in workloads else [])
    for tool in tools:
        if shutil.which(tool) is None:
            raise SystemExit(f"bench: {tool} is not installed")
    cpus = os.sched_getaffinity(0)
    if {int(SERVER_CPU), int(CLIENT_CPU)} - cpus:
        raise SystemExit(f"bench: needs cores {SERVER_CPU} and {CLIENT_CPU}; this process may use {cpus}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report is not None:
        write_docs(args.report.resolve(), args.docs.resolve(), args.venv.resolve())
        return 0
    _check_tools(args.workloads)
    servers = [SERVERS[name] for name in args.servers]
    wrk_workloads = [WORKLOADS[name] for name in args.workloads if name in WORKLOADS]
    peer_python = sys.executable
    failures: dict[str, str] = {}
    if any(server.needs_venv for server in servers) or args.write_docs:
        python, failures = ensure_venv(args.venv.resolve(), servers, charts=args.write_docs)
        peer_python = str(python)
    with tempfile.TemporaryDirectory(prefix="reactor-bench-") as temp:
        temp_dir = Path(temp)
        if args.src is not None:
            src = args.src
        elif args.snapshot:
            src = snapshot_sources(temp_dir / "src")
        else:
            src = ROOT
        env = Env(python=sys.executable, peer_python=peer_python, src=src, origin=args.src or ROOT)
        report = run_all(args, env, servers, wrk_workloads, temp_dir, failures)
    print()
    print(markdown(report.medians, report.ratios, report.machine, args))
    print()
    progress(f"results: {report.path}")
    if args.write_docs:
        write_docs(Path(report.path), args.docs.resolve(), args.venv.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())

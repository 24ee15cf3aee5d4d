"""The rounds: every server and workload, interleaved; one clean measurement each.

For each round, each server is started in turn (the order reversed every other
round), checked, and measured with every wrk workload; then the static file
and the idle connections, if asked for. The JSON file is written after each
part, so that a run cut short still leaves what it measured.
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from loadtests.bench import RESULTS, ROOT, WARMUP_S, progress
from loadtests.bench.idle import measure_idle
from loadtests.bench.measurement import CLK_TCK, children_cpu_s, cpu_ticks, machine_ticks, rss_kib, wait_quiet
from loadtests.bench.report import (
    Measurement,
    Report,
    machine_info,
    python_costs,
    ratios,
    save,
    summarize,
)
from loadtests.bench.servers import (
    SUBJECT,
    Env,
    ServerDef,
    ServerProcess,
    check_answers,
    reactor_fingerprint,
    running,
)
from loadtests.bench.static import run_static
from loadtests.bench.wrk import Workload, parse_wrk, run_wrk, wrk_argv


def run_all(
    args: argparse.Namespace,
    env: Env,
    servers: Sequence[ServerDef],
    workloads: Sequence[Workload],
    temp_dir: Path,
    failures: dict[str, str],
) -> Report:
    """Every round, server and workload; writes the JSON file and returns the report."""
    now = dt.datetime.now()
    report = Report(
        started=now.isoformat(timespec="seconds"),
        command=["python3", "-m", "loadtests.bench", *sys.argv[1:]],
        args={
            "duration_s": args.duration,
            "rounds": args.rounds,
            "warmup_s": WARMUP_S,
            "quiet_wait_s": args.quiet_wait,
            "max_other_percent": args.max_other,
            "retries": args.retries,
            "servers": args.servers,
            "workloads": args.workloads,
            "idle_connections": args.idle,
            "idle_connections_subject": args.idle_subject,
            "static_mib": args.static_mib,
            "quick": args.quick,
        },
        machine=machine_info(env, servers),
        servers={server.name: server.description for server in servers},
        notes={server.name: server.note for server in servers if server.note},
        workloads={
            w.name: {
                "description": w.description,
                "path": w.path,
                "headers": list(w.headers),
                "lua": w.lua,
                "connections": w.connections,
                "threads": w.threads,
            }
            for w in workloads
        },
        failures=dict(failures),
        python_costs=python_costs(),
    )
    report.path = str(args.out or RESULTS / f"bench-{now:%Y%m%d-%H%M%S}.json")
    live = [server for server in servers if server.name not in failures]
    per_run_s = len(workloads) * (WARMUP_S + args.duration + 1.5)
    progress(
        f"{args.rounds} round(s) x {len(live)} server(s) x {len(workloads)} wrk workload(s), "
        f"about {args.rounds * len(live) * per_run_s / 60:.1f} min"
        + (", then the static file" if "static" in args.workloads else "")
        + (", then idle connections" if "idle" in args.workloads else "")
        + f"; servers run from {env.src}"
    )
    scripts: dict[str, Path] = {}
    for workload in workloads:
        if workload.lua is not None:
            scripts[workload.name] = temp_dir / f"{workload.name}.lua"
            scripts[workload.name].write_text(workload.lua)
    total = args.rounds * len(live) * len(workloads)
    done_runs = 0
    started = time.monotonic()
    for round_no in range(1, args.rounds + 1 if workloads else 1):
        order = live if round_no % 2 else list(reversed(live))
        for server in order:
            if server.name in report.failures:
                continue
            try:
                with running(server, env, temp_dir) as process:
                    took = process.wait_ready()
                    check_answers(process, workloads)
                    report.starts.append(
                        {
                            "round": round_no,
                            "server": server.name,
                            "pid": process.pid,
                            "port": process.port,
                            "ready_s": round(took, 3),
                            "affinity": process.affinity(),
                            "argv": process.argv,
                        }
                    )
                    progress(
                        f"round {round_no}/{args.rounds}: {server.name} pid {process.pid} "
                        f"on port {process.port}, ready in {took:.2f} s, cores {process.affinity()}"
                    )
                    for workload in workloads:
                        report.runs.append(measure_clean(process, workload, round_no, scripts, args, report))
                        done_runs += 1
                        elapsed = time.monotonic() - started
                        progress(
                            f"  {done_runs}/{total} runs done, {elapsed / 60:.1f} min so far, "
                            f"about {elapsed / done_runs * (total - done_runs) / 60:.1f} min of wrk runs left"
                        )
            except (RuntimeError, ValueError, OSError, subprocess.TimeoutExpired) as error:
                why = f"round {round_no}: {str(error).strip()[:1500]}"
                report.failures[server.name] = why
                progress(f"{server.name} failed and is left out from now on: {why.splitlines()[0]}")
    # Grouped by workload, servers in table order: each peer sits under reactor.
    for workload in workloads:
        for server in servers:
            runs = [r for r in report.runs if r.server == server.name and r.workload == workload.name]
            if runs:
                report.medians.append(summarize(runs))
    report.ratios = ratios(report.medians)
    save(report)
    if "static" in args.workloads:
        progress("static: reactor --static against nginx")
        try:
            report.static = run_static(args, env, temp_dir)
        except (SystemExit, RuntimeError, OSError, subprocess.TimeoutExpired) as error:
            report.failures["static"] = str(error)[:1500]
            progress(f"static failed: {error}")
        save(report)
    if "idle" in args.workloads:
        for server in live:
            counts = [args.idle]
            if server.name == SUBJECT and args.idle_subject > args.idle:
                counts.append(args.idle_subject)
            for n in counts:
                if server.idle_skip is None:
                    progress(f"idle: {server.name} holding {n} idle connections")
                try:
                    row = measure_idle(server, env, n, temp_dir)
                except (RuntimeError, OSError, subprocess.TimeoutExpired) as error:
                    row = {"server": server.name, "connections": n, "failed": str(error).strip()[:500]}
                report.idle.append(row)
                progress(
                    f"idle: {server.name:<14} {n} connections: "
                    + (
                        f"{row['kib_per_connection']:.2f} KiB each (RSS {row['rss_before_kib']} -> "
                        f"{row['rss_after_kib']} KiB, opened in {row['open_s']} s)"
                        if "kib_per_connection" in row
                        else f"skipped: {row['skipped']}"
                        if "skipped" in row
                        else f"failed: {row['failed'].splitlines()[0]}"
                    )
                )
        save(report)
    report.finished = dt.datetime.now().isoformat(timespec="seconds")
    at_end = reactor_fingerprint(env.src)
    report.machine["reactor_sources_sha256_at_end"] = at_end
    if at_end != report.machine["reactor_sources_sha256"]:
        progress(f"warning: reactor/ in {env.src} changed during the run; its figures mix two versions")
    elif env.src != ROOT and reactor_fingerprint(ROOT) != at_end:
        progress(f"note: reactor/ in the work tree differs from the code measured (in {env.src})")
    save(report)
    return report


def measure(
    process: ServerProcess,
    workload: Workload,
    duration_s: int,
    round_no: int,
    scripts: dict[str, Path],
    quiet_wait_s: float,
) -> Measurement:
    """Warm up, then measure one workload on a running server."""
    script = scripts.get(workload.name)
    waited_s = wait_quiet(quiet_wait_s) if quiet_wait_s > 0 else 0.0
    run_wrk(wrk_argv(workload, process.port, WARMUP_S, script), WARMUP_S)
    argv = wrk_argv(workload, process.port, duration_s, script)
    before = cpu_ticks(process.pid)
    machine_before = machine_ticks()
    wrk_before = children_cpu_s()
    started = time.monotonic()
    output = run_wrk(argv, duration_s)
    wall_s = time.monotonic() - started
    after = cpu_ticks(process.pid)
    machine_after = machine_ticks()
    wrk_s = children_cpu_s() - wrk_before
    result = parse_wrk(output)
    user_s = (after[0] - before[0]) / CLK_TCK
    system_s = (after[1] - before[1]) / CLK_TCK
    cpu_s = user_s + system_s
    busy_s = (machine_after[0] - machine_before[0]) / CLK_TCK
    steal_s = (machine_after[1] - machine_before[1]) / CLK_TCK
    per_request_us = 1e6 / result.requests if result.requests else float("nan")
    return Measurement(
        round=round_no,
        server=process.name,
        workload=workload.name,
        requests=result.requests,
        elapsed_s=result.elapsed_s,
        requests_per_s=result.requests_per_s,
        latency_ms=result.latency_ms,
        socket_errors=result.socket_errors,
        non_2xx=result.non_2xx,
        server_cpu_s=cpu_s,
        cpu_us_per_request=cpu_s * per_request_us,
        user_us_per_request=user_s * per_request_us,
        system_us_per_request=system_s * per_request_us,
        server_cpu_percent=100.0 * cpu_s / wall_s,
        wrk_cpu_percent=100.0 * wrk_s / wall_s,
        other_cpu_percent=100.0 * max(busy_s - cpu_s - wrk_s, 0.0) / wall_s,
        steal_percent=100.0 * steal_s / wall_s,
        quiet_wait_s=round(waited_s, 1),
        attempt=1,
        server_rss_kib=rss_kib(process.pid),
        wrk_argv=argv,
    )


def measure_clean(
    process: ServerProcess,
    workload: Workload,
    round_no: int,
    scripts: dict[str, Path],
    args: argparse.Namespace,
    report: Report,
) -> Measurement:
    """Measure; measure again (at most ``--retries`` times) while others used the machine.

    Returns the first clean measurement, else the least disturbed one.
    """
    attempts: list[Measurement] = []
    attempt = 1
    while True:
        run = measure(process, workload, args.duration, round_no, scripts, args.quiet_wait)
        run.attempt = attempt
        errors = sum(run.socket_errors.values()) + run.non_2xx
        progress(
            f"round {round_no}/{args.rounds}: {process.name:<14} {workload.name:<10} "
            f"{run.requests_per_s:>9,.0f} req/s  p50 {run.latency_ms['50']:.2f} ms  "
            f"p99 {run.latency_ms['99']:.2f} ms  {run.cpu_us_per_request:.1f} us CPU/req "
            f"({run.user_us_per_request:.1f} user)  "
            f"CPU {run.server_cpu_percent:.0f}%  wrk {run.wrk_cpu_percent:.0f}%  "
            f"other {run.other_cpu_percent:.0f}%" + (f"  errors {errors}" if errors else "")
        )
        attempts.append(run)
        if run.other_cpu_percent <= args.max_other or attempt > args.retries:
            break
        progress(f"other CPU {run.other_cpu_percent:.0f}% > {args.max_other:.0f}%: measuring again")
        attempt += 1
    kept = min(attempts, key=lambda candidate: candidate.other_cpu_percent)
    report.discarded.extend(candidate for candidate in attempts if candidate is not kept)
    if kept is not run:
        progress(
            f"kept attempt {kept.attempt}, the least disturbed (other CPU {kept.other_cpu_percent:.0f}%)"
        )
    return kept

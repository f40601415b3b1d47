"""The generated part of BENCHMARKS.md's "Reliability" section, from the
reports scripts/reliability.sh leaves in a directory: one sluice-loadtest
JSON report per scenario and faults.tsv (when each fault happened, how long
it lasted, how long the repaired part took to answer again).

Usage: python3 scripts/reliability_report.py DIR RATE BATCH OUTAGE TARGET
"""

import csv
import datetime
import json
import os
import platform
import subprocess
import sys

out, rate, batch, outage, target = sys.argv[1:6]

FAULTS = {
    "baseline": "none",
    "kill-ingest": "kill -9 `sluice ingest`, restarted at once",
    "kill-worker": "kill -9 `sluice worker`, restarted at once",
    "kill-api": "kill -9 `sluice api`, restarted at once",
    "redis-down": "kill -9 Redis (appendonly yes, everysec), started again after {o} s",
    "redis-noaof": "kill -9 Redis with appendonly no (and no RDB saves), started again after {o} s",
    "postgres-down": "PostgreSQL stopped (`pg_ctl stop -m immediate`), started again after {o} s",
    "clickhouse-down": "kill -9 ClickHouse, started again after {o} s",
}


def fmt(n):
    if n is None:
        return ""
    if isinstance(n, float):
        return f"{n:,.1f}"
    return f"{n:,}"


def cmd(*args):
    try:
        return subprocess.run(args, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


faults = {}
with open(os.path.join(out, "faults.tsv")) as f:
    for row in csv.DictReader(f, delimiter="\t"):
        faults[row["scenario"]] = row

runs = []
for name in faults:
    path = os.path.join(out, f"{name}.json")
    if os.path.exists(path):
        runs.append((name, json.load(open(path))))

cpu = ""
try:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
except OSError:
    pass
mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30)
def read(name, default):
    try:
        return open(os.path.join(out, name)).read().strip() or default
    except OSError:
        return default


command = read("command.txt", "bash scripts/reliability.sh")
started = read("started.txt", "")
if started:
    when, commit = started.rsplit(" ", 1)
else:
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    commit = cmd("git", "rev-parse", "--short", "HEAD")

print("### Latest run\n")
print(f"Written by `{command}`, started {when} at commit `{commit}`"
      f"{' (target: ' + target + ')' if target != 'local' else ''}.")
print(f"Machine: {os.cpu_count()} vCPUs ({cpu}), {mem_gib} GiB RAM, {platform.platform()}.")
print(f"Load: {int(float(rate)):,} error events/s offered, open loop (`sluice-loadtest --scenario errors`:"
      f" 80 % of requests single events, 20 % batches of {batch}), 256 connections, a 10 s"
      " time-out, 20 lag probes (an event posted, then polled through the API until visible);"
      f" stores down {outage} s. Each scenario is its own tenant; its loss check waits until"
      " both stores hold every accepted event and their counts stay unchanged 5 s.\n")

print("| scenario | fault | requests: 2xx / 503 / other / no answer | events accepted (2xx) | ClickHouse rows (distinct) | PostgreSQL count | lost | stored twice | events without an answer: stored / sent | drain after the load |")
print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
for name, d in runs:
    s = d.get("status_counts") or {}
    c = d.get("loss_check") or {}
    other = (d.get("requests") or 0) - s.get("2xx", 0) - s.get("503", 0) - s.get("connection_errors", 0) - s.get("timeouts", 0)
    noans = s.get("connection_errors", 0) + s.get("timeouts", 0)
    lost = c.get("lost")
    twice = c.get("duplicated")
    drain = f"{c.get('drain_secs', 0):.1f} s" if c.get("drained") else f"**not drained** after {c.get('drain_secs', 0):.0f} s"
    bold = lambda v: f"**{fmt(v)}**" if v else fmt(v)
    print(f"| {name} | {FAULTS.get(name, name).format(o=outage)} | {fmt(s.get('2xx'))} / {fmt(s.get('503'))} / {fmt(other)} / {fmt(noans)}"
          f" | {fmt(c.get('accepted'))} | {fmt(c.get('stored_clickhouse'))} ({fmt(c.get('distinct_clickhouse'))})"
          f" | {fmt(c.get('stored_postgres'))} | {bold(lost)} | {bold(twice)}"
          f" | {fmt(c.get('stored_unanswered'))} / {fmt(c.get('unanswered'))} | {drain} |")

print("\n| scenario | other statuses | latency p50 / p99 / max (ms) | unsent slots | visibility lag p50 / p99 (ms); probes | repaired part answering after |")
print("|---|---|---|---:|---|---:|")
for name, d in runs:
    s = d.get("status_counts") or {}
    codes = {k: v for k, v in (s.get("by_code") or {}).items() if not k.startswith("2") and k != "503"}
    if s.get("connection_errors"):
        codes["connection errors"] = s["connection_errors"]
    if s.get("timeouts"):
        codes["time-outs"] = s["timeouts"]
    lat = d.get("latency_ms") or {}
    lag = d.get("lag") or {}
    f = faults.get(name) or {}
    back = f"{float(f['back_secs']):.1f} s" if f.get("back_secs") else ""
    if name == "kill-worker" and back:
        back = "(no listener)"
    lag_txt = (f"{fmt(lag.get('p50_ms'))} / {fmt(lag.get('p99_ms'))}; {lag.get('visible', 0)} of"
               f" {lag.get('accepted', 0)} accepted probes seen ({lag.get('samples', 0)} sent)") if lag else ""
    print(f"| {name} | {', '.join(f'{k}: {v:,}' for k, v in codes.items()) or 'none'}"
          f" | {fmt(lat.get('p50'))} / {fmt(lat.get('p99'))} / {fmt(lat.get('max'))}"
          f" | {fmt(d.get('unsent'))} | {lag_txt} | {back} |")

total = sum((d.get("loss_check") or {}).get("accepted", 0) for _, d in runs)
lost = sum((d.get("loss_check") or {}).get("lost", 0) for _, d in runs)
twice = sum((d.get("loss_check") or {}).get("duplicated", 0) for _, d in runs)
print(f"\nIn all: {total:,} events accepted, {lost:,} lost, {twice:,} stored twice.")
print("\nLatencies count from each request's scheduled time (open loop). *Lost*: accepted events"
      " missing from the store holding fewer (distinct ClickHouse events, PostgreSQL group counts)."
      " *Stored twice*: ClickHouse rows sharing an event id, plus PostgreSQL counts beyond"
      " ClickHouse's distinct events. *Events without an answer*: events of requests that got no"
      " answer (connection refused or reset, time-out), and how many of them were stored anyway"
      " (beyond the accepted count); a client retrying those would store them twice. *Drain*: from the end of the load until both stores held every"
      " accepted event.\n")

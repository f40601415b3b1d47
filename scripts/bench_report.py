"""Writes the generated section of BENCHMARKS.md from the JSON reports of
scripts/bench.sh: usage: bench_report.py <results dir> <seconds>."""
import json
import os
import platform
import re
import subprocess
import sys
from datetime import datetime, timezone

out, secs = sys.argv[1], sys.argv[2]


def load(name):
    try:
        with open(os.path.join(out, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def lat(d, k):
    return (d.get("latency_ms") or {}).get(k)


def fmt(v, unit="", digits=1):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:,.{digits}f}{unit}"
    return f"{v:,}{unit}"


def ratio(a, b):
    return f"{a / b:.2f}" if a and b else "n/a"


def verdict(ok):
    return "met" if ok else "**not met**"


def best(d):
    """(best target rate, the achieved rate of that step) of a max search."""
    m = d.get("max_search") or {}
    ok = [s for s in m.get("steps", []) if s.get("met_slo")]
    if not ok:
        return (None, None)
    top = max(ok, key=lambda s: s["target_rate"])
    return (top["target_rate"], top["achieved_rate"])


ref = load("ref_single_max.json")
single = load("single_max.json")
half = load("single_half.json")
batch = load("batch_max.json")
overload = load("overload.json")
single_all = load("single_max_all.json")
sustained = load("sustained.json")
dash = load("dashboard.json")
mem = load("memory.json")
xadd_txt = open(os.path.join(out, "xadd.txt")).read() if os.path.exists(os.path.join(out, "xadd.txt")) else ""
m = re.findall(r"([\d.]+) requests per second", xadd_txt)
xadd = float(m[-1]) if m else None

ref_max = best(ref)[1]
single_max = best(single)[1]
single_all_max = best(single_all)[1]
batch_best = best(batch)[1]
batch_eps = batch_best * 100 if batch_best else None
loss = sustained.get("loss_check") or {}
sus_eps = loss.get("sustained_events_per_sec")
sus_lag = (sustained.get("lag") or {}).get("p99_ms")
mb = lambda kb: (kb or 0) // 1024

# accepted against stored, for every run
losses = []
for name in ["single_max", "single_half", "batch_max", "overload"]:
    l = load(f"loss_{name}.json")
    if l:
        losses.append((name, l.get("accepted"), l.get("unanswered"), l.get("clickhouse"), l.get("postgres")))
for name, d in [("single_max_all", single_all), ("sustained", sustained)]:
    l = d.get("loss_check") or {}
    if l:
        losses.append((name, l.get("accepted"), l.get("unanswered"), l.get("stored_clickhouse"), l.get("stored_postgres")))
total_accepted = sum(a or 0 for _, a, _, _, _ in losses)
lost = sum(max(0, (a or 0) - min(c or 0, p or 0)) for _, a, _, c, p in losses)
extra = sum(max(0, max(c or 0, p or 0) - (a or 0) - (u or 0)) for _, a, u, c, p in losses)

drains = {n: load(f"drain_{n}.json") for n in ["single_max", "single_half", "batch_max", "overload"]}
drain_rates = [d["events"] / d["secs"] for d in drains.values() if d and d.get("secs") and d.get("events", 0) > 100000]
drain_rate = max(drain_rates) if drain_rates else None

cpu = subprocess.run(["sh", "-c", "lscpu | sed -n 's/^Model name:[ ]*//p'"], capture_output=True, text=True).stdout.strip()
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
ram = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30)

print(f"""## Latest full run

Written by `bash scripts/bench.sh {secs}` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, commit `{commit}`.
Machine: {os.cpu_count()} vCPUs ({cpu}), {ram} GiB RAM, {platform.platform()}.
Sluice's tiers run as separate release processes (`sluice ingest`, `sluice api`, `sluice worker`),
and Redis, PostgreSQL, ClickHouse 18.16 and the load generator share the same two cores, so
every figure is read against a ceiling measured in the same run. "Ingest alone" runs pause the
workers (SIGSTOP) while measuring, then time them draining what was accepted; "every tier"
runs keep them storing throughout. Raw JSON reports: `{out}` (not kept).

Max searches: x1.5 steps of 4 s, then three bisections; a step fails when p99 passes 50 ms,
more than 1 % of answers are not 2xx, or less than 90 % of its rate could be sent; 256
connections; the figure is the achieved rate of the highest step that passed.

### Against the targets

| measure | Sluice | ceiling | ratio | target | |
|---|---:|---:|---:|---|---|
| single-event POST, max req/s, ingest alone | {fmt(single_max)} | {fmt(ref_max)} (bare hyper) | {ratio(single_max, ref_max)} | >= 0.5 x reference | {verdict(bool(single_max and ref_max and single_max >= 0.5 * ref_max))} |
| single-event p99 at half that rate | {fmt(lat(half, 'p99'), ' ms', 2)} | | | <= 10 ms | {verdict((lat(half, 'p99') or 1e9) <= 10)} |
| batches of 100 gzip'd, events/s accepted, ingest alone | {fmt(batch_eps)} | {fmt(xadd)} (redis-benchmark XADD -P 64, 2 KB entries/s) | {ratio(batch_eps, xadd)} | >= 300,000 | {verdict((batch_eps or 0) >= 300000)} |
| sustained end to end into ClickHouse, 100,000 events/s offered for 60 s | {fmt(sus_eps)} events/s | | | >= 100,000 | {verdict((sus_eps or 0) >= 100000)} |
| acceptance-to-visibility lag p99, that run | {fmt(sus_lag, ' ms')} | | | <= 2,000 ms | {verdict((sus_lag or 1e9) <= 2000)} |
| loss, every run (accepted - stored) | {fmt(total_accepted)} accepted, {fmt(lost)} lost, {fmt(extra)} stored twice | | | 0 | {verdict(bool(losses) and lost == 0 and extra == 0)} |
| ingest resident memory, peak over the max searches | {fmt(mb(mem.get('ingest_hwm_kb_at_max')), ' MB')} | | | <= 150 MB | {verdict(0 < mb(mem.get('ingest_hwm_kb_at_max')) <= 150)} |
| ingest resident memory, peak through 3x overload / after it | {fmt(mb(mem.get('ingest_hwm_kb_after_overload')), ' MB')} / {fmt(mb(mem.get('ingest_rss_kb_after_overload')), ' MB')} | | | bounded (429/503) | {verdict(0 < mb(mem.get('ingest_hwm_kb_after_overload')) <= 150)} |
| stats/trends/dashboard p99, 10 M events stored, uncached | {fmt(lat(dash, 'p99'), ' ms')} | | | <= 50 ms | {verdict((lat(dash, 'p99') or 1e9) <= 50)} |

Beside them: single-event max with every tier running (workers storing as it goes):
{fmt(single_all_max)} req/s ({ratio(single_all_max, ref_max)} x the reference); the workers alone drained
{fmt(drain_rate)} events/s into ClickHouse and PostgreSQL (the fastest drain of more than
100,000 events); worker resident memory peak {fmt(mb(mem.get('worker_hwm_kb')), ' MB')}.

### Loss check, run by run

| run | accepted | unanswered | in ClickHouse | in PostgreSQL |
|---|---:|---:|---:|---:|""")
for name, a, u, c, p in losses:
    print(f"| {name} | {fmt(a)} | {fmt(u)} | {fmt(c)} | {fmt(p)} |")

print("""
### Scenarios

| scenario | req/s | events/s | p50 | p90 | p99 | p99.9 | max | statuses |
|---|---:|---:|---:|---:|---:|---:|---:|---|""")
for name, d in [("reference (bare hyper), single, max search", ref), ("ingest alone: single, max search", single),
                ("ingest alone: single, half of max", half), ("ingest alone: batch 100 gzip, max search", batch),
                ("ingest alone: batch 100 gzip, 3x max (overload)", overload),
                ("every tier: single, max search", single_all),
                ("every tier: batch 100 gzip, 1,000 req/s for 60 s", sustained), ("dashboards, 10 M events", dash)]:
    if not d:
        print(f"| {name} | | | | | | | | no report |")
        continue
    sc = {k: v for k, v in (d.get("status_counts") or {}).items() if k != "by_code" and v}
    print(f"| {name} | {fmt(d.get('requests_per_sec'))} | {fmt(d.get('events_per_sec'))} | {fmt(lat(d, 'p50'), '', 2)} | {fmt(lat(d, 'p90'), '', 2)} | {fmt(lat(d, 'p99'), '', 2)} | {fmt(lat(d, 'p999'), '', 2)} | {fmt(lat(d, 'max'), '', 2)} | {json.dumps(sc)} |")

print("""
Latencies in ms, measured from each request's scheduled send time (open loop); a max search's
row covers all its steps, the failed ones too.

### Reproduce

```
bash scripts/bench.sh 20            # everything above; rewrites this section
cargo bench -p sluice-benches       # hot-path micro-benchmarks
```
""")

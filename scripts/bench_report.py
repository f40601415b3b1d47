"""Writes BENCHMARKS.md from the JSON reports of scripts/bench.sh."""
import json
import os
import platform
import re
import subprocess
import sys
from datetime import datetime, timezone

out, rss_max_kb, rss_over_kb, secs = sys.argv[1], int(sys.argv[2] or 0), int(sys.argv[3] or 0), sys.argv[4]


def load(name):
    try:
        with open(os.path.join(out, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def lat(d, k):
    return (d.get("latency_ms") or {}).get(k)


def fmt(v, unit=""):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:,.1f}{unit}"
    return f"{v:,}{unit}"


def ratio(a, b):
    return f"{a / b:.2f}" if a and b else "n/a"


def verdict(ok):
    return "met" if ok else "**not met**"


ref = load("ref_single_max.json")
single = load("single_max.json")
half = load("single_half.json")
batch = load("batch_max.json")
sustained = load("sustained.json")
overload = load("overload.json")
dash = load("dashboard.json")
xadd_txt = open(os.path.join(out, "xadd.txt")).read() if os.path.exists(os.path.join(out, "xadd.txt")) else ""
m = re.findall(r"([\d.]+) requests per second", xadd_txt)
xadd = float(m[-1]) if m else None

def best(d):
    """The highest rate whose step met the SLO, and that step's achieved rate."""
    m = d.get("max_search") or {}
    steps = [s for s in m.get("steps", []) if s.get("met_slo")]
    return (m.get("best_rate"), max((s["achieved_rate"] for s in steps), default=None))


ref_max = best(ref)[1]
single_max = best(single)[1]
batch_best = best(batch)[1]
batch_eps = batch_best * 100 if batch_best else None
loss = sustained.get("loss_check") or {}
sus_eps = loss.get("sustained_events_per_sec")
lag = {"p99": (sustained.get("lag") or {}).get("p99_ms")}
cpu = subprocess.run(["sh", "-c", "lscpu | sed -n 's/^Model name:[ ]*//p'"], capture_output=True, text=True).stdout.strip()
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()

print(f"""## Latest full run

Written by `bash scripts/bench.sh {secs}` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, commit `{commit}`.
Machine: {os.cpu_count()} vCPUs ({cpu}), {round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GiB RAM, {platform.platform()}.
Sluice (`sluice all`, release build), Redis, PostgreSQL, ClickHouse 18.16 and the load generator all share
this machine, so every figure is read against a ceiling measured in the same run.
Raw JSON reports of this run: `{out}` (not kept).

### Against the ceilings

| measure | Sluice | ceiling | ratio | target | |
|---|---:|---:|---:|---|---|
| single-event POST, max req/s (achieved in the highest step with p99 <= 10 ms) | {fmt(single_max)} | {fmt(ref_max)} (bare hyper) | {ratio(single_max, ref_max)} | >= 0.5 x reference | {verdict(bool(single_max and ref_max and single_max >= 0.5 * ref_max))} |
| single-event p99 at half that rate | {fmt(lat(half, 'p99'), ' ms')} | | | <= 10 ms | {verdict((lat(half, 'p99') or 1e9) <= 10)} |
| batches of 100 gzip'd, events/s accepted (highest step with p99 <= 10 ms) | {fmt(batch_eps)} | {fmt(xadd)} (redis-benchmark XADD -P 64, entries/s) | {ratio(batch_eps, xadd)} | >= 300,000 | {verdict((batch_eps or 0) >= 300000)} |
| sustained end to end into ClickHouse, events/s (60 s) | {fmt(sus_eps)} | | | >= 100,000 | {verdict((sus_eps or 0) >= 100000)} |
| acceptance-to-visibility lag p99 | {fmt(lag.get('p99'), ' ms')} | | | <= 2,000 ms | {verdict((lag.get('p99') or 1e9) <= 2000)} |
| loss (accepted - stored) | accepted {fmt(loss.get('accepted'))}, ClickHouse {fmt(loss.get('stored_clickhouse'))}, Postgres {fmt(loss.get('stored_postgres'))}, lost {fmt(loss.get('lost'))}, duplicated {fmt(loss.get('duplicated'))}, drain {fmt(loss.get('drain_secs'), ' s')} | | | 0 | {verdict(bool(loss) and loss.get('lost') == 0 and loss.get('duplicated') == 0 and loss.get('drained'))} |
| ingest resident memory, peak at max load | {fmt(rss_max_kb // 1024, ' MB')} | | | <= 150 MB | {verdict(0 < rss_max_kb <= 150 * 1024)} |
| resident memory after overload | {fmt(rss_over_kb // 1024, ' MB')} | | | bounded | {verdict(0 < rss_over_kb <= 150 * 1024)} |
| stats/trends/dashboard p99, 10 M events stored, uncached | {fmt(lat(dash, 'p99'), ' ms')} | | | <= 50 ms | {verdict((lat(dash, 'p99') or 1e9) <= 50)} |

`sluice all` runs ingest, API and workers in one process, so "ingest resident memory" is the
whole process's peak (VmHWM).

### Scenarios

| scenario | req/s | events/s | p50 | p90 | p99 | p99.9 | max | statuses |
|---|---:|---:|---:|---:|---:|---:|---:|---|""")
for name, d in [("reference (bare hyper), single, max", ref), ("single, max", single), ("single, half of max", half),
                ("batch 100 gzip, max", batch), ("batch 100 gzip, 1,000 req/s for 60 s", sustained),
                ("overload: batch 100 at 20,000 req/s", overload), ("dashboards, 10 M events", dash)]:
    if not d:
        print(f"| {name} | | | | | | | | no report |")
        continue
    print(f"| {name} | {fmt(d.get('requests_per_sec'))} | {fmt(d.get('events_per_sec'))} | {fmt(lat(d, 'p50'))} | {fmt(lat(d, 'p90'))} | {fmt(lat(d, 'p99'))} | {fmt(lat(d, 'p999'))} | {fmt(lat(d, 'max'))} | {json.dumps(d.get('status_counts', {}))} |")

print("""
Latencies in ms, measured from each request's scheduled send time (open loop).

### Reproduce

```
bash scripts/bench.sh 20            # everything above; rewrites this section
bash scripts/bench-ingest.sh 15 64  # quick wrk-based ingest figures
cargo bench -p sluice-benches       # hot-path micro-benchmarks
```
""")

"""Turns scripts/bench-durability.sh's results into a Markdown section:
each level's throughput, latency and CPU per event, and their ratios to
the no-AOF run of the same session.

Usage: durability_report.py OUT SECS SINGLE_RATE BATCH_RATE CLK_TCK [--write BENCHMARKS.md]
"""
import datetime
import json
import os
import sys

LEVELS = [
    ("none", "no AOF, no snapshots"),
    ("everysec", "AOF, appendfsync everysec"),
    ("always", "AOF, appendfsync always"),
    ("replica", "no AOF, 1 replica, SLUICE_REDIS_MIN_REPLICAS=1"),
]
START, END = "<!-- durability:start -->", "<!-- durability:end -->"


def load(out, name, scenario, clk):
    with open(os.path.join(out, f"{name}.{scenario}.json")) as f:
        r = json.load(f)
    with open(os.path.join(out, f"{name}.{scenario}.ticks")) as f:
        cpu_s = int(f.read().strip()) / clk
    events = max(r["events"], 1)
    return {
        "eps": r["events_per_sec"],
        "p50": r["latency_ms"]["p50"],
        "p99": r["latency_ms"]["p99"],
        "non2xx": r["requests"] - r["status_counts"]["2xx"],
        "requests": r["requests"],
        # CPU of sluice ingest and its Redis processes over the whole run
        # (warm-up included) per event measured.
        "cpu_us": cpu_s * 1e6 / events,
    }


def section(out, secs, single_rate, batch_rate, clk):
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        START,
        "## Durability levels: what each costs",
        "",
        f"`bash scripts/bench-durability.sh {secs}` ({date}): a release `sluice ingest` alone on a",
        "Redis of its own per level, the same fixed loads for each, "
        f"{secs} s each after a 2 s warm-up: `single` at {single_rate} requests/s (one event",
        f"a request) and `batch` at {batch_rate} requests/s of 100 gzip'd events. CPU is Sluice's",
        "and its Redis processes' (the replica's too) per event. Ratios are against the",
        "no-AOF run of the same session; on this shared 2-core machine, differences of",
        "10-20 % between runs are noise.",
        "",
    ]
    base = {s: load(out, "none", s, clk) for s in ("single", "batch")}
    for scenario in ("single", "batch"):
        lines += [
            f"`{scenario}`:",
            "",
            "| level | events/s | ratio | p50 ms | ratio | p99 ms | ratio | CPU µs/event | ratio | non-2xx |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        b = base[scenario]
        for name, words in LEVELS:
            try:
                m = load(out, name, scenario, clk)
            except FileNotFoundError:
                continue

            def ratio(k):
                return f"{m[k] / b[k]:.2f}" if b[k] else "-"

            lines.append(
                f"| {words} | {m['eps']:,.0f} | {ratio('eps')} | {m['p50']:.2f} | {ratio('p50')} "
                f"| {m['p99']:.2f} | {ratio('p99')} | {m['cpu_us']:.1f} | {ratio('cpu_us')} "
                f"| {m['non2xx']} of {m['requests']} |"
            )
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


def main():
    out, secs, single_rate, batch_rate, clk = sys.argv[1:6]
    text = section(out, secs, single_rate, batch_rate, int(clk))
    if "--write" in sys.argv:
        path = sys.argv[sys.argv.index("--write") + 1]
        with open(path) as f:
            doc = f.read()
        if START in doc and END in doc:
            head, rest = doc.split(START, 1)
            tail = rest.split(END, 1)[1]
            doc = head + text + tail
        else:
            doc = doc.rstrip("\n") + "\n\n" + text + "\n"
        with open(path, "w") as f:
            f.write(doc)
    print(text)


if __name__ == "__main__":
    main()

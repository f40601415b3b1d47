"""CPU used by each process (grouped by name; Sluice by tier) over a window:
usage: cpu_split.py <seconds>. Prints percent of one core, busiest first."""
import os
import sys
import time


def snapshot():
    total = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = open(f"/proc/{pid}/stat").read()
            cmd = open(f"/proc/{pid}/cmdline").read().split("\0")
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks = int(fields[11]) + int(fields[12])  # utime + stime
        if name == "sluice" and len(cmd) > 1:
            name = f"sluice {cmd[1]}"
        elif name.startswith("postgres"):
            name = "postgres"
        total[name] = total.get(name, 0) + ticks
    return total


secs = float(sys.argv[1])
before, start = snapshot(), time.monotonic()
time.sleep(secs)
after, took = snapshot(), time.monotonic() - start
hz = os.sysconf("SC_CLK_TCK")
used = {k: (v - before.get(k, 0)) / hz / took for k, v in after.items()}
for name, cores in sorted(used.items(), key=lambda kv: -kv[1])[:10]:
    if cores >= 0.01:
        print(f"{name:32s} {cores * 100:6.1f} % of a core")

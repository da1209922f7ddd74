#!/usr/bin/env python3
"""Parsing and reporting helper for bench/run.sh (poolserve issue 7); stdlib only.

  report.py check URL STATUS [LENGTH]   one GET; exit 1 unless the status (and body length) match
  report.py table RUNS.tsv RSS.tsv      print the markdown results table

RUNS.tsv has one line per wrk run, written by run.sh:
  scenario server round wrk_output_file time_file server_cpu_ticks clk_tck
where time_file holds "user sys wall" seconds of wrk (from /usr/bin/time -f '%U %S %e') and
server_cpu_ticks is the utime+stime delta of all the server's processes over that run.
RSS.tsv has "scenario server vmhwm_kib" per server, read after the scenario's last round.
Per server and scenario the table shows the median over rounds of each column (each column's
own median), and the req/s spread as min-max.
"""
import re
import statistics
import sys
import urllib.error
import urllib.request

SCENARIOS = {
    "S1": "2 KiB file, 64 keep-alive connections",
    "S2": "2 KiB file, `Connection: close`, 32 connections",
    "S3": "1 MiB file, 8 keep-alive connections",
    "S4": "2 KiB file, 512 keep-alive connections",
    "S5": "missing path (404), 64 keep-alive connections",
    "S6": "S1 with poolserve `--workers 1` and `--workers 2` (lighttpd again as the reference)",
}
UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


def check(url, status, length=None):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            code, body = r.status, r.read()
    except urllib.error.HTTPError as e:
        code, body = e.code, e.read()
    except OSError as e:
        sys.exit(f"check {url}: {e}")
    if code != int(status) or (length is not None and len(body) != int(length)):
        sys.exit(f"check {url}: got {code} with {len(body)} bytes, want {status}"
                 + (f" with {length} bytes" if length is not None else ""))


def ms(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not m:
        raise ValueError(f"latency {text!r}")
    return float(m.group(1)) * UNIT_MS[m.group(2)]


def parse_wrk(path):
    """The numbers we use from one `wrk --latency` output."""
    text = open(path).read()
    out = {"rps": None, "requests": 0, "p50": None, "p99": None, "non2xx": 0,
           "connect": 0, "read": 0, "write": 0, "timeout": 0}
    m = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    if m:
        out["rps"] = float(m.group(1))
    m = re.search(r"^\s*(\d+) requests in ", text, re.M)
    if m:
        out["requests"] = int(m.group(1))
    for pct, key in (("50", "p50"), ("99", "p99")):
        m = re.search(rf"^\s+{pct}(?:\.0+)?%\s+(\S+)", text, re.M)
        if m:
            out[key] = ms(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        out.update(zip(("connect", "read", "write", "timeout"), map(int, m.groups())))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        out["non2xx"] = int(m.group(1))
    if out["rps"] is None:
        sys.exit(f"cannot parse wrk output {path}:\n{text}")
    return out


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, spec):
    return "n/a" if v is None else format(v, spec)


def client_cpu(pct):
    """wrk above 90% CPU is the bottleneck: mark it, CPU per request decides there."""
    return "n/a" if pct is None else f"{pct:.0f}" + (" *" if pct > 90 else "")


def table(runs_path, rss_path):
    runs = {}  # (scenario, server) -> list of per-run dicts, in run order
    for line in open(runs_path):
        if not line.strip():
            continue
        scen, server, _rnd, wrk_file, time_file, ticks, clk_tck = line.split("\t")
        r = parse_wrk(wrk_file)
        user, system, wall = map(float, open(time_file).read().split()[-3:])
        r["client_cpu"] = 100.0 * (user + system) / wall if wall > 0 else None
        secs = int(ticks) / int(clk_tck)
        r["us_per_req"] = 1e6 * secs / r["requests"] if r["requests"] else None
        runs.setdefault((scen, server), []).append(r)
    rss = {}
    for line in open(rss_path):
        if line.strip():
            scen, server, kib = line.split("\t")
            rss[(scen, server)] = int(kib) if kib.strip().isdigit() else None

    head = ("| scenario | server | req/s (median) | spread min-max | vs lighttpd | p50 ms | p99 ms "
            "| server CPU µs/req | client CPU % | peak RSS MiB | errors (all rounds) |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for scen in sorted({s for s, _ in runs}):
        servers = [sv for s, sv in runs if s == scen]
        ref = med([r["rps"] for r in runs.get((scen, "lighttpd"), [])])
        for server in servers:
            rs = runs[(scen, server)]
            rps = [r["rps"] for r in rs]
            m = med(rps)
            sock = {k: sum(r[k] for r in rs) for k in ("connect", "read", "write", "timeout")}
            errs = [f"{k} {v}" for k, v in sock.items() if v]
            non2xx = sum(r["non2xx"] for r in rs)
            requests = sum(r["requests"] for r in rs)
            if scen == "S5":  # every answer is a 404 by design: count socket errors only
                if non2xx != requests:
                    errs.append(f"only {non2xx} of {requests} answers non-2xx")
            elif non2xx:
                errs.insert(0, f"non-2xx {non2xx}")
            kib = rss.get((scen, server))
            lines.append("| " + " | ".join([
                scen, server, fmt(m, ",.0f"),
                f"{min(rps):,.0f}-{max(rps):,.0f}",
                fmt(m / ref if ref else None, ".2f"),
                fmt(med(r["p50"] for r in rs), ".2f"),
                fmt(med(r["p99"] for r in rs), ".2f"),
                fmt(med(r["us_per_req"] for r in rs), ".1f"),
                client_cpu(med(r["client_cpu"] for r in rs)),
                fmt(kib / 1024 if kib is not None else None, ".1f"),
                ", ".join(errs) if errs else "0",
            ]) + " |")
    lines.append("")
    lines.append("\\* wrk above 90% CPU: the client, not the server, may be the limit;"
                 " compare server CPU µs/req there.")
    lines.append("")
    for scen in sorted({s for s, _ in runs}):
        lines.append(f"- {scen}: {SCENARIOS.get(scen, '')}")
    print("\n".join(lines))


if __name__ == "__main__":
    cmd, args = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("", [])
    if cmd == "check" and len(args) in (2, 3):
        check(*args)
    elif cmd == "table" and len(args) == 2:
        table(*args)
    else:
        sys.exit(__doc__)

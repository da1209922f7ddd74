#!/usr/bin/env python3
"""Parsing and reporting helper for bench/run.sh (poolserve issues 7 and 16); stdlib only.

  report.py check URL STATUS [LENGTH]   one GET; exit 1 unless the status (and body length) match
  report.py table RUNS.tsv RSS.tsv      print the markdown results table
  report.py syscalls SYSCALLS.tsv       print the system calls per request (and, for S2, per
                                        connection) tables
  report.py threads THREADS.tsv         print poolserve's CPU share by thread kind

RUNS.tsv has one line per wrk run, written by run.sh:
  scenario server round wrk_output_file time_file server_cpu_ticks clk_tck
where time_file holds "user sys wall" seconds of wrk (from /usr/bin/time -f '%U %S %e') and
server_cpu_ticks is the utime+stime delta of all the server's processes over that run.
RSS.tsv has "scenario server vmhwm_kib" per server, read after the scenario's last round.
Per server and scenario the table shows the median over rounds of each column (each column's
own median), and the req/s spread as min-max.

SYSCALLS.tsv has one line per counted run (a separate wrk run, not one of the timed rounds):
  scenario server tool wrk_output_file counts_file
where counts_file holds "name<TAB>calls" lines and one "TOTAL<TAB>calls" (every system call of
the server's processes during the run); calls are divided by the requests wrk counted there.
THREADS.tsv has one line per timed round of a poolserve server:
  scenario server round pid before_file after_file
where the files hold "tid<TAB>thread name<TAB>ns on CPU" per thread, read before and after the
round; the per-thread deltas are summed over rounds and grouped by thread kind.
"""
import re
import statistics
import sys
import urllib.error
import urllib.request

SCENARIOS = {
    "S1": "2 KiB file, 64 keep-alive connections",
    "S2": "2 KiB file, `Connection: close`, 32 connections (a new connection per request;"
          " nginx-deferred and lighttpd-deferred: TCP_DEFER_ACCEPT, like poolserve's default)",
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
    # A second poolserve (RULES=1, BASELINE_BIN) against poolserve, round by round: the two
    # ran back to back in each round, so the ratio of each pair cancels most of the drift
    # that the medians above keep (ticks are 10 ms: the 1-decimal table is too coarse for a
    # 5% bar).
    def total(xs):  # all rounds' CPU over all their requests, in µs
        return sum((x["us_per_req"] or 0) * x["requests"] for x in xs) / max(
            1, sum(x["requests"] for x in xs))

    pairs = []
    for (scen, server), rs in sorted(runs.items()):
        base = runs.get((scen, "poolserve"))
        if server == "poolserve" or not server.startswith("poolserve") or not base:
            continue
        ratios = [b["us_per_req"] / a["us_per_req"] for a, b in zip(base, rs)
                  if a["us_per_req"] and b["us_per_req"]]
        if not ratios:
            continue
        pairs.append(f"| {scen} | {server} | {med(ratios):.3f} | {min(ratios):.3f}-{max(ratios):.3f}"
                     f" | {total(rs) / total(base):.3f} |")
    if pairs:
        lines += ["", "Server CPU per request against poolserve in the same round:", "",
                  "| scenario | server | median of per-round ratios | range | all rounds' CPU / requests |",
                  "|---|---|---|---|---|"] + pairs
    print("\n".join(lines))


def read_counts(path):
    """name -> calls from a counts file; the "TOTAL" entry is every system call."""
    counts = {}
    for line in open(path):
        parts = line.split("\t")
        if len(parts) == 2 and parts[1].strip().isdigit():
            counts[parts[0]] = counts.get(parts[0], 0) + int(parts[1])
    return counts


def per(v, n, spec=".2f"):
    return "n/a" if v is None or not n else format(v / n, spec)


def syscalls(tsv_path):
    rows = []  # (scenario, server, tool, wrk dict or None, counts, total)
    for line in open(tsv_path):
        if not line.strip():
            continue
        scen, server, tool, wrk_file, counts_file = line.rstrip("\n").split("\t")
        try:
            r = parse_wrk(wrk_file)
        except SystemExit:
            r = None
        counts = read_counts(counts_file)
        named = {k: v for k, v in counts.items() if k != "TOTAL"}
        total = counts.get("TOTAL", sum(named.values()))
        other = total - sum(named.values())
        if other > 0.001 * total:  # calls outside the names counted one by one (perf only)
            named["other"] = other
        rows.append((scen, server, tool, r, named, total))
    if not rows:
        print("(no system-call runs succeeded; see the run's log)")
        return

    head = ("| scenario | server | requests (counted run) | req/s (counted run) | syscalls/req "
            "| futex/req | top 5 per request |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for scen, server, _tool, r, named, total in rows:
        n = r["requests"] if r else 0
        # the five most frequent calls, leaving out those below 0.005 per request
        top = sorted(((v, k) for k, v in named.items() if n and v / n >= 0.005),
                     reverse=True)[:5]
        lines.append("| " + " | ".join([
            scen, server, f"{n:,}" if r else "wrk output unreadable",
            fmt(r["rps"] if r else None, ",.0f"),
            per(total, n), per(named.get("futex", 0), n),
            ", ".join(f"{k} {per(v, n)}" for v, k in top) or "none",
        ]) + " |")

    # S2: one connection per request, so per request = per connection; the issue tracks
    # futex wake-ups and the accept path per connection explicitly
    s2 = [row for row in rows if row[0] == "S2"]
    if s2:
        groups = (
            ("futex", ("futex",)),
            ("accept", ("accept4", "accept")),
            ("read", ("recvfrom", "read", "readv", "recvmsg", "pread64")),
            ("write", ("writev", "write", "sendto", "sendmsg", "sendfile", "splice")),
            ("epoll", ("epoll_wait", "epoll_pwait", "epoll_pwait2", "epoll_ctl")),
            ("sockopt/ioctl", ("setsockopt", "getsockopt", "ioctl", "fcntl")),
            ("open/stat", ("openat", "newfstatat", "newfstat", "statx", "readlink")),
            ("close/shutdown", ("close", "shutdown")),
        )
        lines += ["", "S2, per connection (wrk's requests in the counted run; each on its own"
                  " connection):", ""]
        head = ("| server | connections | syscalls/conn | "
                + " | ".join(f"{g}/conn" for g, _ in groups) + " | rest/conn |")
        lines += [head, "|" + "---|" * head.count(" | ") + "---|"]
        for _scen, server, _tool, r, named, total in s2:
            n = r["requests"] if r else 0
            seen = 0
            cells = []
            for _g, names in groups:
                v = sum(named.get(k, 0) for k in names)
                seen += v
                cells.append(per(v, n))
            lines.append("| " + " | ".join(
                [server, f"{n:,}" if r else "n/a", per(total, n)] + cells
                + [per(max(total - seen, 0), n)]) + " |")
        lines += ["", "accept: accept4 and accept, including calls that find no connection (EAGAIN);"
                  " read: recvfrom, read, readv, recvmsg, pread64; write: writev, write, sendto,"
                  " sendmsg, sendfile, splice (on sockets and files alike); epoll: epoll_wait,"
                  " epoll_pwait(2), epoll_ctl; sockopt/ioctl: setsockopt, getsockopt, ioctl (e.g."
                  " FIONBIO), fcntl; open/stat: openat, newfstatat, newfstat, statx, readlink; rest:"
                  " every other call (see the top 5 above)."]
    print("\n".join(lines))


def read_threads(path):
    """tid -> (name, ns) from one thread_cpu snapshot."""
    out = {}
    for line in open(path):
        parts = line.rstrip("\n").split("\t")
        if len(parts) == 3 and parts[2].isdigit():
            out[parts[0]] = (parts[1], int(parts[2]))
    return out


def threads(tsv_path):
    agg = {}    # (scenario, server) -> {kind: ns}
    main_as_acceptor = set()
    for line in open(tsv_path):
        if not line.strip():
            continue
        scen, server, _rnd, pid, before_file, after_file = line.rstrip("\n").split("\t")
        before, after = read_threads(before_file), read_threads(after_file)
        has_acceptor = any(name == "acceptor" for name, _ in after.values())
        kinds = agg.setdefault((scen, server), {})
        for tid, (name, ns) in after.items():
            delta = ns - before.get(tid, (name, 0))[1]  # a thread born in the round: all of it
            if tid == pid:  # the main thread: in the poolserve binary it runs the accept loop
                kind = "main" if has_acceptor else "acceptor"
                if not has_acceptor:
                    main_as_acceptor.add(server)
            elif name.startswith("worker-"):
                kind = "workers"
            else:
                kind = name
            kinds[kind] = kinds.get(kind, 0) + max(delta, 0)
    head = ("| scenario | server | process CPU s (all rounds) | acceptor share | keeper share "
            "| workers share | other threads | acceptor saturates at (cores) "
            "| keeper saturates at (cores) |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]

    def share(kinds, kind, total):
        return kinds.get(kind, 0) / total if total else None

    def pct(v):
        return "n/a" if v is None else f"{100 * v:.1f}%"

    def cores(v):
        if v is None:
            return "n/a"
        return "never (no CPU)" if v == 0 else ">1000" if v < 0.001 else f"{1 / v:.1f}"

    for (scen, server), kinds in agg.items():
        total = sum(kinds.values())
        acc, keep, work = (share(kinds, k, total) for k in ("acceptor", "keeper", "workers"))
        others = sorted(((v, k) for k, v in kinds.items()
                         if k not in ("acceptor", "keeper", "workers")), reverse=True)
        lines.append("| " + " | ".join([
            scen, server, f"{total / 1e9:.2f}", pct(acc), pct(keep), pct(work),
            ", ".join(f"{k} {pct(v / total if total else None)}" for v, k in others) or "none",
            cores(acc), cores(keep),
        ]) + " |")
    lines.append("")
    if main_as_acceptor:
        lines += ["acceptor: the main thread (named after the binary), which runs the accept"
                  " loop in poolserve's binary; there is no separate acceptor thread there"
                  f" ({', '.join(sorted(main_as_acceptor))})."]
    lines += ["CPU of a thread that exited during a round is not counted (poolserve's threads"
              " live as long as the server)."]
    print("\n".join(lines))


if __name__ == "__main__":
    cmd, args = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("", [])
    if cmd == "check" and len(args) in (2, 3):
        check(*args)
    elif cmd == "table" and len(args) == 2:
        table(*args)
    elif cmd == "syscalls" and len(args) == 1:
        syscalls(*args)
    elif cmd == "threads" and len(args) == 1:
        threads(*args)
    else:
        sys.exit(__doc__)

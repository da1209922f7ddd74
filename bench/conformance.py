#!/usr/bin/env python3
"""Side-by-side HTTP/1.1 conformance run: poolserve vs nginx (and anything else on loopback).

Sends a battery of valid, malformed and smuggling-shaped requests as raw bytes to each
server, records every exchange, and has HTTPolice (a public HTTP validator, from PyPI) judge
them. Prints, per case, the status line(s) each server answered, then HTTPolice's notice
counts per server. Loopback only; every socket has a timeout; nothing runs for long.

Usage: bench/conformance.py NAME=HOST:PORT [NAME=HOST:PORT ...]
Needs: pip install httpolice 'bitstring<4' (httpolice 0.9 predates bitstring 4).
The server under test must serve a file /style.css (the demo root html/ has one).
"""
import os
import re
import socket
import subprocess
import sys
import tempfile

LOOPBACK = re.compile(r"^(127\.\d+\.\d+\.\d+|localhost|\[::1\])$")
READ_IDLE = 1.0  # seconds of silence that end a response stream


def cases(host):
    h = f"Host: {host}\r\n"
    big = "X-Big: " + "b" * 20000 + "\r\n"
    return [
        ("valid GET", f"GET /style.css HTTP/1.1\r\n{h}Connection: close\r\n\r\n"),
        ("valid HEAD", f"HEAD /style.css HTTP/1.1\r\n{h}Connection: close\r\n\r\n"),
        ("OPTIONS *", f"OPTIONS * HTTP/1.1\r\n{h}Connection: close\r\n\r\n"),
        ("DELETE (not allowed)", f"DELETE /style.css HTTP/1.1\r\n{h}Connection: close\r\n\r\n"),
        ("HTTP/1.0 without Host", "GET /style.css HTTP/1.0\r\n\r\n"),
        ("HTTP/1.1 without Host", "GET /style.css HTTP/1.1\r\nConnection: close\r\n\r\n"),
        ("two Host fields", f"GET /style.css HTTP/1.1\r\n{h}{h}Connection: close\r\n\r\n"),
        ("invalid Host", "GET /style.css HTTP/1.1\r\nHost: a b\r\nConnection: close\r\n\r\n"),
        ("Content-Length + Transfer-Encoding",
         f"POST /style.css HTTP/1.1\r\n{h}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("two different Content-Length",
         f"GET /style.css HTTP/1.1\r\n{h}Content-Length: 1\r\nContent-Length: 2\r\n\r\nxx"),
        ("Content-Length list", f"GET /style.css HTTP/1.1\r\n{h}Content-Length: 1, 1\r\n\r\nx"),
        ("Content-Length not a number", f"GET /style.css HTTP/1.1\r\n{h}Content-Length: +5\r\n\r\nxxxxx"),
        ("Transfer-Encoding on HTTP/1.0",
         "POST /style.css HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("final coding not chunked",
         f"POST /style.css HTTP/1.1\r\n{h}Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"),
        ("unknown coding", f"POST /style.css HTTP/1.1\r\n{h}Transfer-Encoding: foo, chunked\r\n\r\n0\r\n\r\n"),
        ("obs-fold", f"GET /style.css HTTP/1.1\r\n{h}X-A: 1\r\n  folded\r\nConnection: close\r\n\r\n"),
        ("space before colon", f"GET /style.css HTTP/1.1\r\n{h}X-A : 1\r\nConnection: close\r\n\r\n"),
        ("bare CR in a field", f"GET /style.css HTTP/1.1\r\n{h}X-A: 1\r2\r\nConnection: close\r\n\r\n"),
        ("NUL in a field", f"GET /style.css HTTP/1.1\r\n{h}X-A: 1\x002\r\nConnection: close\r\n\r\n"),
        ("lowercase method", f"get /style.css HTTP/1.1\r\n{h}Connection: close\r\n\r\n"),
        ("HTTP/2.0 in text", f"GET /style.css HTTP/2.0\r\n{h}Connection: close\r\n\r\n"),
        ("HTTP/0.9", "GET /style.css\r\n\r\n"),
        ("absolute-form", f"GET http://{host}/style.css HTTP/1.1\r\n{h}Connection: close\r\n\r\n"),
        ("request line of 9000 bytes", f"GET /{'a' * 9000} HTTP/1.1\r\n{h}Connection: close\r\n\r\n"),
        ("head of 20 KB", f"GET /style.css HTTP/1.1\r\n{h}{big}Connection: close\r\n\r\n"),
        ("GET with chunked body hiding a request",
         f"GET /style.css HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n"
         f"1e\r\nGET /secret HTTP/1.1\r\nH: x\r\n\r\n\r\n0\r\n\r\n"
         f"GET /style.css HTTP/1.1\r\n{h}Connection: close\r\n\r\n"),
        ("GET with Content-Length body hiding a request",
         f"GET /style.css HTTP/1.1\r\n{h}Content-Length: 24\r\n\r\nGET /secret HTTP/1.1\r\n\r\n"
         f"GET /style.css HTTP/1.1\r\n{h}Connection: close\r\n\r\n"),
        ("bad chunk size then a request",
         f"POST /style.css HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\nzz\r\n"
         f"GET /secret HTTP/1.1\r\n{h}\r\n"),
        ("Expect: 100-continue, no body sent",
         f"GET /style.css HTTP/1.1\r\n{h}Content-Length: 3\r\nExpect: 100-continue\r\n\r\n"),
        ("unknown expectation", f"GET /style.css HTTP/1.1\r\n{h}Expect: teapot\r\nConnection: close\r\n\r\n"),
        ("%00 in the path", f"GET /style.css%00.txt HTTP/1.1\r\n{h}Connection: close\r\n\r\n"),
        ("invalid escape", f"GET /%zz HTTP/1.1\r\n{h}Connection: close\r\n\r\n"),
        ("climb above the root", f"GET /../../etc/passwd HTTP/1.1\r\n{h}Connection: close\r\n\r\n"),
        ("encoded climb", f"GET /%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\n{h}Connection: close\r\n\r\n"),
        ("leading empty lines", f"\r\n\r\nGET /style.css HTTP/1.1\r\n{h}Connection: close\r\n\r\n"),
        ("bare LF line endings", f"GET /style.css HTTP/1.1\n{h.strip()}\nConnection: close\n\n"),
        ("pipelined: GET, HEAD, 404, 405",
         f"GET /style.css HTTP/1.1\r\n{h}\r\nHEAD /style.css HTTP/1.1\r\n{h}\r\n"
         f"GET /nope HTTP/1.1\r\n{h}\r\nPUT /x HTTP/1.1\r\n{h}Content-Length: 0\r\nConnection: close\r\n\r\n"),
    ]


def exchange(addr, raw):
    """Sends raw bytes, returns everything the server sent until it closes or goes quiet."""
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host.strip("[]"), int(port)), timeout=5)
    s.settimeout(READ_IDLE)
    try:
        s.sendall(raw.encode("latin-1"))
    except OSError:
        pass
    out = b""
    while True:
        try:
            chunk = s.recv(65536)
        except (socket.timeout, ConnectionResetError):
            break
        if not chunk:
            break
        out += chunk
    s.close()
    return out


def statuses(resp):
    return " ".join(m.decode() for m in re.findall(rb"HTTP/1\.[01] (\d{3})", resp)) or "(none)"


def main():
    servers = []
    for arg in sys.argv[1:]:
        name, _, addr = arg.partition("=")
        host = addr.rsplit(":", 1)[0]
        if not name or not addr or not LOOPBACK.match(host):
            sys.exit(f"conformance: {arg!r} is not NAME=HOST:PORT on loopback")
        servers.append((name, addr))
    if not servers:
        sys.exit(__doc__)
    results = {}
    workdir = tempfile.mkdtemp(prefix="conformance-")
    for name, addr in servers:
        os.makedirs(os.path.join(workdir, name))
        for i, (label, raw) in enumerate(cases(addr)):
            resp = exchange(addr, raw)
            results[(name, label)] = statuses(resp)
            path = os.path.join(workdir, name, f"{i:02d}.txt")
            with open(path, "wb") as f:
                f.write(f"{label}\r\n".encode())
                f.write(b"======== BEGIN INBOUND STREAM ========\r\n")
                f.write(raw.encode("latin-1"))
                f.write(b"======== BEGIN OUTBOUND STREAM ========\r\n")
                f.write(resp)
    names = [n for n, _ in servers]
    print("| case | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for label, _ in cases("h"):
        print(f"| {label} | " + " | ".join(results[(n, label)] for n in names) + " |")
    print()
    for name in names:
        files = sorted(os.path.join(workdir, name, f) for f in os.listdir(os.path.join(workdir, name)))
        run = subprocess.run(["httpolice", "-i", "combined", "-o", "text", *files],
                             capture_output=True, text=True, timeout=120)
        # Only notices about the server's responses count: the requests are hostile on purpose.
        notices, section = [], ""
        for line in run.stdout.splitlines():
            if line.startswith("------------"):
                section = line
            elif section.startswith("------------ response") and re.match(r"^[EC] \d+ ", line):
                notices.append(line)
        errors = sum(1 for n in notices if n.startswith("E"))
        print(f"HTTPolice on {name}'s responses: {errors} errors, {len(notices) - errors} comments")
        for notice in sorted(set(notices)):
            print(f"  {notice} (x{notices.count(notice)})")
    print(f"\n(exchanges kept in {workdir})")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Restart without a balancer (issue 19): this harness plays systemd's part. It owns one
listening socket for the whole run and starts poolserve with it as descriptor 3
(LISTEN_FDS=1, LISTEN_PID = the child's own pid, as sd_listen_fds(3) expects). Every
INTERVAL seconds it sends SIGTERM to the running process and at once starts a successor on
the same socket, RESTARTS times; connections that arrive while neither accepts wait in the
kernel's backlog. tests/socket_activation.rs drives clients against it.

    activation_harness.py BIN ROOT RESTARTS INTERVAL [poolserve options...]

Prints `port N` once the socket listens and `restart K: exit CODE` as each old process
exits; then waits for a line (or the end) on stdin, stops the last process, prints
`last: exit CODE` and `done`. Loopback only.
"""
import os
import signal
import socket
import subprocess
import sys
import time

LISTEN_FDS_START = 3
# As deep as Linux allows by default (net.core.somaxconn): connections wait here while no
# process accepts.
BACKLOG = 4096
# A process that has not drained by then is a failure, not a wait.
EXIT_DEADLINE = 30


def main():
    binary, root, restarts, interval = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    options = sys.argv[5:]
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(BACKLOG)
    if sock.fileno() != LISTEN_FDS_START:
        os.dup2(sock.fileno(), LISTEN_FDS_START)
    os.set_inheritable(LISTEN_FDS_START, True)
    print(f"port {sock.getsockname()[1]}", flush=True)

    env = dict(os.environ, LISTEN_FDS="1", RUST_LOG=os.environ.get("RUST_LOG", "warn"))

    def start():
        # `sh` learns its pid as $$ and keeps it through exec: the child's own LISTEN_PID.
        script = 'LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@"'
        return subprocess.Popen(
            ["sh", "-c", script, binary, root, "--access-log", "off", *options],
            env=env,
            pass_fds=[LISTEN_FDS_START],
            stdout=subprocess.DEVNULL,
        )

    current = start()
    try:
        for k in range(1, restarts + 1):
            time.sleep(interval)
            old = current
            old.send_signal(signal.SIGTERM)
            current = start()
            print(f"restart {k}: exit {old.wait(timeout=EXIT_DEADLINE)}", flush=True)
        sys.stdin.readline()
        current.send_signal(signal.SIGTERM)
        print(f"last: exit {current.wait(timeout=EXIT_DEADLINE)}", flush=True)
        print("done", flush=True)
    finally:
        # Whatever went wrong, no server outlives the harness.
        for proc in (current, locals().get("old")):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    main()

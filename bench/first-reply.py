#!/usr/bin/env python3
"""Drop-in start-up to first reply, and idle memory (benchmarks, not tests).

first-reply: starts `daemonproxy -i` (the program under a symlink named daemonproxy, as the .deb installs it)
N times, writes `echo<TAB>ready` to its stdin at once, and measures spawn -> the `ready` line on stdout (what
upstream daemonproxy tests allow 0.5 s for).
rss: starts PROGRAM ARGS with a fake NOTIFY_SOCKET, waits for READY=1, lets it idle 2 s and reads VmRSS and
VmHWM from /proc.

usage: bench/first-reply.py first-reply [--runs N] PROGRAM
       bench/first-reply.py rss PROGRAM [ARGS...]
e.g.   bench/first-reply.py first-reply --runs 20 artifacts/native/cachehost
       bench/first-reply.py rss artifacts/native/cachehost server -listen UNIX:/tmp/x.sock
"""
import os, select, signal, socket, statistics, subprocess, sys, tempfile, time, uuid


def first_reply(args):
    runs = 20
    if args[:1] == ["--runs"]:
        runs, args = int(args[1]), args[2:]
    link = os.path.join(tempfile.mkdtemp(prefix="chfr-"), "daemonproxy")
    os.symlink(os.path.abspath(args[0]), link)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.Popen([link, "-i"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        proc.stdin.write(b"echo\tready\n")
        proc.stdin.flush()
        buf = b""
        while b"ready\n" not in buf:
            if not select.select([proc.stdout], [], [], 30)[0]:
                raise SystemExit("no reply within 30 s")
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                raise SystemExit(f"exited with {proc.wait()} before replying")
            buf += chunk
        times.append((time.perf_counter() - start) * 1000)
        proc.stdin.close()
        proc.wait(30)
    times.sort()
    print(f"runs={runs} program={args[0]} (as daemonproxy -i)")
    print(f"first reply after ms: min={times[0]:.1f} median={statistics.median(times):.1f} max={times[-1]:.1f}")


def rss(args):
    name = "bench-rss-" + uuid.uuid4().hex
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind("\0" + name)
    listener.settimeout(60)
    control = os.path.join(tempfile.mkdtemp(prefix="chr-"), "control.sock")
    env = dict(os.environ, NOTIFY_SOCKET="@" + name, CacheHost__Control__Socket=control)
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while "READY=1" not in listener.recv(4096).decode().split("\n"):
            pass
        time.sleep(2)
        status = dict(line.split(":", 1) for line in open(f"/proc/{proc.pid}/status") if ":" in line)
        print(f"program={os.path.basename(args[0])} idle after READY: VmRSS={status['VmRSS'].strip()} VmHWM={status['VmHWM'].strip()}")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in ("first-reply", "rss"):
        print(__doc__)
        sys.exit(2)
    (first_reply if sys.argv[1] == "first-reply" else rss)(sys.argv[2:])

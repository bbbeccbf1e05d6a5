#!/usr/bin/env python3
"""First-reply latencies of the ProcessSupervisor role (issue 14 item 6), against the real built program.

For each of N fresh processes (`cachehost daemonproxy -S SOCK`, started and left idle for a moment so start-up
is over):
  connect          connect() to the first reply of `echo` on the new socket controller
  second           a second `echo` on the same connection
  2nd connection   connect() to the first reply on a second connection (the accept path without first-use costs)
  start->up        the first `service.start` to its `up` event
  terminate->exit  `terminate 0` to the process's exit (waitpid)

Usage: python3 bench/daemonproxy_first_reply.py [RUNS] [path/to/cachehost]
Build first: dotnet build src/CacheHost -c Release
"""
import os, socket, statistics, subprocess, sys, tempfile, time

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
runs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
program = sys.argv[2] if len(sys.argv) > 2 else os.path.join(root, "src/CacheHost/bin/Release/net10.0/cachehost")


def read_line(s, buf):
    while b"\n" not in buf[0]:
        data = s.recv(65536)
        if not data:
            raise EOFError
        buf[0] += data
    line, buf[0] = buf[0].split(b"\n", 1)
    return line.decode("latin-1")


def one(tmp, i):
    sock = os.path.join(tmp, f"s{i}")
    proc = subprocess.Popen([program, "daemonproxy", "-S", sock], stderr=subprocess.DEVNULL)
    while not os.path.exists(sock):
        time.sleep(0.01)
    time.sleep(1.0)  # "once the process is up": start-up finished, loop idle
    s = socket.socket(socket.AF_UNIX)
    buf = [b""]
    t0 = time.perf_counter()
    s.connect(sock)
    s.sendall(b"echo\tone\n")
    assert read_line(s, buf) == "one"
    t1 = time.perf_counter()
    s.sendall(b"echo\ttwo\n")
    assert read_line(s, buf) == "two"
    t2 = time.perf_counter()
    s.sendall(b"service.args\tsvc\t/bin/true\n")
    read_line(s, buf)
    t3 = time.perf_counter()
    s.sendall(b"service.start\tsvc\n")
    while not read_line(s, buf).startswith("service.state\tsvc\tup"):
        pass
    t4 = time.perf_counter()
    s2 = socket.socket(socket.AF_UNIX)
    buf2 = [b""]
    t5 = time.perf_counter()
    s2.connect(sock)
    s2.sendall(b"echo\tthree\n")
    while read_line(s2, buf2) != "three":
        pass
    t6 = time.perf_counter()
    s2.close()
    s.sendall(b"terminate\t0\n")
    proc.wait()
    t7 = time.perf_counter()
    s.close()
    return (t1 - t0) * 1000, (t2 - t1) * 1000, (t6 - t5) * 1000, (t4 - t3) * 1000, (t7 - t6) * 1000


def main():
    tmp = tempfile.mkdtemp(prefix="dpf-")
    rows = [one(tmp, i) for i in range(runs)]
    for name, col in zip(["connect->first reply", "second reply", "2nd connection reply", "start->up", "terminate->exit"], zip(*rows)):
        print(f"{name:22s} median {statistics.median(col):7.2f} ms  min {min(col):7.2f}  max {max(col):7.2f}  (n={len(col)})")


main()

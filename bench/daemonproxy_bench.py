#!/usr/bin/env python3
"""Benchmarks for the ProcessSupervisor role (daemonproxy drop-in).

Measures, against the real built program:
  1. child exit -> `down` event latency (the child is SIGKILLed by the benchmark; the clock starts at kill())
  2. `service.start` -> `up` event latency
  3. commands per second on one socket controller (pipelined `echo` lines, all replies read)
  4. resident memory with 1000 services defined and 100 running

Usage: python3 bench/daemonproxy_bench.py [path/to/cachehost]   (default: src/CacheHost/bin/Release/net10.0/cachehost)
Build first: dotnet build src/CacheHost -c Release
"""
import os, signal, socket, statistics, subprocess, sys, tempfile, time

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
program = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "src/CacheHost/bin/Release/net10.0/cachehost")


class Client:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX)
        for _ in range(200):
            try:
                self.s.connect(path)
                break
            except OSError:
                time.sleep(0.05)
        self.buf = b""

    def send(self, text):
        self.s.sendall(text.encode())

    def line(self):
        while b"\n" not in self.buf:
            data = self.s.recv(1 << 16)
            if not data:
                raise EOFError
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode("latin-1")

    def wait(self, pred):
        while True:
            l = self.line()
            if pred(l):
                return l


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


def main():
    tmp = tempfile.mkdtemp(prefix="dpb-")
    sock = os.path.join(tmp, "s")
    proc = subprocess.Popen([program, "daemonproxy", "-S", sock], stderr=subprocess.DEVNULL)
    try:
        c = Client(sock)
        c.send("service.args\tsvc\tsleep\t1000\n")
        c.wait(lambda l: l.startswith("service.args\tsvc"))
        starts, downs = [], []
        for _ in range(200):
            t0 = time.perf_counter()
            c.send("service.start\tsvc\n")
            up = c.wait(lambda l: l.startswith("service.state\tsvc\tup\t"))
            starts.append(time.perf_counter() - t0)
            pid = int(up.split("\t")[4])
            t0 = time.perf_counter()
            os.kill(pid, signal.SIGKILL)
            c.wait(lambda l: l.startswith("service.state\tsvc\tdown\t"))
            downs.append(time.perf_counter() - t0)
        ms = lambda v: f"{v * 1000:.2f} ms"
        print(f"service.start -> up   : median {ms(statistics.median(starts))}, p99 {ms(pct(starts, 99))} (n={len(starts)})")
        print(f"child exit -> down    : median {ms(statistics.median(downs))}, p99 {ms(pct(downs, 99))} (n={len(downs)})")

        n = 100_000
        payload = "".join(f"echo\t{i}\n" for i in range(n)).encode()
        t0 = time.perf_counter()
        import threading
        sender = threading.Thread(target=lambda: c.s.sendall(payload))
        sender.start()
        for i in range(n):
            c.line()
        sender.join()
        dt = time.perf_counter() - t0
        print(f"commands/s (1 socket) : {n / dt:,.0f} (100,000 pipelined echo commands in {dt:.2f} s)")

        rss0 = rss(proc.pid)
        batch = []
        for i in range(1000):
            batch.append(f"service.args\ts{i:04}\tsleep\t1000\n")
        c.send("".join(batch))
        c.send("echo\tdefined\n")
        c.wait(lambda l: l == "defined")
        c.send("".join(f"service.start\ts{i:04}\n" for i in range(100)))
        ups = 0
        while ups < 100:
            if "\tup\t" in c.line():
                ups += 1
        time.sleep(1)
        print(f"RSS idle              : {rss0 / 1024:.1f} MiB")
        print(f"RSS 1000 def/100 run  : {rss(proc.pid) / 1024:.1f} MiB")
        for i in range(100):
            c.send(f"service.signal\ts{i:04}\tKILL\n")
        c.send("echo\tdone\n")
        c.wait(lambda l: l == "done")
        time.sleep(0.5)
        c.send("terminate\t0\n")
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


if __name__ == "__main__":
    main()

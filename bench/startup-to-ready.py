#!/usr/bin/env python3
"""Start-up time to READY=1 (a benchmark, not a test).

Starts the program N times with NOTIFY_SOCKET pointing at a fake systemd listener (abstract datagram
socket) and measures the wall time from spawn to the READY=1 datagram, which the daemon sends only after
every role has bound its listeners. Each run is then stopped with SIGTERM.

usage: bench/startup-to-ready.py [--runs N] PROGRAM [ARGS...]
e.g.   bench/startup-to-ready.py --runs 20 src/CacheHost/bin/Release/net10.0/cachehost server -listen IP:127.0.0.1:0
       bench/startup-to-ready.py --runs 20 artifacts/publish/cachehost --CacheHost:Roles=CacheServer ...
"""
import os, signal, socket, statistics, subprocess, sys, tempfile, time, uuid

def main():
    args = sys.argv[1:]
    runs = 10
    if args[:1] == ["--runs"]:
        runs, args = int(args[1]), args[2:]
    if not args:
        print(__doc__)
        return 2
    times = []
    cpu = []
    tick = os.sysconf("SC_CLK_TCK")
    for i in range(runs):
        name = "bench-notify-" + uuid.uuid4().hex
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        listener.bind("\0" + name)
        control = os.path.join(tempfile.mkdtemp(prefix="chb-"), "control.sock")
        # The control socket goes through the environment so drop-in command lines (dc_server -listen …)
        # that accept no --Key=Value still get a private one.
        env = dict(os.environ, NOTIFY_SOCKET="@" + name, DOTNET_NOLOGO="1", CacheHost__Control__Socket=control)
        listener.settimeout(0.5)
        start = time.perf_counter()
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while True:
                try:
                    data = listener.recv(4096).decode()
                except socket.timeout:
                    if proc.poll() is not None:
                        raise SystemExit(f"the program exited with {proc.returncode} before READY=1")
                    if time.perf_counter() - start > 60:
                        raise SystemExit("no READY=1 within 60 s")
                    continue
                if "READY=1" in data.split("\n"):
                    times.append((time.perf_counter() - start) * 1000)
                    # CPU the process used until READY (user+system): on a loaded machine the wall time is
                    # mostly waiting for a core, this is not.
                    fields = open(f"/proc/{proc.pid}/stat").read().rsplit(")", 1)[1].split()
                    cpu.append((int(fields[11]) + int(fields[12])) * 1000 / tick)
                    break
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
            listener.close()
    times.sort()
    print(f"runs={runs} program={os.path.basename(args[0])}")
    print(f"READY after ms: min={times[0]:.0f} median={statistics.median(times):.0f} "
          f"p90={times[int(len(times) * 0.9) - 1 if len(times) >= 10 else -1]:.0f} max={times[-1]:.0f}")
    cpu.sort()
    print(f"CPU (user+sys) until READY ms: min={cpu[0]:.0f} median={statistics.median(cpu):.0f} max={cpu[-1]:.0f} "
          f"(load average {open('/proc/loadavg').read().split()[0]})")
    return 0

if __name__ == "__main__":
    sys.exit(main())

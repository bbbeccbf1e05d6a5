#!/usr/bin/env python3
"""Start-up time to READY=1 (a benchmark, not a test).

Starts the program N times with NOTIFY_SOCKET pointing at a fake systemd listener (abstract datagram
socket) and measures the wall time from spawn to the READY=1 datagram, which the daemon sends only after
every role has bound its listeners. Each run is then stopped with SIGTERM.

usage: bench/startup-to-ready.py [--runs N] PROGRAM [ARGS...]
e.g.   bench/startup-to-ready.py --runs 20 src/CacheHost/bin/Release/net10.0/cachehost --CacheHost:Roles=Probe --CacheHost:Probe:Listen=IP:127.0.0.1:0
       bench/startup-to-ready.py --runs 20 artifacts/publish/cachehost --CacheHost:Roles=Probe ...
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
    for i in range(runs):
        name = "bench-notify-" + uuid.uuid4().hex
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        listener.bind("\0" + name)
        listener.settimeout(60)
        control = os.path.join(tempfile.mkdtemp(prefix="chb-"), "control.sock")
        env = dict(os.environ, NOTIFY_SOCKET="@" + name, DOTNET_NOLOGO="1")
        start = time.perf_counter()
        proc = subprocess.Popen(args + ["--CacheHost:Control:Socket=" + control], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while True:
                data = listener.recv(4096).decode()
                if "READY=1" in data.split("\n"):
                    times.append((time.perf_counter() - start) * 1000)
                    break
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
            listener.close()
    times.sort()
    print(f"runs={runs} program={os.path.basename(args[0])}")
    print(f"READY after ms: min={times[0]:.0f} median={statistics.median(times):.0f} "
          f"p90={times[int(len(times) * 0.9) - 1 if len(times) >= 10 else -1]:.0f} max={times[-1]:.0f}")
    return 0

if __name__ == "__main__":
    sys.exit(main())

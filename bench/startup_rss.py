#!/usr/bin/env python3
"""Start-up time and idle RSS of mesh-proxy.

Starts the proxy N times on a config, measures the time from exec until its
first listener accepts a TCP connection, and its VmRSS after 300 ms idle.

    python3 bench/startup_rss.py target/release/mesh-proxy examples/quickstart.yaml 10000
"""
import socket
import statistics
import subprocess
import sys
import time


def main() -> None:
    binary, config, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    runs = int(sys.argv[4]) if len(sys.argv) > 4 else 20
    times, rss = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.Popen([binary, "-c", config, "-l", "warn"])
        try:
            while True:
                s = socket.socket()
                try:
                    s.connect(("127.0.0.1", port))
                    break
                except OSError:
                    if proc.poll() is not None:
                        sys.exit(f"mesh-proxy exited with {proc.returncode}")
                    time.sleep(0.0005)
                finally:
                    s.close()
            times.append((time.perf_counter() - t0) * 1000)
            time.sleep(0.3)
            with open(f"/proc/{proc.pid}/status") as f:
                rss.append(next(int(l.split()[1]) for l in f if l.startswith("VmRSS")))
        finally:
            proc.terminate()
            proc.wait()
    print(f"start-up to first accept: median {statistics.median(times):.1f} ms, max {max(times):.1f} ms ({runs} runs)")
    print(f"idle RSS: median {statistics.median(rss) / 1024:.1f} MiB, max {max(rss) / 1024:.1f} MiB")


if __name__ == "__main__":
    main()

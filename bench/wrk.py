"""wrk (Debian package ``wrk``) as the external load generator, and the run statistics.

Every run is ``wrk -t1 -c<N> -d<s>s -s <script>`` against one URL: keep-alive HTTP/1.1, one
thread, closed loop. The Lua script POSTs JSON bodies read from a file (one per line, rotated)
and adds the headers the target needs (``x-api-key`` for the API). Its ``done()`` hook prints one
JSON line with the request count, the duration, socket errors, non-2xx answers and the latency
percentiles from wrk's own histogram, which is all this module reads.

Paced runs (``rate``): wrk 4 has no ``-R``, so the script's ``delay()`` hook holds each request
until its slot on a fixed schedule (monotonic clock through LuaJIT's FFI). Each wrk thread keeps
its own schedule of ``rate / threads`` requests per second, shared by that thread's connections;
a connection takes the next slot when its previous response is complete, so with enough
connections this is an open loop at fixed intervals, one schedule per thread (as each tester
Lambda keeps its own), the threads interleaved (thread k starts k / threads of an interval
later, as the testers do). The wait is not part of the measured latency.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

INSTALL_HINT = "wrk is not installed: install it with `apt-get install wrk` (Debian/Ubuntu)"
RESULT_MARKER = "BENCH-RESULT "
REQUEST_TIMEOUT = "10s"

LUA_SCRIPT = r"""
local bodies = {}
for line in io.lines(os.getenv("BENCH_BODIES")) do
  if line ~= "" then bodies[#bodies + 1] = line end
end
local rate = tonumber(os.getenv("BENCH_RATE") or "0") or 0
local threads = tonumber(os.getenv("BENCH_THREADS") or "1") or 1
local created = 0
position = 0  -- this thread's place among the threads, set by setup()
local api_key = os.getenv("BENCH_API_KEY") or ""
local next_body = 0

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json"
if api_key ~= "" then wrk.headers["x-api-key"] = api_key end

request = function()
  next_body = next_body % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[next_body])
end

setup = function(thread)
  thread:set("position", created)
  created = created + 1
end

if rate > 0 then
  local ffi = require("ffi")
  ffi.cdef[[
    typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
    int clock_gettime(int clock_id, bench_timespec *tp);
  ]]
  local now_ts, interval_ms, next_due = ffi.new("bench_timespec"), 1000 / rate, nil
  local function now_ms()
    ffi.C.clock_gettime(1, now_ts)  -- CLOCK_MONOTONIC
    return tonumber(now_ts.tv_sec) * 1000 + tonumber(now_ts.tv_nsec) / 1e6
  end
  delay = function()
    local now = now_ms()
    if not next_due then  -- the threads interleave: thread k starts k / threads of an interval in
      local offset = interval_ms * position / threads
      next_due = math.ceil((now - offset) / interval_ms) * interval_ms + offset
    end
    local wait = next_due - now
    next_due = next_due + interval_ms
    if wait > 0 then return wait end
    return 0
  end
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH-RESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, ' ..
    '"p99_us": %d, "max_us": %d, "connect_errors": %d, "read_errors": %d, ' ..
    '"write_errors": %d, "timeouts": %d, "non_2xx": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.timeout, e.status))
end
"""


class WrkMissing(RuntimeError):
    """wrk is not on PATH."""


class WrkFailed(RuntimeError):
    """wrk exited non-zero or printed no result line."""


def require_wrk() -> str:
    path = shutil.which("wrk")
    if not path:
        raise WrkMissing(INSTALL_HINT)
    return path


def version() -> str:
    """``wrk 4.1.0 [epoll] ...``: wrk prints its version with usage and exits 1 on ``-v``."""
    out = subprocess.run([require_wrk(), "-v"], capture_output=True, text=True)
    first = (out.stdout or out.stderr).strip().splitlines()
    return first[0].split(" Copyright")[0] if first else "unknown"


@dataclass(frozen=True)
class Load:
    """What to send: a URL, a file of JSON bodies (one per line) and an optional API key."""

    url: str
    bodies: Path
    api_key: str | None = None


def write_bodies(path: Path, documents: list) -> Path:
    """One compact JSON document per line, as the Lua script reads them."""
    if not documents:
        raise ValueError("no request bodies")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(doc, separators=(",", ":")) + "\n" for doc in documents))
    return path


def parse_result(stdout: str) -> dict:
    """The figures of one run from wrk's output (the ``done()`` line); latencies in ms."""
    for line in stdout.splitlines():
        if line.startswith(RESULT_MARKER):
            raw = json.loads(line[len(RESULT_MARKER) :])
            break
    else:
        raise WrkFailed(f"no {RESULT_MARKER.strip()} line in wrk's output:\n{stdout[-2000:]}")
    seconds = raw["duration_us"] / 1e6
    errors = sum(
        raw[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts", "non_2xx")
    )
    return {
        "requests": raw["requests"],
        "seconds": round(seconds, 3),
        "req_per_s": round(raw["requests"] / seconds, 1) if seconds > 0 else 0.0,
        "p50_ms": raw["p50_us"] / 1000,
        "p90_ms": raw["p90_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "errors": errors,
        "non_2xx": raw["non_2xx"],
    }


def run(load: Load, connections: int, seconds: float, rate: float = 0.0,
        threads: int = 1) -> dict:
    """One wrk run; ``rate`` > 0 paces it to that many requests per second in total."""
    wrk = require_wrk()
    if connections < threads or threads < 1 or seconds <= 0:
        raise ValueError(f"need connections >= threads >= 1 and seconds > 0, got {connections}, "
                         f"{threads}, {seconds}")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(LUA_SCRIPT)
    env = dict(os.environ, BENCH_BODIES=str(load.bodies), BENCH_RATE=f"{rate / threads:.3f}",
               BENCH_THREADS=str(threads))
    env["BENCH_API_KEY"] = load.api_key or ""
    command = [wrk, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
               f"--timeout={REQUEST_TIMEOUT}", "-s", script.name, load.url]
    try:
        out = subprocess.run(command, capture_output=True, text=True, env=env,
                             timeout=seconds + 60)
    finally:
        os.unlink(script.name)
    if out.returncode != 0:
        raise WrkFailed(f"{' '.join(command)} exited {out.returncode}: {out.stderr.strip()}")
    result = parse_result(out.stdout)
    result.update(connections=connections, threads=threads, paced_rate=rate)
    return result


def spread(values: list[float]) -> dict:
    """Median and min-max of one figure over runs."""
    if not values:
        raise ValueError("no runs")
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
            "max": round(max(values), 3), "runs": [round(v, 3) for v in values]}


def summarize(runs: list[dict]) -> dict:
    """Median and min-max of req/s, p50 and p99 over runs, plus the total error count."""
    return {
        "req_per_s": spread([r["req_per_s"] for r in runs]),
        "p50_ms": spread([r["p50_ms"] for r in runs]),
        "p99_ms": spread([r["p99_ms"] for r in runs]),
        "requests": sum(r["requests"] for r in runs),
        "errors": sum(r["errors"] for r in runs),
        "runs": len(runs),
    }


def measure(loads: dict[str, Load], connections: tuple[int, ...], runs: int, seconds: float,
            warmup: float, log=print) -> dict[str, dict]:
    """Each load at each connection count, ``runs`` times, interleaved so that machine noise
    (this is a shared 2-core box) falls on every load alike; a warm-up run per load first."""
    for name, load in loads.items():
        log(f"[bench] warm-up {name}: {warmup:g} s at 4 connections")
        run(load, 4, warmup)
    results: dict[str, dict[int, list]] = {name: {c: [] for c in connections} for name in loads}
    for index in range(runs):
        for name, load in loads.items():
            for c in connections:
                result = run(load, c, seconds)
                results[name][c].append(result)
                log(f"[bench] {name} c={c} run {index + 1}/{runs}: {result['req_per_s']:.0f} req/s,"
                    f" p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms,"
                    f" errors {result['errors']}")
    return {name: {f"c{c}": summarize(per_c[c]) for c in connections}
            for name, per_c in results.items()}

"""The app under several users at once: latency per action, errors and server memory over time.

Why (issue 13): the app is meant for a group's shared server. This serves it on the loopback
interface (``python -m battgen.ui.serve``, as ``make app`` does), opens N headless Debian
chromium sessions through the DevTools driver of the browser tests, and has each one do what a
scientist does, in a loop, for a bounded time:

* switch pages through the sidebar (every page in turn: Home, Screening, AFM translation,
  SEI explorer, Structures);
* screen with new knobs (Screening → "New seed": a new seed and a fresh generation);
* translate an example (AFM translation → "Upload" then back to "Example": the example is
  translated again);
* browse structures (Structures → the other state of the material: a new 3D structure);
* with ``--kmc``, run a 50×50 KMC simulation (SEI explorer → "Run simulation").

Latency is from the click to the page drawn (Streamlit's run finished and the text settled),
minus the settle window; the driver polls every 0.2 s, which bounds the resolution. Before the
sessions start, one untimed pass visits every page (model loads, torch import), reported as
warm-up. An error is an action that timed out, failed, or left a Streamlit exception on the page.
The server's RSS (its process tree) is sampled every few seconds. ``--cpu-hog`` keeps one core
busy throughout (another user's job).

Targets (issue 13), with 8 sessions: p95 screening <= 2 s, p95 page switch <= 1.5 s, 0 errors,
RSS flat after warm-up.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_load.py [--sessions 8] [--minutes 5] [--cpu-hog] [--kmc]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.timing import cpu_hog
from tests.browser.driver import exception_blocks, open_page, require_chromium, running_streamlit

MAX_SESSIONS = 16
MAX_MINUTES = 60
ACTION_TIMEOUT_MS = 120_000
SETTLE_MS = 200
RSS_EVERY_S = 5.0
# Sidebar title -> text that shows the page is drawn.
PAGES = {
    "Home": "Checkpoints",
    "Screening": "Working ion",
    "AFM translation": "Stack from",
    "SEI explorer": "Run simulation",
    "Structures": "Distributions",
    "Design": "How well does it aim",
}
SIDEBAR_LINKS = '[data-testid="stSidebarNav"] a'


@dataclass
class Results:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, action: str, seconds: float | None, error: str | None = None) -> None:
        with self.lock:
            if error is None:
                self.latencies[action].append(seconds)
            else:
                self.errors[action].append(error)


# --------------------------------------------------------------------------- server memory


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = defaultdict(list)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            tree[ppid].append(int(entry.name))
    return tree


def server_pid(port: int) -> int:
    """The streamlit server this benchmark started (found by its port on the command line)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"battgen.ui.serve" in command and str(port).encode() in command:
                return int(entry.name)
    raise RuntimeError(f"no battgen.ui.serve process on port {port}")


def tree_rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its descendants (worker processes of a job pool included)."""
    tree, todo, total = _children(), [pid], 0
    while todo:
        current = todo.pop()
        todo += tree.get(current, [])
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and its living descendants."""
    tree, todo, total = _children(), [pid], 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    while todo:
        current = todo.pop()
        todo += tree.get(current, [])
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def machine_busy_s() -> float:
    """CPU seconds all cores spent not idle since boot (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def sample_rss(pid: int, started: float, stop: threading.Event, samples: list[tuple[float, float]]) -> None:
    while not stop.is_set():
        samples.append((time.monotonic() - started, tree_rss_mb(pid)))
        stop.wait(RSS_EVERY_S)


# --------------------------------------------------------------------------- one user


def timed(page, results: Results, action: str, clicks: list[tuple[str, str]], drawn_text: str) -> None:
    """Click each (text, selector) in turn, wait until ``drawn_text`` is drawn; record the time."""
    start = time.monotonic()
    try:
        for text, selector in clicks:
            page.click(text, selector=selector, wait_ms=ACTION_TIMEOUT_MS)
        page.wait_drawn(wait_ms=ACTION_TIMEOUT_MS, settle_ms=SETTLE_MS, wait_for_text=drawn_text)
        seconds = time.monotonic() - start - SETTLE_MS / 1000
        shown = exception_blocks(page.dom())
        results.record(action, seconds, f"exception on the page: {shown[0][:200]}" if shown else None)
    except Exception as exc:  # a timed-out or failed action is an error of the run, not of the benchmark
        results.record(action, None, f"{type(exc).__name__}: {str(exc)[:200]}")


def switch(page, results: Results, title: str) -> None:
    timed(page, results, "page switch", [(title, SIDEBAR_LINKS)], PAGES[title])


def page_work(results: Results, rng: random.Random, kmc: bool) -> dict:
    """The action done on each page after switching to it, by sidebar title."""
    work = {
        "Screening": lambda page: timed(page, results, "screen (new seed)", [("New seed", "button")],
                                        "Ranked candidates"),
        "AFM translation": lambda page: timed(page, results, "translate an example",
                                              [("Upload", "label"), ("Example", "label")], "Formula guess"),
        "Structures": lambda page: timed(page, results, "browse structures", [(rng.choice(["Charged", "Discharged"]),
                                                                               "label")], "Voltage profile"),
    }
    if kmc:
        work["SEI explorer"] = lambda page: timed(page, results, "KMC 50×50", [("Run simulation", "button")],
                                                  "Done in")
    return work


def user(base_url: str, results: Results, deadline: float, seed: int, kmc: bool) -> None:
    rng = random.Random(seed)
    work = page_work(results, rng, kmc)
    try:
        with open_page(base_url, wait_ms=ACTION_TIMEOUT_MS, wait_for_text=PAGES["Home"]) as page:
            while time.monotonic() < deadline:
                order = list(PAGES)
                rng.shuffle(order)
                for title in order:
                    if time.monotonic() >= deadline:
                        break
                    switch(page, results, title)
                    if title in work and time.monotonic() < deadline:
                        work[title](page)
    except Exception as exc:  # chromium could not start or its connection broke
        results.record("session", None, f"{type(exc).__name__}: {str(exc)[:200]}")


def warm_up(base_url: str, kmc: bool) -> tuple[float, Results]:
    """Every page and every action once, untimed in the report: first model loads and imports."""
    start, results = time.monotonic(), Results()
    work = page_work(results, random.Random(0), kmc)
    with open_page(base_url, wait_ms=600_000, wait_for_text=PAGES["Home"]) as page:
        for title in PAGES:
            switch(page, results, title)
            if title in work:
                work[title](page)
    return time.monotonic() - start, results


# --------------------------------------------------------------------------- report


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def report(args, results: Results, rss: list[tuple[float, float]], warm_s: float, rss_after_warm: float) -> dict:
    actions = sorted(set(results.latencies) | set(results.errors))
    rows = []
    for action in actions:
        values = results.latencies.get(action, [])
        rows.append({"action": action, "n": len(values), "errors": len(results.errors.get(action, [])),
                     "p50_s": statistics.median(values) if values else None,
                     "p95_s": percentile(values, 0.95) if values else None,
                     "max_s": max(values) if values else None})
    print(f"Load: {args.sessions} sessions × {args.minutes:g} min, {'one CPU hog, ' if args.cpu_hog else ''}"
          f"{os.cpu_count()} cores; warm-up pass {warm_s:.1f} s")
    print(f"{'action':<24} {'n':>5} {'errors':>6} {'p50 s':>7} {'p95 s':>7} {'max s':>7}")
    for r in rows:
        fmt = lambda v: f"{v:>7.2f}" if v is not None else f"{'—':>7}"  # noqa: E731
        print(f"{r['action']:<24} {r['n']:>5} {r['errors']:>6} {fmt(r['p50_s'])} {fmt(r['p95_s'])} {fmt(r['max_s'])}")
    for action, messages in results.errors.items():
        for message in sorted(set(messages))[:3]:
            print(f"  error in {action}: {message}")
    print("server RSS (MB) over time:", ", ".join(f"{t:.0f}s {mb:.0f}" for t, mb in rss[:: max(1, len(rss) // 12)]))
    final = rss[-1][1] if rss else float("nan")
    print(f"server RSS: {rss_after_warm:.0f} MB after warm-up, {final:.0f} MB at the end "
          f"({final - rss_after_warm:+.0f} MB), peak {max((mb for _, mb in rss), default=float('nan')):.0f} MB")
    by_action = {r["action"]: r for r in rows}

    def verdict(action: str, limit: float) -> str:
        p95 = (by_action.get(action) or {}).get("p95_s")
        return "no data" if p95 is None else f"{'met' if p95 <= limit else 'MISSED'}: {p95:.2f} s"

    total_errors = sum(r["errors"] for r in rows)
    print(f"targets: p95 screening <= 2 s ({verdict('screen (new seed)', 2.0)}); p95 page switch <= 1.5 s "
          f"({verdict('page switch', 1.5)}); 0 errors ({'met' if total_errors == 0 else 'MISSED'}: {total_errors})")
    return {"sessions": args.sessions, "minutes": args.minutes, "cpu_hog": args.cpu_hog, "warm_up_s": warm_s,
            "actions": rows, "errors": {k: v for k, v in results.errors.items()},
            "rss_mb": rss, "rss_after_warm_up_mb": rss_after_warm}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=8, help=f"concurrent browser sessions (1–{MAX_SESSIONS})")
    parser.add_argument("--minutes", type=float, default=5.0, help=f"duration of the load (at most {MAX_MINUTES})")
    parser.add_argument("--cpu-hog", action="store_true", help="keep one core busy with another process")
    parser.add_argument("--kmc", action="store_true", help="include 50×50 KMC runs on the SEI explorer")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    args = parser.parse_args()
    if not 1 <= args.sessions <= MAX_SESSIONS:
        parser.error(f"--sessions must be between 1 and {MAX_SESSIONS}")
    if not 0 < args.minutes <= MAX_MINUTES:
        parser.error(f"--minutes must be above 0 and at most {MAX_MINUTES}")
    require_chromium()

    with running_streamlit("app.py", timeout_s=300) as base_url:
        pid = server_pid(int(base_url.rsplit(":", 1)[1]))
        warm_s, warm_results = warm_up(base_url, args.kmc)
        for action, messages in warm_results.errors.items():
            print(f"warm-up error in {action}: {messages[0]}")
        rss_after_warm = tree_rss_mb(pid)
        results, samples, stop = Results(), [], threading.Event()
        server_cpu0, machine_cpu0 = tree_cpu_s(pid), machine_busy_s()
        with cpu_hog(args.cpu_hog):
            started = time.monotonic()
            sampler = threading.Thread(target=sample_rss, args=(pid, started, stop, samples), daemon=True)
            sampler.start()
            deadline = started + args.minutes * 60
            users = [threading.Thread(target=user, args=(base_url, results, deadline, args.seed + i, args.kmc))
                     for i in range(args.sessions)]
            for thread in users:
                thread.start()
            for thread in users:
                # An action in flight at the deadline may take up to its own timeout to finish.
                thread.join(timeout=args.minutes * 60 + ACTION_TIMEOUT_MS / 1000 + 120)
            stop.set()
            sampler.join()
            elapsed = time.monotonic() - started
        # Where the cores went: the server (and its job workers) against everything else on this
        # machine (the browsers this benchmark drives, the hog), so a latency can be read fairly.
        cpu = {"elapsed_s": elapsed, "available_core_s": elapsed * (os.cpu_count() or 1),
               "machine_busy_core_s": machine_busy_s() - machine_cpu0, "server_core_s": tree_cpu_s(pid) - server_cpu0}
    out = report(args, results, samples, warm_s, rss_after_warm)
    out["cpu"] = cpu
    print(f"CPU during the load: {cpu['machine_busy_core_s']:.0f} of {cpu['available_core_s']:.0f} core-s busy; "
          f"server and its job workers {cpu['server_core_s']:.0f} core-s "
          f"({cpu['server_core_s'] / max(cpu['machine_busy_core_s'], 1e-9):.0%} of the busy time), the rest "
          "browsers, this benchmark and the hog")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()

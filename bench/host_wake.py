"""The host's own wake-up lateness, for bench/host_wake.ts.

One process per CPU: pinned to it, at real-time priority (SCHED_FIFO 50) when
permitted, it sleeps to a fixed schedule (every PERIOD ms) and measures how
late each wake-up came. Nothing in the machine's own processes can delay a
real-time thread much, so what it measures is the host's (a virtual CPU
descheduled or slow to wake) and the kernel's own (interrupts, network
processing). Every 100 ms it prints one JSON line:
{"t": epoch ms at the window's end, "cpu", "wakes", "gt05", "gt1", "gt2",
"gt5" (wake-ups more than 0.5, 1, 2 and 5 ms late), "max" (ms)}.
The first line is {"ready": true, "cpu", "policy": "fifo" | "other"}.

It stops by itself after MAX_SECONDS, or when its parent goes away.

usage: python3 host_wake.py CPU_INDEX PERIOD_MS MAX_SECONDS (among the CPUs it may use)
"""

import json
import os
import sys
import time

WINDOW_S = 0.1
# a stall longer than this restarts the schedule (no burst of catch-up wake-ups after it)
RESTART_AFTER_MS = 50.0


def main() -> None:
    index, period_ms, max_seconds = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
    period = period_ms / 1000
    # the index-th CPU this process may run on (a container's CPUs need not start at 0)
    cpu = sorted(os.sched_getaffinity(0))[index]
    os.sched_setaffinity(0, {cpu})
    policy = "fifo"
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(50))
    except PermissionError:
        policy = "other"
    parent = os.getppid()
    out = sys.stdout
    out.write(json.dumps({"ready": True, "cpu": cpu, "policy": policy}) + "\n")
    out.flush()
    mono, wall = time.monotonic, time.time
    start = due = mono()
    window_end = due + WINDOW_S
    wakes = gt05 = gt1 = gt2 = gt5 = 0
    worst = 0.0
    while True:
        due += period
        left = due - mono()
        if left > 0:
            time.sleep(left)
        now = mono()
        late = (now - due) * 1000
        wakes += 1
        gt05 += late > 0.5
        gt1 += late > 1
        gt2 += late > 2
        gt5 += late > 5
        worst = max(worst, late)
        if late > RESTART_AFTER_MS:
            due = now
        if now >= window_end:
            line = {"t": round(wall() * 1000, 1), "cpu": cpu, "wakes": wakes, "gt05": gt05,
                    "gt1": gt1, "gt2": gt2, "gt5": gt5, "max": round(worst, 3)}
            out.write(json.dumps(line) + "\n")
            out.flush()
            wakes = gt05 = gt1 = gt2 = gt5 = 0
            worst = 0.0
            window_end = max(window_end + WINDOW_S, now + WINDOW_S / 2)
            if now - start > max_seconds or os.getppid() != parent:
                return


if __name__ == "__main__":
    try:
        main()
    except (BrokenPipeError, KeyboardInterrupt):
        pass

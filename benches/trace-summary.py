#!/usr/bin/env python3
"""Summarises a `kbuild run --profile FILE` trace: where the wall time of a build went.

    python3 benches/trace-summary.py trace.json

Prints the run's wall time, how busy each worker track was, the longest actions, and the
stretches where fewer workers than the run had were busy (what a faster build would fill).
"""
import json
import sys


def main(path):
    events = json.load(open(path))["traceEvents"]
    slices = [e for e in events if e.get("ph") == "X"]
    if not slices:
        print("no executed actions in the trace")
        return
    start = min(e["ts"] for e in slices)
    end = max(e["ts"] + e["dur"] for e in slices)
    wall = (end - start) / 1e6
    tracks = sorted({e["tid"] for e in slices})
    print(f"{len(slices)} executed actions in {wall:.1f} s on {len(tracks)} worker track(s)")
    for tid in tracks:
        busy = sum(e["dur"] for e in slices if e["tid"] == tid) / 1e6
        print(f"  worker {tid}: busy {busy:.1f} s ({100 * busy / wall:.0f}%)")
    print("longest actions:")
    for e in sorted(slices, key=lambda e: -e["dur"])[:8]:
        share = 100 * e["dur"] / 1e6 / wall
        print(f"  {e['dur'] / 1e6:8.1f} s  {share:3.0f}%  {e['name']}  ({e['args']['reason']})")
    # Time with fewer busy workers than tracks: the build waited on a chain.
    points = sorted([(e["ts"], 1) for e in slices] + [(e["ts"] + e["dur"], -1) for e in slices])
    busy, last, alone = 0, start, 0.0
    for ts, step in points:
        if busy < len(tracks):
            alone += ts - last
        busy += step
        last = ts
    print(f"fewer than {len(tracks)} workers busy for {alone / 1e6:.1f} s "
          f"({100 * alone / 1e6 / wall:.0f}% of the run)")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])

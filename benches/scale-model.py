#!/usr/bin/env python3
"""A scale model of remote execution for a whole matrix: its action graph from `kbuild plan
--format json`, each action's duration from a real build, and kbuild's scheduling replayed with
N remote workers beside the local machine.

    kbuild plan --format json > plan.json
    python3 benches/scale-model.py plan.json DURATIONS [--variant-factor dbg=1.3] [--assume tool=600]

DURATIONS is a `kbuild run --profile FILE` trace, or a cache's `logs/keys/` directory (each log
ends with `# kbuild: done in S s`; the longest run of each action is taken as its cold build).
An action the build did not run gets the duration of the same kind, series and arch without
its variant (times the variant's factor), else of the same kind and arch in another series
(scaled by the two series' amd64 compiles), else the `--assume`d seconds per kind; the output
says how many durations were measured and how many derived.

The model: the local machine runs `-j` (2) actions at once, as kbuild does; compile, install and
headers go to the workers (as `--remote-exec always` sends them), one lease per worker, each
worker as fast as the machine the durations came from; a target's compile and install are one
remote action (the install's make runs in the compile's, the install then fetches its part and
packages it), so the remote compile costs the compile plus the install's local time and the
remote install the install's local time again (its packaging here); `--overhead` (default 1.15,
the goal measured on examples/tiny) multiplies every remote action. Ready actions start in the
order kbuild's scheduler takes them (graph order). Printed: the critical path, and the wall time
with 0 (all local), 1, 4, 16 and 64 workers.
"""
import argparse
import heapq
import json
import os
import re
import sys

REMOTE = {"compile", "install", "headers"}


def durations_of(path):
    """Seconds per action name, the longest seen."""
    seen = {}
    if os.path.isdir(path):
        for name in os.listdir(path):
            if not name.endswith(".log"):
                continue
            text = open(os.path.join(path, name), errors="replace").read()
            head = re.match(r"# (.+?) \(key ", text)
            done = re.findall(r"done in ([0-9.]+)s", text)
            if head and done:
                action = head.group(1)
                seen[action] = max(seen.get(action, 0.0), float(done[-1]))
    else:
        for e in json.load(open(path))["traceEvents"]:
            if e.get("ph") == "X":
                seen[e["name"]] = max(seen.get(e["name"], 0.0), e["dur"] / 1e6)
    return seen


def parts(name):
    """`compile //6.12.x:dbg-arm64` gives (compile, 6.12.x, dbg, arm64)."""
    m = re.match(r"(\S+) //([^:]+)(?::(.*))?$", name)
    if not m:
        return None
    kind, series, target = m.group(1), m.group(2), m.group(3) or ""
    bits = target.split("-") if target else []
    arch = bits[-1] if bits and bits[-1] in ("amd64", "arm64", "riscv64") else ""
    variant = "-".join(bits[:-1] if arch else bits)
    return kind, series, variant, arch


def estimate(actions, measured, factors, assumed):
    """A duration for every action, and how many were measured."""
    by_parts = {}
    for name, secs in measured.items():
        p = parts(name)
        if p:
            by_parts[p] = max(by_parts.get(p, 0.0), secs)

    def series_ratio(a, b):
        ca, cb = by_parts.get(("compile", a, "", "amd64")), by_parts.get(("compile", b, "", "amd64"))
        return ca / cb if ca and cb else 1.0

    out, exact, derived, assumed_n = {}, 0, 0, 0
    for a in actions:
        name = a["name"]
        if name in measured:
            out[name] = measured[name]
            exact += 1
            continue
        p = parts(name)
        secs = None
        if p:
            kind, series, variant, arch = p
            factor = 1.0
            for v in variant.split("-") if variant else []:
                factor *= factors.get(v, 1.0)
            base = by_parts.get((kind, series, "", arch))
            if base is None:
                for (k, s, v, ar), t in by_parts.items():
                    if k == kind and ar == arch and v == "":
                        base = t * series_ratio(series, s)
                        break
            if base is not None:
                secs = base * factor
        if secs is None:
            # Kinds the build ran but logged under other names (image, tag …) take well under a
            # second each; only the kinds given with --assume count as guesses.
            secs = assumed.get(a["kind"], 0.0)
            assumed_n += a["kind"] in assumed
        else:
            derived += 1
        out[name] = secs
    return out, (exact, derived, assumed_n)


def critical_path(actions, cost):
    ids = {a["id"]: a for a in actions}
    best = {}
    for a in actions:  # plan order is topological: deps come first
        before = max((best[d][0] for d in a["deps"]), default=0.0)
        via = max(a["deps"], key=lambda d: best[d][0], default=None)
        best[a["id"]] = (before + cost[a["id"]], via)
    end = max(best, key=lambda i: best[i][0])
    path, at = [], end
    while at is not None:
        path.append(ids[at]["name"])
        at = best[at][1]
    return best[end][0], list(reversed(path))


def simulate(actions, cost, remote_ok, local_slots, workers):
    """Wall time of the graph with `local_slots` here and `workers` remote, FIFO by readiness."""
    deps_left = {a["id"]: len(a["deps"]) for a in actions}
    dependents = {a["id"]: [] for a in actions}
    for a in actions:
        for d in a["deps"]:
            dependents[d].append(a["id"])
    ready = [a["id"] for a in actions if not a["deps"]]
    free = {"local": local_slots, "remote": workers}
    running, now, done = [], 0.0, 0
    while done < len(actions):
        waiting = []
        for i in ready:
            pool = "remote" if remote_ok[i] and workers > 0 else "local"
            if free[pool] > 0:
                free[pool] -= 1
                heapq.heappush(running, (now + cost[i][pool], i, pool))
            else:
                waiting.append(i)
        ready = waiting
        now, i, pool = heapq.heappop(running)
        free[pool] += 1
        done += 1
        for n in dependents[i]:
            deps_left[n] -= 1
            if deps_left[n] == 0:
                ready.append(n)
    return now


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("plan")
    ap.add_argument("durations")
    ap.add_argument("--variant-factor", action="append", default=["dbg=1.3"])
    ap.add_argument("--assume", action="append", default=["tool=600"])
    ap.add_argument("--overhead", type=float, default=1.15)
    ap.add_argument("--local-slots", type=int, default=2)
    args = ap.parse_args()
    actions = json.load(open(args.plan))["actions"]
    factors = {k: float(v) for k, v in (f.split("=") for f in args.variant_factor)}
    assumed = {k: float(v) for k, v in (f.split("=") for f in args.assume)}
    measured = durations_of(args.durations)
    secs, (exact, derived, guessed) = estimate(actions, measured, factors, assumed)
    installs = {}
    for a in actions:
        p = parts(a["name"])
        if p and p[0] == "install":
            installs[(p[1], p[2], p[3])] = secs[a["name"]]
    cost, remote_ok = {}, {}
    for a in actions:
        local = secs[a["name"]]
        remote = local
        if a["kind"] == "compile":
            p = parts(a["name"])
            remote = local + installs.get((p[1], p[2], p[3]), 0.0)
        cost[a["id"]] = {"local": local, "remote": remote * args.overhead}
        remote_ok[a["id"]] = a["kind"] in REMOTE
    print(f"{len(actions)} actions: {exact} durations measured, {derived} derived, {guessed} assumed "
          f"({', '.join(f'{k} {v:.0f} s' for k, v in assumed.items())})")
    local_cost = {i: c["local"] for i, c in cost.items()}
    total = sum(local_cost.values())
    print(f"sum of all actions, local: {total:,.0f} s ({total / 3600:.1f} h)")
    remote_cost = {i: (c["remote"] if remote_ok[i] else c["local"]) for i, c in cost.items()}
    length, path = critical_path(actions, remote_cost)
    print(f"critical path with remote execution: {length:,.0f} s ({length / 60:.0f} min): "
          + " -> ".join(path))
    here = sum(c["local"] for i, c in cost.items() if not remote_ok[i]) / args.local_slots
    print(f"local-only work on {args.local_slots} slots: {here:,.0f} s ({here / 60:.0f} min)")
    walls = {}
    for workers in (0, 1, 4, 16, 64):
        walls[workers] = wall = simulate(actions, cost, remote_ok, args.local_slots, workers)
        print(f"  {workers:3d} workers: wall {wall:8,.0f} s ({wall / 3600:5.2f} h), "
              f"{walls[0] / wall:5.1f}x the local build, {wall / length:4.2f}x the critical path")
    flat = min(w for w in walls if walls[w] <= walls[64] * 1.05)
    print(f"stops scaling at {flat} workers: beyond, the wall time is the longer of the critical "
          f"path and the local-only work")


if __name__ == "__main__":
    sys.exit(main())

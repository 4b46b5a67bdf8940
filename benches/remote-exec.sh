#!/usr/bin/env bash
# Remote execution on the x86_64 tiny example (Debian's linux-source-6.1), in one run: BuildGrid
# (its SQL scheduler on a throwaway PostgreSQL 15) and one `kbuild worker` on loopback, on the
# same 2 cores, against the same build done here, both in the builder container (each round
# on an empty server: its CAS and action cache are new, the worker keeps its blob store):
#   local    kbuild --executor docker run //6.1.x:amd64, empty cache
#   remote   the same with --remote-executor (compile, install, headers on the worker)
# Each round builds //6.1.x:amd64 (the first target of the tree: the tree goes up) and then
# //6.1.x:dbg-amd64 (a second target of the same tree: another cold compile, the tree already
# on the server) on each side. Printed: each side's compile and install seconds (from the run's
# JSON report) and wall time, their medians over KBUILD_BENCH_REPEAT alternating pairs (default
# 3), the ratios, and what each remote action sent and where its time went (the phases its log
# gives). Goal (issue 33): the remote compile at most 1.15x the local one; an action on a tree
# already sent sends under 1 MB. About 40 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/common.sh

bgd=${KBUILD_BGD:-/opt/kbuild-buildgrid/bin/bgd}
pg=/usr/lib/postgresql/15/bin
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
as_pg() { if ((EUID == 0)); then runuser -u postgres -- "$@"; else "$@"; fi; }

mkdir -p "$work/pg"
((EUID == 0)) && chown postgres "$work" "$work/pg"
as_pg "$pg/initdb" -D "$work/pg/data" -U bgd --auth=trust --no-sync -E UTF8 --locale=C >/dev/null
pg_port=$(free_port)
as_pg "$pg/postgres" -D "$work/pg/data" -p "$pg_port" -k "$work/pg" \
    -c listen_addresses=127.0.0.1 -c fsync=off >"$work/pg.log" 2>&1 &
pids=($!)
# The worker's, BuildGrid's and each side's logs outlive the scratch directory, to explain a
# round far from the others.
logs=${KBUILD_BENCH_LOGS:-/tmp/kbuild-remote-exec-logs}
trap 'kill "${pids[@]}" 2>/dev/null; sleep 1; mkdir -p "$logs"; cp "$work"/*.log "$logs"/ 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 50); do as_pg "$pg/pg_isready" -h 127.0.0.1 -p "$pg_port" -q && break; sleep 0.2; done
as_pg "$pg/createdb" -h 127.0.0.1 -p "$pg_port" -U bgd bgd
"$bgd" migrate apply "postgresql://bgd@127.0.0.1:$pg_port/bgd" >/dev/null
port=$(free_port)
mkdir -p "$work/cas"
cat >"$work/bgd.yml" <<CONF
server:
  - !channel
    address: "127.0.0.1:$port"
    insecure-mode: true
authorization:
  method: none
connections:
  - !sql-connection &sql
    connection-string: postgresql://bgd@127.0.0.1:$pg_port/bgd
storages:
  - !disk-storage &storage
    path: $work/cas
caches:
  - !lru-action-cache &cache
    storage: *storage
    max-cached-refs: 100000
    allow-updates: true
schedulers:
  - !sql-scheduler &scheduler
    sql: *sql
    storage: *storage
    action-cache: *cache
    poll-interval: 0.1
    bot-poll-interval: 0.1
    assigners:
      - !priority-age-assigner
        interval: 0.05
        jitter-factor: 0.05
    property-set: !dynamic-property-set
      match-property-keys: ["OSFamily", "ISA", "container-image"]
instances:
  - name: ""
    services:
      - !action-cache
        cache: *cache
      - !execution
        scheduler: *scheduler
      - !cas
        storage: *storage
      - !bytestream
        storage: *storage
CONF
url=grpc://127.0.0.1:$port
cluster=()
fresh_cluster() { # an empty CAS and action cache for each round, and the worker on it
    ((${#cluster[@]})) && kill "${cluster[@]}" 2>/dev/null && wait "${cluster[@]}" 2>/dev/null || true
    rm -rf "$work/cas" && mkdir -p "$work/cas"
    "$bgd" server start "$work/bgd.yml" >>"$work/bgd.log" 2>&1 &
    cluster=($!)
    for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.2; done
    # Two leases at once: the headers and the compile run side by side, as they do here.
    "$kbuild" worker --server "$url" --executor docker --image kbuild/builder:bookworm \
        --jobs 2 --dir "$work/worker" >>"$work/worker.log" 2>&1 &
    cluster+=($!)
    pids=("${pids[@]}" "${cluster[@]}")
}

workspace() { rm -rf "$work/$1" "$work/cache-$1"; mkdir -p "$work/$1" && cp -r examples/tiny/kernel examples/tiny/kernel.kdl "$work/$1/"; }
run() { # run NAME LABEL [FLAGS…]: a docker build of LABEL; prints wall compile install
    local name=$1 label=$2 t0 t1
    shift 2
    t0=$(now)
    KBUILD_CACHE="$work/cache-$name" "$kbuild" -C "$work/$name" --executor docker "$@" \
        run -j2 --format json "$label" >"$work/$name.json" 2>"$work/$name.log"
    t1=$(now)
    python3 - "$work/$name.json" "$(secs "$t0" "$t1")" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
took = {a["name"].split()[0]: a.get("seconds", 0) for a in report["actions"] if a["outcome"] == "executed"}
print(f'{float(sys.argv[2]):.1f} {took.get("compile", 0):.1f} {took.get("install", 0):.1f}')
PY
}

repeat=${KBUILD_BENCH_REPEAT:-3}
locals=(); remotes=(); locals2=(); remotes2=()
exec_flags=(--remote-executor "$url" --remote-exec always)
for i in $(seq "$repeat"); do
    workspace local; workspace remote
    fresh_cluster
    # The first target of a tree (the tree goes up), then a second target of the same tree
    # (dbg: another config, so another cold compile; the tree is on the server already).
    for label in //6.1.x:amd64 //6.1.x:dbg-amd64; do
        if ((i % 2)); then
            l=$(run local "$label"); r=$(run remote "$label" "${exec_flags[@]}")
        else
            r=$(run remote "$label" "${exec_flags[@]}"); l=$(run local "$label")
        fi
        if [[ $label == //6.1.x:amd64 ]]; then locals+=("$l"); remotes+=("$r"); else locals2+=("$l"); remotes2+=("$r"); fi
        for kind in compile install headers; do
            sent=$(KBUILD_CACHE="$work/cache-remote" "$kbuild" -C "$work/remote" --executor docker \
                log "$label" --action "$kind" 2>/dev/null | grep -o 'ran remotely.*' || true)
            echo "round $i: $label: remote $kind: ${sent:-ran here or cached}"
        done
    done
done
median() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
column() { local n=$1; shift; for r in "$@"; do echo "$r" | cut -d' ' -f"$n"; done; }
report() { # report WHAT LOCALS… -- REMOTES…
    local what=$1; shift
    local ls=() rs=(); while [[ $1 != -- ]]; do ls+=("$1"); shift; done; shift; rs=("$@")
    echo "$what: rounds (wall compile install, seconds): local: ${ls[*]/%/;}"
    echo "$what:                                        remote: ${rs[*]/%/;}"
    for n in 1 2 3; do
        name=$(echo "wall compile install" | cut -d' ' -f"$n")
        l=$(median $(column "$n" "${ls[@]}"))
        r=$(median $(column "$n" "${rs[@]}"))
        echo "$what: $name: local median $l s, remote median $r s: $(ratio "$r" "$l")x"
    done
}
report "first target of the tree (amd64)" "${locals[@]}" -- "${remotes[@]}"
report "second target of the tree (dbg-amd64)" "${locals2[@]}" -- "${remotes2[@]}"

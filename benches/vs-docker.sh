#!/usr/bin/env bash
# The Docker executor against the host executor, in one run, on the same inputs:
#   fake pipeline   examples/fake (50 actions, 19 of them run commands): per-container overhead
#   real kernel     examples/tiny //6.1.x:amd64 from an empty cache (fetch to image)
# Needs dockerd and kbuild/builder:bookworm (`KBUILD_SETUP_REAL=1 bash .ci/setup` makes both).
# Takes about 8 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/common.sh

# One cold run of $2 in a fresh copy of examples/$1 with executor $3; prints seconds.
cold() {
    local ws=$work/$1-$3
    mkdir -p "$ws" && cp -r "examples/$1/." "$ws/" && rm -rf "$ws/cache" "$ws/out"
    # Both executors see the same manifest, naming the builder image that .ci/setup makes.
    sed -i 's|^\( *builder\) ".*"|\1 "kbuild/builder:bookworm"|' "$ws/kernel.kdl"
    local t0 t1
    t0=$(now)
    if ! KBUILD_CACHE=$ws/cache "$kbuild" -C "$ws" --executor "$3" run -j2 $2 2>"$ws.err"; then
        tail -20 "$ws.err" >&2
        exit 1
    fi
    t1=$(now)
    secs "$t0" "$t1"
}

fake_host=$(cold fake "" host)
fake_docker=$(cold fake "" docker)
commands=$(grep -c '^\$ ' "$work"/fake-docker/cache/logs/*/*.log | awk -F: '{s += $2} END {print s}')
real_host=$(cold tiny //6.1.x:amd64 host)
real_docker=$(cold tiny //6.1.x:amd64 docker)

printf 'Docker executor vs host executor, 2 cores\n'
printf '  fake pipeline: host %6.2f s   docker %6.2f s   ratio %s   (%s commands: %.0f ms each in a container)\n' \
    "$fake_host" "$fake_docker" "$(ratio "$fake_docker" "$fake_host")" "$commands" \
    "$(echo "($fake_docker - $fake_host) * 1000 / $commands" | bc -l)"
printf '  tiny amd64:    host %6.1f s   docker %6.1f s   ratio %s\n' \
    "$real_host" "$real_docker" "$(ratio "$real_docker" "$real_host")"

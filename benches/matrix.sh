#!/usr/bin/env bash
# The shipped matrix, full size: the repository's own kernel.kdl built on Debian's linux-source
# tarballs (the package replacements its top comment shows, and a bump where Debian's package
# has moved past kernel.kdl's version), one target after another in one cache, each with its
# wall time and the peak disk of the cache and build directories; each is built and tested by
# `kbuild test` (booted under qemu TCG on the arch's machine, its release checked, its test
# modules loaded; doc/testing.md). A benchmark, not a CI test: a full-size kernel takes tens of
# minutes on 2 cores.
#
#   bash benches/matrix.sh                      # the targets below
#   MATRIX_TARGETS="//6.1.x:amd64" bash benches/matrix.sh
#   MATRIX_KEEP=/some/dir bash benches/matrix.sh   # keep the workspace and cache there
#
# Needs what `KBUILD_SETUP_REAL=1 bash .ci/setup` installs (linux-source-6.1/-6.12, the cross
# compilers, qemu-system-x86, -arm and -misc). Prints one line per target and a total; doc/benchmarks.md keeps
# the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/common.sh

targets=${MATRIX_TARGETS:-"//6.12.x:amd64 //6.12.x:arm64 //6.12.x:riscv64 //6.12.x:rt-amd64 //6.1.x:amd64"}
ws=${MATRIX_KEEP:-$work}/ws
mkdir -p "$ws"
cp -r kernel.kdl kernel "$ws/"
export KBUILD_CACHE=${MATRIX_KEEP:-$work}/cache
# Exactly the lines of kernel.kdl's top comment (tests/repo_manifest.rs runs them too).
sed -n 's|^//   replace |replace |p' kernel.kdl >"$ws/kernel.local.kdl"

# Where Debian's package is a later stable release than kernel.kdl, follow it as the comment says.
while read -r series version; do
    echo "matrix: bump $series $version (Debian's package)"
    "$kbuild" -C "$ws" bump "$series" "$version" --write >/dev/null
done < <("$kbuild" -C "$ws" check 2>&1 |
    sed -n "s/.*series \`\([^\`]*\)\`: the package's tarball is Linux \([^,]*\),.*/\1 \2/p")
"$kbuild" -C "$ws" check >/dev/null

# The peak size of the cache (and the build directories in it), sampled every 5 s.
peak_file=$work/peak
echo 0 >"$peak_file"
(
    while sleep 5; do
        kb=$(du -sk "$KBUILD_CACHE" 2>/dev/null | cut -f1)
        ((kb > $(cat "$peak_file"))) && echo "$kb" >"$peak_file"
    done
) &
sampler=$!
trap 'kill $sampler 2>/dev/null; rm -rf "$work"' EXIT

total=0
printf '%-24s %10s %10s  %s\n' target seconds peak-GB result
for target in $targets; do
    t0=$(now)
    # `kbuild test` builds the target and boots it under qemu (doc/testing.md): the release,
    # /proc and /sys, the test modules with their dependencies.
    if "$kbuild" -C "$ws" test -j2 --junit "$work/junit.xml" "$target" 2>"$work/run.log"; then
        result="built; $(grep -o "1 test: .*" "$work/run.log")"
    else
        result="FAILED (see below)"
        tail -20 "$work/run.log"
    fi
    t1=$(now)
    took=$(secs "$t0" "$t1")
    total=$(echo "$total + $took" | bc)
    peak=$(echo "scale=1; $(cat "$peak_file") / 1048576" | bc)
    printf '%-24s %10.0f %10s  %s\n' "$target" "$took" "$peak" "$result"
done
printf 'matrix: %s targets in %.0f s; peak cache and build directories %s GB\n' \
    "$(wc -w <<<"$targets")" "$total" "$(echo "scale=1; $(cat "$peak_file") / 1048576" | bc)"

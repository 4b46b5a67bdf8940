#!/usr/bin/env bash
# A stable bump on the real tiny example (examples/tiny's //6.1.x:amd64, host executor):
#   kbuild   built from the previous stable release of linux-source-6.1 (a `replace` in
#            kernel.local.kdl), then the replace removed: `kbuild run` fetches, patches and
#            compiles again in the kept build directory
#   make     the same previous release built with plain make (O=, the config kbuild resolved),
#            then its tree updated in place to the installed release (rsync --checksum: only
#            files whose content changed get a new mtime, as a `git pull` does) and make again
# Printed: the seconds of each side's rebuild and the objects make compiled (CC lines of its
# output; the steadier figure on these machines), VS_BUMP_ROUNDS rounds (default 3),
# alternating, with the medians. Needs /var/cache/kbuild-ci/linux-source-6.1-previous.tar.xz
# (KBUILD_SETUP_REAL=1 bash .ci/setup) and rsync. About 10 minutes a round on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/common.sh
previous=/var/cache/kbuild-ci/linux-source-6.1-previous.tar.xz
installed=/usr/src/linux-source-6.1.tar.xz
[[ -s $previous ]] || { echo "$previous is missing: KBUILD_SETUP_REAL=1 bash .ci/setup" >&2; exit 1; }
command -v rsync >/dev/null || { echo "rsync is missing: apt-get install rsync" >&2; exit 1; }
sha=$(sha256sum "$previous" | cut -d' ' -f1)
cc_lines() { grep -cE '^\s+CC( \[M\])?\s' "$1" || true; }
median() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }

mkdir -p "$work/new" && tar -xf "$installed" -C "$work/new" --strip-components=1
kbuild_round() { # prints: seconds objects
    local ws=$work/kb cache=$work/kb-cache t0 t1
    rm -rf "$ws" "$cache" && mkdir -p "$ws"
    cp -r examples/tiny/kernel examples/tiny/kernel.kdl "$ws/"
    printf 'replace "6.1.x" "file://%s" sha256="%s"\n' "$previous" "$sha" >"$ws/kernel.local.kdl"
    KBUILD_CACHE=$cache "$kbuild" -C "$ws" run -j2 //6.1.x:amd64 >/dev/null 2>"$work/kb-first.log"
    rm "$ws/kernel.local.kdl"
    t0=$(now)
    KBUILD_CACHE=$cache "$kbuild" -C "$ws" run -j2 //6.1.x:amd64 >/dev/null 2>"$work/kb-bump.log"
    t1=$(now)
    KBUILD_CACHE=$cache "$kbuild" -C "$ws" log //6.1.x:amd64 --action compile >"$work/kb-compile.log"
    cp "$(find "$cache/build" -path '*/amd64/obj/.config' | head -1)" "$work/config"
    echo "$(secs "$t0" "$t1") $(cc_lines "$work/kb-compile.log")"
}
make_round() { # prints: seconds objects (needs $work/config from a kbuild round)
    local src=$work/make-src obj=$work/make-obj t0 t1
    rm -rf "$src" "$obj" && mkdir -p "$src" "$obj"
    tar -xf "$previous" -C "$src" --strip-components=1
    cp "$work/config" "$obj/.config"
    make -C "$src" O="$obj" olddefconfig >/dev/null
    make -C "$src" O="$obj" -j2 all >/dev/null 2>&1
    t0=$(now)
    # Without -t: a changed file gets the time of its update, as a checkout gives it; with
    # the tarball's own (older) mtimes make would take it for older than its object.
    rsync -rlpD --checksum --delete "$work/new/" "$src/"
    make -C "$src" O="$obj" -j2 all >"$work/make-bump.log" 2>&1
    t1=$(now)
    echo "$(secs "$t0" "$t1") $(cc_lines "$work/make-bump.log")"
}

rounds=${VS_BUMP_ROUNDS:-3}
kb=(); mk=()
kb+=("$(kbuild_round)")   # the first round also gives make its config
mk+=("$(make_round)")
echo "round 0 (seconds objects): kbuild ${kb[0]}, make ${mk[0]}" >&2
for ((i = 1; i < rounds; i++)); do
    if ((i % 2)); then mk+=("$(make_round)"); kb+=("$(kbuild_round)")
    else kb+=("$(kbuild_round)"); mk+=("$(make_round)"); fi
    echo "round $i (seconds objects): kbuild ${kb[$i]}, make ${mk[$i]}" >&2
done
for i in "${!kb[@]}"; do
    echo "round $i: kbuild ${kb[$i]% *} s (${kb[$i]#* } objects), make ${mk[$i]% *} s (${mk[$i]#* } objects)"
done
kb_s=$(median $(for r in "${kb[@]}"; do echo "${r% *}"; done))
mk_s=$(median $(for r in "${mk[@]}"; do echo "${r% *}"; done))
echo "stable bump $(tar -xOf "$previous" linux-source-6.1/Makefile | awk '/^SUBLEVEL/ {print $3; exit}') -> $(awk '/^SUBLEVEL/ {print $3; exit}' "$work/new/Makefile") (6.1.x): kbuild median $kb_s s, make median $mk_s s: $(ratio "$kb_s" "$mk_s")x; objects compiled: kbuild ${kb[0]#* }, make ${mk[0]#* }"

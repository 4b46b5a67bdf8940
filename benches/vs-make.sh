#!/usr/bin/env bash
# kbuild against plain make on the x86_64 tiny example (Debian's linux-source-6.1), in one run:
#   cold build       kbuild (empty cache)  vs  olddefconfig && make -j2 && modules_install && headers_install
#   nothing changed  kbuild run            vs  make -j2 with nothing to do
#   one option       kbuild after a config edit  vs  the same edit, olddefconfig && make -j2 &&
#                    modules_install (kept O=), VS_MAKE_ROUNDS rounds (default 5), alternating
# the cold build with `source-snapshot #false` (images without /linux.tar.xz) against make's
# cold build, VS_MAKE_COLD_ROUNDS rounds (default 3, alternating; the medians are the figures),
# and against LinuxKit's own sequence (unpack, patch, tar cJf, build, install, tarballs).
# Needs what `KBUILD_SETUP_REAL=1 bash .ci/setup` installs. Takes about 22 minutes on 2 cores, 9 of them the LinuxKit sequence
# (VS_MAKE_LINUXKIT=0 skips it).
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/common.sh

# kbuild's workspace: a copy of examples/tiny.
mkdir -p "$work/ws" && cp -r examples/tiny/kernel examples/tiny/kernel.kdl "$work/ws/"
export KBUILD_CACHE=$work/cache

# Plain make's tree: the same tarball, unpacked once. The goal leaves it out (an existing
# checkout); it is timed and printed beside, because kbuild's cold build does unpack.
mkdir -p "$work/src"
t0=$(now); tar xf /usr/src/linux-source-6.1.tar.xz -C "$work/src" --strip-components=1; t1=$(now)
untar=$(secs "$t0" "$t1")
mk() { make -s -C "$work/src" O="$work/obj" ARCH=x86_64 "$@" >/dev/null; }
prepare_make_config() {
    mkdir -p "$work/obj"
    cat "$work/ws/kernel/6.1.x/config-x86_64" > "$work/obj/.config"
    printf 'CONFIG_LOCALVERSION="-linuxkit"\n# CONFIG_LOCALVERSION_AUTO is not set\n' >> "$work/obj/.config"
}

# Every timed step starts with the disk settled: the unpack above and the removals below write
# or free gigabytes that the kernel would otherwise flush during whatever comes next.
sync
t0=$(now); "$kbuild" -C "$work/ws" run -j2 //6.1.x:amd64 2>"$work/cold.log"; t1=$(now)
kb_cold=$(secs "$t0" "$t1")

# The cold build without the snapshot against make's cold build, VS_MAKE_COLD_ROUNDS rounds
# (default 3), the two sides in alternating order: a fresh O= for make, a workspace and a cache
# of its own for kbuild each round. make's last round leaves its O= for the one-option rounds.
mkdir -p "$work/ws-nosnap" && cp -r examples/tiny/kernel examples/tiny/kernel.kdl "$work/ws-nosnap/"
sed -i 's/^defaults {$/defaults {\n    source-snapshot #false/' "$work/ws-nosnap/kernel.kdl"
make_cold_round() {
    rm -rf "$work/obj" "$work/mods" "$work/hdr"
    prepare_make_config
    sync
    local t0 t1; t0=$(now)
    mk olddefconfig && mk -j2 && mk INSTALL_MOD_PATH="$work/mods" modules_install && mk INSTALL_HDR_PATH="$work/hdr" headers_install
    t1=$(now); make_colds+=("$(secs "$t0" "$t1")")
}
nosnap_round() {
    local t0 t1; t0=$(now)
    KBUILD_CACHE=$work/cache-nosnap "$kbuild" -C "$work/ws-nosnap" run -j2 //6.1.x:amd64 2>"$work/nosnap-$1.log"
    t1=$(now); kb_nosnaps+=("$(secs "$t0" "$t1")")
    rm -rf "$work/cache-nosnap"
    sync
}
cold_rounds=${VS_MAKE_COLD_ROUNDS:-3}
make_colds=(); kb_nosnaps=()
for ((i = 0; i < cold_rounds; i++)); do
    if ((i % 2 == 0)); then nosnap_round "$i"; make_cold_round
    else make_cold_round; nosnap_round "$i"; fi
done

# What LinuxKit runs for the same image contents, one step after another, in the tree itself:
# unpack, patch (the series' patches; the tiny example has none), snapshot the patched source
# with xz's default preset, configure, build, install modules and UAPI headers, and the three
# tarballs (kernel.tar, kernel-headers.tar, and kernel-dev.tar with the build tree's headers,
# scripts, build files, .config and Module.symvers). Set VS_MAKE_LINUXKIT=0 to skip it.
if [[ ${VS_MAKE_LINUXKIT:-1} == 1 ]]; then
    lk=$work/lk
    lkmk() { make -s -C "$lk/linux" ARCH=x86_64 "$@" >/dev/null; }
    mkdir -p "$lk/linux" "$lk/out"
    sync
    t0=$(now)
    tar xf /usr/src/linux-source-6.1.tar.xz -C "$lk/linux" --strip-components=1
    for p in "$work/ws"/kernel/6.1.x/patches/*.patch; do
        if [[ -e $p ]]; then patch -d "$lk/linux" -p1 -F0 -N -s < "$p"; fi
    done
    tar cJf "$lk/out/linux.tar.xz" -C "$lk" linux
    t_snap=$(now)
    cp "$work/ws/kernel/6.1.x/config-x86_64" "$lk/linux/.config"
    printf 'CONFIG_LOCALVERSION="-linuxkit"\n# CONFIG_LOCALVERSION_AUTO is not set\n' >> "$lk/linux/.config"
    lkmk olddefconfig
    lkmk -j2
    t_build=$(now)
    lkmk INSTALL_MOD_PATH="$lk/mods" modules_install
    lkmk INSTALL_HDR_PATH="$lk/hdr/usr" headers_install
    tar cf "$lk/out/kernel.tar" -C "$lk/mods" .
    tar cf "$lk/out/kernel-headers.tar" -C "$lk/hdr" usr
    release=$(make -s -C "$lk/linux" ARCH=x86_64 kernelrelease)
    dev=$lk/dev/usr/src/linux-headers-$release
    mkdir -p "$dev"
    cp "$lk/linux/.config" "$lk/linux/Module.symvers" "$dev/"
    (cd "$lk/linux" && { find include scripts arch/x86/include -type f; find . -path ./include -prune -o -path ./scripts -prune -o -type f \( -name 'Makefile*' -o -name 'Kconfig*' -o -name 'Kbuild*' -o -name '*.lds' \) -print; } | tar cf - -T - | tar xf - -C "$dev")
    tar cf "$lk/out/kernel-dev.tar" -C "$lk/dev" usr
    t1=$(now)
    lk_cold=$(secs "$t0" "$t1"); lk_snap=$(secs "$t0" "$t_snap"); lk_build=$(secs "$t_snap" "$t_build"); lk_pack=$(secs "$t_build" "$t1")
    rm -rf "$lk"
    sync
fi

t0=$(now); "$kbuild" -C "$work/ws" run //6.1.x:amd64 2>/dev/null; t1=$(now); kb_null=$(secs "$t0" "$t1")
t0=$(now); mk -j2; t1=$(now); make_null=$(secs "$t0" "$t1")

# One option, repeated: each round sets CONFIG_LOG_BUF_SHIFT to a value neither side has built
# (18, 19 …: never 17, the tiny config's own value, whose kernel kbuild has cached already and
# would not compile again), so both really rebuild printk and what includes its header; the two
# sides in alternating order. kbuild's actions and make's phases are timed per round, to attribute the difference.
rounds=${VS_MAKE_ROUNDS:-5}
config="$work/ws/kernel/6.1.x/config-x86_64"
base_config=$(cat "$config")
kb_round() {
    printf '%s\nCONFIG_LOG_BUF_SHIFT=%s\n' "$base_config" "$1" > "$config"
    local t0 t1; t0=$(now)
    "$kbuild" -C "$work/ws" run -j2 //6.1.x:amd64 2>"$work/one-$2.log"; t1=$(now)
    kb_ones+=("$(secs "$t0" "$t1")")
}
make_round() {
    prepare_make_config
    echo "CONFIG_LOG_BUF_SHIFT=$1" >> "$work/obj/.config"
    local t0 t1 t2 t3; t0=$(now)
    mk olddefconfig; t1=$(now)
    mk -j2; t2=$(now)
    mk INSTALL_MOD_PATH="$work/mods" modules_install; t3=$(now)
    make_ones+=("$(secs "$t0" "$t3")")
    make_phases+=("olddefconfig $(secs "$t0" "$t1"), build $(secs "$t1" "$t2"), modules_install $(secs "$t2" "$t3")")
}
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
spread() { printf '%s\n' "$@" | sort -g | awk 'NR==1{lo=$1} {hi=$1} END {printf "%.1f-%.1f", lo, hi}'; }
kb_ones=(); make_ones=(); make_phases=()
for ((i = 0; i < rounds; i++)); do
    shift_value=$((18 + i))
    if ((i % 2 == 0)); then kb_round "$shift_value" "$i"; make_round "$shift_value"
    else make_round "$shift_value"; kb_round "$shift_value" "$i"; fi
done
kb_one=$(median "${kb_ones[@]}"); make_one=$(median "${make_ones[@]}")
kb_nosnap=$(median "${kb_nosnaps[@]}"); make_cold=$(median "${make_colds[@]}")

printf 'x86_64 tiny example (linux-source-6.1), 2 cores\n'
printf '  cold build:      kbuild %7.1f s   make %7.1f s   ratio %s (goal <= 1.05)\n' "$kb_cold" "$make_cold" "$(ratio "$kb_cold" "$make_cold")"
printf '  nothing changed: kbuild %7.3f s   make %7.3f s   make/kbuild %s (goal >= 30)\n' "$kb_null" "$make_null" "$(ratio "$make_null" "$kb_null")"
printf '  one option:      kbuild %7.1f s   make %7.1f s   ratio %s (goal <= 1.10; medians of %d rounds, kbuild %s s, make %s s)\n' "$kb_one" "$make_one" "$(ratio "$kb_one" "$make_one")" "$rounds" "$(spread "${kb_ones[@]}")" "$(spread "${make_ones[@]}")"
printf '  cold build, source-snapshot #false: kbuild %7.1f s   make %7.1f s   ratio %s (goal <= 1.05; medians of %d rounds, kbuild %s s, make %s s)\n' "$kb_nosnap" "$make_cold" "$(ratio "$kb_nosnap" "$make_cold")" "$cold_rounds" "$(spread "${kb_nosnaps[@]}")" "$(spread "${make_colds[@]}")"
if [[ -n ${lk_cold:-} ]]; then
    printf '  cold build against LinuxKit'"'"'s sequence: kbuild %7.1f s   LinuxKit %7.1f s   ratio %s (goal <= 0.85)\n' "$kb_cold" "$lk_cold" "$(ratio "$kb_cold" "$lk_cold")"
    printf '    LinuxKit: unpack, patch and xz snapshot %.1f s, configure and build %.1f s, install and tarballs %.1f s\n' "$lk_snap" "$lk_build" "$lk_pack"
fi
make_untar=$(echo "$make_cold + $untar" | bc)
printf '  cold, counting the unpack on both sides: kbuild %7.1f s   tar xf + make %7.1f s   ratio %s\n' "$kb_cold" "$make_untar" "$(ratio "$kb_cold" "$make_untar")"
printf 'kbuild, per action (seconds; actions overlap):\n'
actions() { sed -n 's/^\[[0-9/]*\] executed \([a-z-]*\) .*(\([0-9.]*\)s)$/\1 \2/p' "$1" | tr '\n' ',' | sed 's/,$//; s/,/, /g'; }
printf '  cold: %s\n' "$(actions "$work/cold.log")"
for ((i = 0; i < cold_rounds; i++)); do
    printf '  cold without the snapshot, round %d: kbuild %s s (make %s s): %s\n' "$i" "${kb_nosnaps[$i]}" "${make_colds[$i]}" "$(actions "$work/nosnap-$i.log")"
done
for ((i = 0; i < rounds; i++)); do
    printf '  one option, round %d: kbuild %s s: %s\n' "$i" "${kb_ones[$i]}" "$(actions "$work/one-$i.log")"
    printf '                       make %s s: %s\n' "${make_ones[$i]}" "${make_phases[$i]}"
done

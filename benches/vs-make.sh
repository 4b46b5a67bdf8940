#!/usr/bin/env bash
# kbuild against plain make on the x86_64 tiny example (Debian's linux-source-6.1), in one run:
#   cold build       kbuild (empty cache)  vs  olddefconfig && make -j2 && modules_install && headers_install
#   nothing changed  kbuild run            vs  make -j2 with nothing to do
#   one option       kbuild after a config edit  vs  the same edit, olddefconfig && make -j2 (kept O=)
# and the cold build once more with `source-snapshot #false` (images without /linux.tar.xz).
# Needs what `KBUILD_SETUP_REAL=1 bash .ci/setup` installs. Takes about 15 minutes on 2 cores.
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

t0=$(now); "$kbuild" -C "$work/ws" run -j2 //6.1.x:amd64 2>"$work/cold.log"; t1=$(now)
kb_cold=$(secs "$t0" "$t1")
prepare_make_config
t0=$(now)
mk olddefconfig && mk -j2 && mk INSTALL_MOD_PATH="$work/mods" modules_install && mk INSTALL_HDR_PATH="$work/hdr" headers_install
t1=$(now); make_cold=$(secs "$t0" "$t1")

# The same cold build without the source snapshot: a workspace and a cache of its own.
mkdir -p "$work/ws-nosnap" && cp -r examples/tiny/kernel examples/tiny/kernel.kdl "$work/ws-nosnap/"
sed -i 's/^defaults {$/defaults {\n    source-snapshot #false/' "$work/ws-nosnap/kernel.kdl"
t0=$(now)
KBUILD_CACHE=$work/cache-nosnap "$kbuild" -C "$work/ws-nosnap" run -j2 //6.1.x:amd64 2>"$work/nosnap.log"
t1=$(now); kb_nosnap=$(secs "$t0" "$t1")
rm -rf "$work/cache-nosnap"

t0=$(now); "$kbuild" -C "$work/ws" run //6.1.x:amd64 2>/dev/null; t1=$(now); kb_null=$(secs "$t0" "$t1")
t0=$(now); mk -j2; t1=$(now); make_null=$(secs "$t0" "$t1")

echo 'CONFIG_PRINTK_TIME=y' >> "$work/ws/kernel/6.1.x/config-x86_64"
t0=$(now); "$kbuild" -C "$work/ws" run -j2 //6.1.x:amd64 2>"$work/one.log"; t1=$(now); kb_one=$(secs "$t0" "$t1")
prepare_make_config
t0=$(now); mk olddefconfig && mk -j2 && mk INSTALL_MOD_PATH="$work/mods" modules_install; t1=$(now)
make_one=$(secs "$t0" "$t1")

printf 'x86_64 tiny example (linux-source-6.1), 2 cores\n'
printf '  cold build:      kbuild %7.1f s   make %7.1f s   ratio %s (goal <= 1.05)\n' "$kb_cold" "$make_cold" "$(ratio "$kb_cold" "$make_cold")"
printf '  nothing changed: kbuild %7.3f s   make %7.3f s   make/kbuild %s (goal >= 30)\n' "$kb_null" "$make_null" "$(ratio "$make_null" "$kb_null")"
printf '  one option:      kbuild %7.1f s   make %7.1f s   ratio %s (goal <= 1.10)\n' "$kb_one" "$make_one" "$(ratio "$kb_one" "$make_one")"
printf '  cold build, source-snapshot #false: kbuild %7.1f s   ratio %s\n' "$kb_nosnap" "$(ratio "$kb_nosnap" "$make_cold")"
make_untar=$(echo "$make_cold + $untar" | bc)
printf '  cold, counting the unpack on both sides: kbuild %7.1f s   tar xf + make %7.1f s   ratio %s\n' "$kb_cold" "$make_untar" "$(ratio "$kb_cold" "$make_untar")"
printf 'kbuild, per action (seconds; actions overlap):\n'
for run in cold nosnap one; do
    printf '  %s: %s\n' "$run" "$(sed -n 's/^\[[0-9/]*\] executed \([a-z-]*\) .*(\([0-9.]*\)s)$/\1 \2/p' "$work/$run.log" | tr '\n' ',' | sed 's/,$//; s/,/, /g')"
done

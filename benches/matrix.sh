#!/usr/bin/env bash
# The shipped matrix, full size: the repository's own kernel.kdl built on Debian's linux-source
# tarballs (the package replacements its top comment shows, and a bump where Debian's package
# has moved past kernel.kdl's version), one target after another in one cache, each with its
# wall time and the peak disk of the cache and build directories; every kernel boots in qemu
# (TCG, the arch's virt machine) with an initramfs of one static init and must print its release. A benchmark, not a CI test: a full-size kernel takes
# tens of minutes on 2 cores.
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

# Boots a kernel image of `arch` (amd64, arm64, riscv64) under qemu (TCG) with an initramfs of
# one static init, cross-built for the arch, that prints the release; prints that release.
boot() {
    local kernel=$1 arch=$2 dir=$work/boot-$2 cc qemu console image
    case $arch in
    amd64) cc=gcc qemu=(qemu-system-x86_64) console=ttyS0 ;;
    arm64) cc=aarch64-linux-gnu-gcc qemu=(qemu-system-aarch64 -M virt -cpu max) console=ttyAMA0 ;;
    riscv64) cc=riscv64-linux-gnu-gcc qemu=(qemu-system-riscv64 -M virt) console=ttyS0 ;;
    esac
    mkdir -p "$dir/root"
    # One write: a kernel message printed between two writes would split the line.
    printf '#include <stdio.h>\n#include <string.h>\n#include <sys/reboot.h>\n#include <sys/utsname.h>\n#include <unistd.h>\nint main(void){struct utsname u;char b[512];uname(&u);int n=snprintf(b,sizeof b,"matrix-init: %%s\\n",u.release);write(1,b,n);reboot(RB_AUTOBOOT);return 0;}\n' >"$dir/init.c"
    "$cc" -static -Os -o "$dir/root/init" "$dir/init.c"
    (cd "$dir/root" && echo init | cpio -o -H newc --quiet >"$dir/init.cpio")
    # LinuxKit's riscv64 kernel is a gzipped Image, which qemu's riscv loader takes unpacked.
    image=$kernel
    if [[ $arch == riscv64 ]] && gzip -t "$kernel" 2>/dev/null; then
        image=$dir/Image
        gzip -dc "$kernel" >"$image"
    fi
    timeout 600 "${qemu[@]}" -m 1024 -nographic -no-reboot -kernel "$image" -initrd "$dir/init.cpio" \
        -append "console=$console panic=-1" 2>/dev/null | sed -n 's/^matrix-init: //p' | tr -d '\r'
}

total=0
printf '%-24s %10s %10s  %s\n' target seconds peak-GB result
for target in $targets; do
    t0=$(now)
    if "$kbuild" -C "$ws" run -j2 "$target" 2>"$work/run.log"; then
        result=built
    else
        result="FAILED (see below)"
        tail -20 "$work/run.log"
    fi
    t1=$(now)
    took=$(secs "$t0" "$t1")
    total=$(echo "$total + $took" | bc)
    arch=${target##*[:-]}
    if [[ $result == built ]]; then
        dir=${target#//}
        series=${dir%%:*}
        kernel=$ws/out/$series/${target##*:}/kernel
        release=$(boot "$kernel" "$arch")
        result="built, boots: ${release:-NO RELEASE PRINTED}"
    fi
    peak=$(echo "scale=1; $(cat "$peak_file") / 1048576" | bc)
    printf '%-24s %10.0f %10s  %s\n' "$target" "$took" "$peak" "$result"
done
printf 'matrix: %s targets in %.0f s; peak cache and build directories %s GB\n' \
    "$(wc -w <<<"$targets")" "$total" "$(echo "scale=1; $(cat "$peak_file") / 1048576" | bc)"

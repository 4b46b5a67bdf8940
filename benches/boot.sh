#!/usr/bin/env bash
# What `kbuild test` costs: per arch, the test action (compile /init, pack the initramfs, boot
# under qemu TCG, judge the console) against the bare boot of the same kernel under the same
# qemu until it finds no init (what any boot test pays); and a null `kbuild test` (everything
# passed and cached) against a null `kbuild run` of the same targets.
#
#   bash benches/boot.sh            # 5 rounds
#   BOOT_ROUNDS=9 bash benches/boot.sh
#   BOOT_CACHE=/some/cache bash benches/boot.sh   # a cache that holds the kernels already
#
# Builds examples/tiny's plain 6.1 kernels first (minutes, once). Each round changes
# `test-timeout`, which only the test actions' keys hold, so exactly the tests run again.
# Medians of the rounds, per arch. Needs what `KBUILD_SETUP_REAL=1 bash .ci/setup` installs.
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/common.sh

rounds=${BOOT_ROUNDS:-5}
ws=$work/tiny
cp -r examples/tiny "$ws"
export KBUILD_CACHE=${BOOT_CACHE:-$work/cache}
labels=(//6.1.x:amd64 //6.1.x:arm64 //6.1.x:riscv64)
"$kbuild" -C "$ws" test "${labels[@]}" >/dev/null 2>"$work/first.log" || {
    tail -20 "$work/first.log"
    exit 1
}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# The test actions' seconds, from each round's events. The timeouts start at a random base, so
# that a kept cache (BOOT_CACHE) holds no result of an earlier call for them.
base=$((1000 + RANDOM % 50000))
for round in $(seq "$rounds"); do
    sed -i "s/^\(    localversion \"-linuxkit\"\)$/\1\n    test-timeout $((base + round))/; /^    test-timeout $((base + round - 1))$/d" "$ws/kernel.kdl"
    "$kbuild" -C "$ws" test --events "$work/events-$round" "${labels[@]}" >/dev/null 2>&1
    python3 - "$work/events-$round" >>"$work/test-seconds" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    e = json.loads(line)
    if e.get("event") == "finished" and e.get("kind") == "test" and e.get("outcome") == "executed":
        print(e["action"].rsplit(":", 1)[1], e["seconds"])
EOF
done

# The bare boots: the kernel out of out/, no initramfs, until the panic that ends qemu.
bare() {
    local arch=$1 kernel=$ws/out/6.1.x/$1/kernel
    case $arch in
    amd64) qemu-system-x86_64 -M pc -cpu max -m 512 -smp 1 -nodefaults -display none -no-reboot \
        -serial "file:$work/bare.log" -kernel "$kernel" -append "console=ttyS0 panic=-1" ;;
    arm64) qemu-system-aarch64 -M virt -cpu max -m 512 -smp 1 -nodefaults -display none -no-reboot \
        -serial "file:$work/bare.log" -kernel "$kernel" -append "console=ttyAMA0 panic=-1" ;;
    riscv64)
        gzip -dc "$kernel" >"$work/Image"
        qemu-system-riscv64 -M virt -m 512 -smp 1 -nodefaults -display none -no-reboot \
            -serial "file:$work/bare.log" -bios /usr/share/qemu/opensbi-riscv64-generic-fw_dynamic.bin \
            -kernel "$work/Image" -append "console=ttyS0 panic=-1" ;;
    esac
}

printf '%-8s %14s %14s %7s\n' arch 'test (s)' 'bare boot (s)' ratio
for label in "${labels[@]}"; do
    arch=${label##*:}
    test=$(awk -v a="$arch" '$1 == a { print $2 }' "$work/test-seconds" | median)
    for _ in $(seq "$rounds"); do
        t0=$(now)
        bare "$arch"
        secs "$t0" "$(now)"
    done | median >"$work/bare-$arch"
    boot=$(cat "$work/bare-$arch")
    printf '%-8s %14.3f %14.3f %7.2f\n' "$arch" "$test" "$boot" "$(ratio "$test" "$boot")"
done

# Null runs, paired: `kbuild test` (every test cached) against `kbuild run` (its fingerprint).
"$kbuild" -C "$ws" run "${labels[@]}" >/dev/null 2>&1
farm-bench -n "$rounds" --vs "$kbuild -C $ws run ${labels[*]}" -- "$kbuild" -C "$ws" test "${labels[@]}"

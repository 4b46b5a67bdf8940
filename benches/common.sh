# Shared by the benchmark scripts, sourced from the repository root: a release kbuild, a scratch
# directory removed on exit, and timing helpers (seconds with nanoseconds, bc arithmetic).
cargo build --release --quiet
kbuild=$PWD/target/release/kbuild
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc; }
ratio() { echo "scale=3; $1 / $2" | bc; }

//! Null-build benchmark: kbuild against ninja on the same synthetic workspace.
//!
//! Generates a fake-kernel workspace (50 series x 3 arches x 3 variants, plus perf: over 3,000
//! actions), builds it once with kbuild, writes an equivalent build.ninja (one edge per kbuild
//! action, same input files, stamp outputs) and builds that once; then times, in the same run,
//! `kbuild plan` (load + plan), `kbuild run` with everything cached, `ninja` with nothing to
//! do, and `kbuild plan` after one config file changed (a new edit before each timed plan,
//! against ninja's null build timed in the same rounds), and `kbuild plan` after kernel.kdl
//! itself changed (one series' version bumped, the same way; then a variant one series alone
//! builds, edited the same way). Also times the null build of a workspace shaped like the
//! shipped kernel.kdl.
//!
//! Run: `cargo bench --bench null_build` (needs `ninja` from Debian's ninja-build).
//! Options via env: KBUILD_BENCH_SERIES (default 50), KBUILD_BENCH_RUNS (default 15),
//! KBUILD_BENCH_KEEP=1 keeps the big workspace and prints where it is.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const FULL_CONFIG: &str = include_str!("../tests/fixtures/fake-kernel.config");

fn kbuild_bin() -> PathBuf {
    // Benches build in release; the binary sits beside the bench's deps directory.
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir.join("kbuild");
    if !bin.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--release", "--bin", "kbuild"])
            .status()
            .unwrap();
        assert!(status.success());
    }
    bin
}

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A workspace of `series` series, each with 3 arches, plain + dbg + kasan, and perf.
fn generate(root: &Path, series: usize, arches: &[&str], variants: &[&str], tools: &[&str]) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake-kernel");
    let tar = root.join("sources/linux-6.6.71.tar");
    std::fs::create_dir_all(tar.parent().unwrap()).unwrap();
    kbuild::archive::write_tar(&fixture, &tar, "linux-6.6.71", 1_700_000_000).unwrap();
    let sha = kbuild::digest::Sha256::of_file(&tar).unwrap();
    let mut kdl = format!(
        "defaults {{\n    arches {}\n}}\nvariant \"dbg\" {{\n    fragment \"kernel/common/config-dbg\"\n    force-off \"CONFIG_PANIC_ON_OOPS\"\n    localversion \"-dbg\"\n}}\nvariant \"kasan\" {{\n    fragment \"kernel/common/config-kasan\"\n    localversion \"-kasan\"\n}}\ntool \"perf\"\n",
        arches
            .iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(" ")
    );
    write(
        root,
        "kernel/common/config-dbg",
        "CONFIG_DEBUG_KERNEL=y\nCONFIG_DEBUG_INFO=y\n",
    );
    write(
        root,
        "kernel/common/config-kasan",
        "CONFIG_DEBUG_KERNEL=y\nCONFIG_KASAN=y\n",
    );
    for i in 0..series {
        let name = format!("7.{i}.x");
        for arch in arches {
            write(root, &format!("kernel/{name}/config-{arch}"), FULL_CONFIG);
        }
        let patch = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/0001-init-say-hello.patch"),
        )
        .unwrap();
        write(
            root,
            &format!("kernel/{name}/patches/0001-init-say-hello.patch"),
            &patch,
        );
        let quoted = |v: &[&str]| {
            v.iter()
                .map(|x| format!("\"{x}\""))
                .collect::<Vec<_>>()
                .join(" ")
        };
        kdl.push_str(&format!(
            "series \"{name}\" {{\n    version \"7.{i}.1\"\n    source \"file://{}\" sha256=\"{sha}\"\n    source-date-epoch 1700000000\n{}{}}}\n",
            tar.display(),
            if variants.is_empty() { String::new() } else { format!("    variants {}\n", quoted(variants)) },
            if tools.is_empty() { String::new() } else { format!("    tools {}\n", quoted(tools)) },
        ));
    }
    write(root, "kernel.kdl", &kdl);
}

fn kbuild(root: &Path, args: &[&str]) -> std::process::Output {
    let out = Command::new(kbuild_bin())
        .arg("-C")
        .arg(root)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kbuild {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// One ninja edge per kbuild action: the same input files and dependency edges, stamp outputs.
fn write_ninja(root: &Path) -> usize {
    let plan: serde_json::Value =
        serde_json::from_slice(&kbuild(root, &["plan", "--format", "json"]).stdout).unwrap();
    let actions = plan["actions"].as_array().unwrap();
    let mut text = String::from("rule stamp\n  command = touch $out\n\n");
    for a in actions {
        let id = a["id"].as_u64().unwrap();
        let mut inputs: Vec<String> = a["inputs"]
            .as_array()
            .map(|v| v.iter().map(|s| s.as_str().unwrap().to_string()).collect())
            .unwrap_or_default();
        inputs.extend(
            a["deps"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| format!("stamps/{}", d.as_u64().unwrap())),
        );
        text.push_str(&format!(
            "build stamps/{id}: stamp kernel.kdl {}\n",
            inputs.join(" ")
        ));
    }
    std::fs::write(root.join("build.ninja"), text).unwrap();
    std::fs::create_dir_all(root.join("stamps")).unwrap();
    let status = Command::new("ninja")
        .arg("-C")
        .arg(root)
        .arg("-j2")
        .stdout(std::process::Stdio::null())
        .status()
        .expect("ninja (apt install ninja-build)");
    assert!(status.success());
    actions.len()
}

/// The benchmark workspace; kept on disk when KBUILD_BENCH_KEEP is set, for profiling.
struct WsDir(PathBuf);

impl WsDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

fn median_ms(runs: usize, mut f: impl FnMut()) -> f64 {
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64() * 1000.0
            })
            .collect(),
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `runs` rounds of: `edit(round)`, then `kbuild plan` timed, then ninja's null build timed
/// (after a first ninja catches up with the edit: its edges read the edited files). The medians
/// of both, in milliseconds.
fn plan_after_edits(root: &Path, runs: usize, edit: impl Fn(usize)) -> (f64, f64) {
    let ninja = || Command::new("ninja").arg("-C").arg(root).output().unwrap();
    let (mut plans, mut ninjas) = (Vec::new(), Vec::new());
    for round in 1..=runs {
        edit(round);
        let t = Instant::now();
        drop(kbuild(root, &["plan"]));
        plans.push(t.elapsed().as_secs_f64() * 1000.0);
        drop(ninja());
        let t = Instant::now();
        let out = ninja();
        ninjas.push(t.elapsed().as_secs_f64() * 1000.0);
        assert!(String::from_utf8_lossy(&out.stdout).contains("no work to do"));
    }
    (median(plans), median(ninjas))
}

fn main() {
    let series: usize = std::env::var("KBUILD_BENCH_SERIES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let runs: usize = std::env::var("KBUILD_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let big = tempfile::tempdir().unwrap();
    let big = match std::env::var_os("KBUILD_BENCH_KEEP") {
        Some(_) => tempfile::TempDir::keep(big),
        None => big.path().to_path_buf(),
    };
    let big = WsDir(big);
    generate(
        big.path(),
        series,
        &["x86_64", "aarch64", "riscv64"],
        &["dbg", "kasan"],
        &["perf"],
    );
    let cold = Instant::now();
    kbuild(big.path(), &["run", "-j2"]);
    let cold = cold.elapsed().as_secs_f64();
    let actions = write_ninja(big.path());
    let plan = median_ms(runs, || drop(kbuild(big.path(), &["plan"])));
    let null = median_ms(runs, || drop(kbuild(big.path(), &["run"])));
    // JSON output needs every action's report, so it always takes the full path.
    let full = median_ms(runs, || {
        drop(kbuild(big.path(), &["run", "--format", "json"]))
    });
    let ninja = median_ms(runs, || {
        let out = Command::new("ninja")
            .arg("-C")
            .arg(big.path())
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).contains("no work to do"));
    });
    // Planning after a one-file change: before each round one series' config gains a new
    // comment, so every timed `plan` is the first to see its content; ninja's null build is
    // timed in the same rounds, alternating, as the load moves both. The file is restored.
    // (kbuild does not build the edit: each plan sees the same actions to run.)
    let changed = big.path().join("kernel/7.0.x/config-x86_64");
    let original = std::fs::read(&changed).unwrap();
    let edit = |round: usize| {
        let mut edited = original.clone();
        edited.extend_from_slice(format!("# one-file change {round}\n").as_bytes());
        std::fs::write(&changed, &edited).unwrap();
    };
    edit(0);
    let plan_out = kbuild(big.path(), &["plan"]);
    let to_run = String::from_utf8_lossy(&plan_out.stdout)
        .lines()
        .filter(|l| l.starts_with("run "))
        .count();
    assert!(to_run > 0, "the change makes some actions run");
    let (changed_plan, changed_ninja) = plan_after_edits(big.path(), runs, edit);
    std::fs::write(&changed, &original).unwrap();

    // Planning after an edit of kernel.kdl that touches one series: before each round
    // 7.0.x's version moves (a stable bump), so the manifest differs from every kept one;
    // ninja's null build in the same rounds (its edges read kernel.kdl: it first catches up).
    let kdl = big.path().join("kernel.kdl");
    let manifest = std::fs::read_to_string(&kdl).unwrap();
    assert!(manifest.contains("version \"7.0.1\""));
    let (kdl_plan, kdl_ninja) = plan_after_edits(big.path(), runs, |round| {
        let bumped = manifest.replace(
            "version \"7.0.1\"",
            &format!("version \"7.0.{}\"", round + 1),
        );
        std::fs::write(&kdl, bumped).unwrap();
    });
    std::fs::write(&kdl, &manifest).unwrap();

    // Planning after an edit of a declaration that one series alone reads: a variant only
    // 7.0.x builds gets a new localversion before each round. Its first plan, untimed, keeps
    // the graph of the manifest with the variant.
    let with_variant = manifest
        .replacen(
            "tool \"perf\"\n",
            "variant \"one\" {\n    fragment \"kernel/common/config-dbg\"\n    localversion \"-one0\"\n}\ntool \"perf\"\n",
            1,
        )
        .replacen("variants \"dbg\" \"kasan\"\n", "variants \"dbg\" \"kasan\" \"one\"\n", 1);
    assert_ne!(with_variant, manifest);
    std::fs::write(&kdl, &with_variant).unwrap();
    drop(kbuild(big.path(), &["plan"]));
    let (decl_plan, decl_ninja) = plan_after_edits(big.path(), runs, |round| {
        let edited = with_variant.replace("\"-one0\"", &format!("\"-one{round}\""));
        std::fs::write(&kdl, edited).unwrap();
    });
    std::fs::write(&kdl, &manifest).unwrap();

    let small = tempfile::tempdir().unwrap();
    generate(
        small.path(),
        2,
        &["x86_64", "aarch64", "riscv64"],
        &["dbg"],
        &["perf"],
    );
    kbuild(small.path(), &["run", "-j2"]);
    let small_actions = write_ninja(small.path());
    let small_null = median_ms(runs, || drop(kbuild(small.path(), &["run"])));
    let small_ninja = median_ms(runs, || {
        drop(
            Command::new("ninja")
                .arg("-C")
                .arg(small.path())
                .output()
                .unwrap(),
        )
    });

    println!(
        "synthetic workspace: {series} series x 3 arches x 3 variants + perf = {actions} actions"
    );
    println!("  cold build (fake kernel, -j2):   {cold:8.1} s");
    println!("  kbuild plan (load + plan):       {plan:8.1} ms");
    println!("  kbuild run, all cached:          {null:8.1} ms  (fingerprint fast path)");
    println!("  kbuild run, all cached, keyed:   {full:8.1} ms  (full path: lower, key, look up)");
    println!("  ninja, nothing to do:            {ninja:8.1} ms");
    println!(
        "  ratio kbuild null / ninja null:  {:8.2}  (goal <= 1.5)",
        null / ninja
    );
    println!("  ratio full path / ninja null:    {:8.2}", full / ninja);
    println!("  kbuild plan, one file changed:   {changed_plan:8.1} ms  ({to_run} actions to run)");
    println!("  ninja null build, same rounds:   {changed_ninja:8.1} ms");
    println!(
        "  ratio one-file plan / ninja null:{:8.2}  (goal <= 1.5)",
        changed_plan / changed_ninja
    );
    println!("  kbuild plan, kernel.kdl edited:  {kdl_plan:8.1} ms  (one series' version bumped)");
    println!("  ninja null build, same rounds:   {kdl_ninja:8.1} ms");
    println!(
        "  ratio kdl-edit plan / ninja null:{:8.2}  (goal <= 2)",
        kdl_plan / kdl_ninja
    );
    println!(
        "  kbuild plan, a declaration edited:{decl_plan:7.1} ms  (a variant one series builds)"
    );
    println!("  ninja null build, same rounds:   {decl_ninja:8.1} ms");
    println!(
        "  ratio declaration plan / ninja:  {:8.2}  (goal <= 2)",
        decl_plan / decl_ninja
    );
    println!(
        "shipped-matrix-sized workspace: 2 series x 3 arches x 2 variants + perf = {small_actions} actions"
    );
    println!("  kbuild run, all cached:          {small_null:8.1} ms  (goal < 50 ms)");
    println!("  ninja, nothing to do:            {small_ninja:8.1} ms");
    println!("medians of {runs} runs each");
    if std::env::var_os("KBUILD_BENCH_KEEP").is_some() {
        println!("workspace kept at {}", big.path().display());
    }
}

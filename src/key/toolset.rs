//! The programs an action's commands run, as its key sees them: their identity (by content,
//! or the builder image's) enters the key of every action that runs commands, so that another
//! compiler, binutils or pahole builds anew.

use std::collections::BTreeMap;

use crate::action::{Action, Recipe};
use crate::exec::Toolset;

/// What the action asks of its executor; its identity enters the key of an action that runs
/// commands.
pub fn toolset_of(action: &Action) -> Toolset {
    Toolset {
        tools: tools_of(action),
        arch: action.arch,
        builder: action.builder.clone(),
    }
}

/// Exhaustive, with no catch-all: a new kind of action says here what it runs, or the build of
/// kbuild fails, rather than being keyed by a toolchain it does not use.
fn tools_of(action: &Action) -> Vec<String> {
    match &action.recipe {
        Recipe::Patch { .. } => vec!["patch".into()],
        Recipe::Tool(spec) => {
            let mut tools = toolchain(&action.env);
            if spec.strip {
                tools.push(strip_for(&action.env));
            }
            tools.extend(static_libraries(&action.env));
            // A library's make installs with `install`; a tool finds libraries by pkg-config.
            tools.extend(["install".to_string(), "pkg-config".to_string()]);
            if spec.build == crate::model::BuildSystem::Cmake {
                tools.extend(cmake_tools(&action.env));
            }
            tools
        }
        Recipe::Test(spec) => test_tools(spec),
        // The SBOM and the provenance state the kernel's build environment: the compile's toolset.
        Recipe::Headers { .. }
        | Recipe::Sbom(_)
        | Recipe::Attest(_)
        | Recipe::Configure { .. }
        | Recipe::Compile { .. }
        | Recipe::Install { .. } => toolchain(&action.env),
        // kbuild's own work: its code is in the recipe part of the key.
        Recipe::Fetch { .. }
        | Recipe::Snapshot
        | Recipe::CheckConfig(_)
        | Recipe::Package(_)
        | Recipe::Layer(_)
        | Recipe::Image(_)
        | Recipe::Index(_)
        | Recipe::Tag(_) => Vec::new(),
    }
}

/// What a boot test runs: the compiler of its /init with its own programs and libc, the
/// emulator and the firmware it loads (`crate::machine`).
fn test_tools(spec: &crate::action::TestSpec) -> Vec<String> {
    let machine = crate::machine::machine(spec.arch);
    let cross = spec.cc.strip_suffix("gcc").unwrap_or("");
    let mut tools = vec![spec.cc.clone(), format!("{cross}as"), format!("{cross}ld")];
    for question in ["prog-name=cc1", "prog-name=collect2", "file-name=libc.a"] {
        tools.push(format!("{} -print-{question}", spec.cc));
    }
    tools.push("timeout".into());
    tools.push(machine.program.into());
    tools.extend(machine.firmware.iter().map(|f| f.to_string()));
    tools
}

/// Every program a kernel build runs, directly or through make and gcc, for the toolchain `env`
/// selects: the compiler driver and its own programs (`… -print-prog-name=cc1`), the binutils
/// of the target prefix, the host compiler (Kconfig and scripts are host programs), and what
/// Kconfig and the build call. Kconfig writes the versions of `as`, `ld` and `pahole` into
/// `.config`, so each is part of the identity, and so is its absence (no pahole, no BTF).
fn toolchain(env: &BTreeMap<String, String>) -> Vec<String> {
    let mut tools = vec!["make".to_string()];
    if env.contains_key("LLVM") {
        for t in [
            "clang",
            "ld.lld",
            "llvm-objcopy",
            "llvm-objdump",
            "llvm-nm",
            "llvm-ar",
            "llvm-strip",
            "llvm-readelf",
        ] {
            tools.push(t.into());
        }
    } else {
        let cross = env.get("CROSS_COMPILE").map_or("", String::as_str);
        for t in [
            "gcc", "as", "ld", "ld.bfd", "objcopy", "objdump", "nm", "ar", "strip", "readelf",
        ] {
            tools.push(format!("{cross}{t}"));
        }
        for internal in ["cc1", "collect2", "lto-wrapper"] {
            tools.push(format!("{cross}gcc -print-prog-name={internal}"));
        }
        if !cross.is_empty() {
            for t in ["gcc", "gcc -print-prog-name=cc1", "as", "ld"] {
                tools.push(t.into());
            }
        }
    }
    for t in [
        "perl", "flex", "bison", "bc", "openssl", "python3", "xz", "cpio", "depmod", "pahole", "sh",
    ] {
        tools.push(t.into());
    }
    tools
}

/// CMake and the C++ compiler it configures beside the C one (bcc is C++).
fn cmake_tools(env: &BTreeMap<String, String>) -> Vec<String> {
    let cxx = if env.contains_key("LLVM") {
        "clang++".to_string()
    } else {
        let cross = env.get("CROSS_COMPILE").map_or("", String::as_str);
        format!("{cross}g++")
    };
    vec!["cmake".to_string(), cxx]
}

/// The static libraries a statically linked tool may link, as its compiler finds them.
fn static_libraries(env: &BTreeMap<String, String>) -> Vec<String> {
    let cc = match env.get("CROSS_COMPILE") {
        _ if env.contains_key("LLVM") => "clang".to_string(),
        Some(cross) => format!("{cross}gcc"),
        None => "gcc".to_string(),
    };
    [
        "libc.a",
        "libm.a",
        "libpthread.a",
        "libdl.a",
        "librt.a",
        "libelf.a",
        "libz.a",
        "liblzma.a",
        "libzstd.a",
        "libcrypto.a",
    ]
    .iter()
    .map(|lib| format!("{cc} -print-file-name={lib}"))
    .collect()
}

/// The strip of the action's toolchain: LLVM's, or binutils' for the cross prefix.
pub fn strip_for(env: &BTreeMap<String, String>) -> String {
    if env.contains_key("LLVM") {
        return "llvm-strip".into();
    }
    let cross = env.get("CROSS_COMPILE").map_or("", String::as_str);
    format!("{cross}strip")
}

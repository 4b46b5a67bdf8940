//! Tool images (perf and the like) on the fake kernel tree: the manifest's make arguments, the
//! checks that the binary can run alone in its image, and stripping. `tests/real_kernel.rs`
//! builds the real perf.

mod common;

use common::Ws;

const TOOL: &str = "tool \"perf\" {\n    dir \"tools/perf\"\n    binary \"perf\"\n}";

/// The workspace with the perf tool declared by `body` instead.
fn ws_with_tool(body: &str) -> Ws {
    let ws = Ws::new();
    ws.edit("kernel.kdl", TOOL, &format!("tool \"perf\" {{\n{body}\n}}"));
    ws
}

fn sections(path: &std::path::Path) -> String {
    let out = std::process::Command::new("readelf")
        .arg("-S")
        .arg(path)
        .output()
        .expect("readelf (binutils)");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn args_reach_the_tools_make_per_arch_and_rebuild_only_the_tool() {
    // The fake perf prints the ARCH it was made for; a command-line variable overrides it, and
    // the arch's own arguments come after the common ones.
    let ws = ws_with_tool("    args \"ARCH=common\"\n    args \"ARCH=arm-only\" arch=\"aarch64\"");
    ws.run(&["//6.6.x:perf-amd64", "//6.6.x:perf-arm64"], 0);
    assert!(
        ws.read("out/6.6.x/perf-amd64/usr/bin/perf")
            .contains("for common")
    );
    assert!(
        ws.read("out/6.6.x/perf-arm64/usr/bin/perf")
            .contains("for arm-only")
    );

    ws.edit("kernel.kdl", "ARCH=arm-only", "ARCH=arm-again");
    let r = ws.run(&["//6.6.x:perf-amd64", "//6.6.x:perf-arm64"], 0);
    let tools: Vec<_> = r
        .executed()
        .into_iter()
        .filter(|n| n.starts_with("tool "))
        .collect();
    assert_eq!(tools, vec!["tool //6.6.x:perf-arm64"]);
    assert!(
        !r.executed().iter().any(|n| n.starts_with("patch")),
        "{:?}",
        r.executed()
    );
    assert!(
        ws.read("out/6.6.x/perf-arm64/usr/bin/perf")
            .contains("for arm-again")
    );
}

#[test]
fn a_tool_whose_directory_is_not_in_the_tree_is_a_clear_error() {
    let ws = Ws::new();
    ws.edit(
        "kernel.kdl",
        TOOL,
        &format!("{TOOL}\n\ntool \"bpftool\" {{\n    dir \"tools/bpf/bpftool\"\n}}"),
    );
    ws.edit(
        "kernel.kdl",
        "    tools \"perf\"",
        "    tools \"perf\" \"bpftool\"",
    );
    let r = ws.run(&["//6.6.x:bpftool-amd64"], 1);
    assert!(
        r.stderr
            .contains("the tree has no `tools/bpf/bpftool/Makefile`"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("for a tool with a `source` of its own"));
}

#[test]
fn a_dynamically_linked_tool_is_refused_and_a_static_one_is_stripped() {
    let program = "printf 'int main(void){return 0;}' > $(O)/main.c";
    let dynamic = ws_with_tool(&format!(
        "    args \"--eval=dyn: ; {program} && gcc -g -o $(O)/perf $(O)/main.c\" \"dyn\""
    ));
    let r = dynamic.run(&["//6.6.x:perf-amd64"], 1);
    assert!(
        r.stderr.contains("`perf` is dynamically linked"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("args \"LDFLAGS=-static\""),
        "{}",
        r.stderr
    );
    assert_eq!(r.failed(), vec!["tool //6.6.x:perf-amd64"]);

    let fixed = ws_with_tool(&format!(
        "    args \"--eval=st: ; {program} && gcc -static -g -o $(O)/perf $(O)/main.c\" \"st\"\n    \
         strip #true"
    ));
    fixed.run(&["//6.6.x:perf-amd64"], 0);
    let perf = fixed.path().join("out/6.6.x/perf-amd64/usr/bin/perf");
    assert_eq!(kbuild::elf::interpreter(&perf).unwrap(), None);
    let table = sections(&perf);
    assert!(
        !table.contains(".debug_info") && !table.contains(".symtab"),
        "{table}"
    );
    assert!(
        std::process::Command::new(&perf)
            .status()
            .unwrap()
            .success(),
        "the stripped program still runs"
    );
}

/// A library's source: a Makefile that installs a header and a pkg-config file naming its own
/// prefix, as real libraries' `make install` do, packed as `sources/libfake-1.0.tar`.
fn library_source(ws: &Ws) -> String {
    let makefile = "install:\n\
        \tmkdir -p $(DESTDIR)$(prefix)/include/fake $(DESTDIR)$(prefix)/lib/pkgconfig\n\
        \techo '#define FAKE 1' > $(DESTDIR)$(prefix)/include/fake/fake.h\n\
        \tprintf 'prefix=$(prefix)\\nlibdir=$(prefix)/lib\\n\\nName: fake\\nDescription: x\\nVersion: $(VERSION)\\nLibs: -L$${libdir} -lfake\\n' > $(DESTDIR)$(prefix)/lib/pkgconfig/fake.pc\n";
    ws.write("libsrc/Makefile", makefile);
    let tar = ws.path().join("sources/libfake-1.0.tar");
    kbuild::archive::write_tar(
        &ws.path().join("libsrc"),
        &tar,
        "libfake-1.0",
        1_700_000_000,
    )
    .unwrap();
    kbuild::digest::Sha256::of_file(&tar).unwrap().to_string()
}

/// perf that prints what its make found of the library: the version by pkg-config, the flags.
const USES: &str = r##"    uses "libfake"
    args #"--eval=V := $(shell pkg-config --modversion fake)"#
    args #"--eval=lib: ; printf '#!/bin/sh\necho "version $(V) ldflags $(LDFLAGS) cflags $(EXTRA_CFLAGS)"\n' > $(O)/perf && chmod +x $(O)/perf"# "lib"
    args "LDFLAGS=-static""##;

fn ws_with_library() -> Ws {
    let ws = ws_with_tool(USES);
    let sha = library_source(&ws);
    let library = format!(
        "tool \"libfake\" {{\n    library #true\n    source \"file://sources/libfake-1.0.tar\" \
         sha256=\"{sha}\"\n    dir \".\"\n    args \"VERSION=1.0\" \"install\"\n}}\n\n"
    );
    ws.edit(
        "kernel.kdl",
        "tool \"perf\"",
        &format!("{library}tool \"perf\""),
    );
    ws
}

#[test]
fn a_library_from_its_own_source_is_installed_relocatably_and_tools_build_against_it() {
    let ws = ws_with_library();
    let r = ws.run(&["//6.6.x:perf-amd64", "//6.6.x:perf-arm64"], 0);
    let executed = r.executed();
    for name in [
        "library //6.6.x:libfake-amd64",
        "library //6.6.x:libfake-arm64",
    ] {
        assert!(executed.iter().any(|n| n == name), "{executed:?}");
    }
    let unpacks: Vec<_> = executed
        .iter()
        .filter(|n| n.starts_with("unpack "))
        .collect();
    assert_eq!(unpacks.len(), 1, "one unpack for both arches: {executed:?}");
    assert!(unpacks[0].starts_with("unpack libfake-1.0.tar@"));
    // Both arches found the library by pkg-config (a cross build through PKG_CONFIG_LIBDIR)
    // and got its include and library directories beside the manifest's own LDFLAGS.
    for target in ["perf-amd64", "perf-arm64"] {
        let said = ws.read(&format!("out/6.6.x/{target}/usr/bin/perf"));
        assert!(said.contains("version 1.0 "), "{target}: {said}");
        assert!(said.contains("ldflags -static -L/"), "{target}: {said}");
        assert!(said.contains("/usr/lib cflags -I/"), "{target}: {said}");
        assert!(said.contains("/usr/include\""), "{target}: {said}");
    }
    // The installed .pc names its files relative to itself: the cached tree works anywhere.
    let pcs: Vec<String> = common::files_under(&ws.cache.join("trees"))
        .into_iter()
        .filter(|p| p.ends_with("usr/lib/pkgconfig/fake.pc"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert!(!pcs.is_empty());
    for pc in pcs {
        assert!(
            pc.starts_with(
                "prefix=${pcfiledir}/../../../usr\nlibdir=${pcfiledir}/../../../usr/lib\n"
            ),
            "{pc}"
        );
    }

    // A change to the library rebuilds it and its tools, and nothing of the kernel.
    ws.edit("kernel.kdl", "VERSION=1.0", "VERSION=1.1");
    let r = ws.run(&["//6.6.x:perf-amd64"], 0);
    let executed = r.executed();
    assert!(
        executed
            .iter()
            .any(|n| n == "library //6.6.x:libfake-amd64")
    );
    assert!(executed.iter().any(|n| n == "tool //6.6.x:perf-amd64"));
    assert!(
        !executed
            .iter()
            .any(|n| n.starts_with("patch") || n.starts_with("unpack") || n.starts_with("fetch")),
        "{executed:?}"
    );
    assert!(
        ws.read("out/6.6.x/perf-amd64/usr/bin/perf")
            .contains("version 1.1 ")
    );
}

#[test]
fn a_tools_sbom_names_the_library_linked_in_with_its_source() {
    let ws = ws_with_library();
    let out = ws.kbuild(&["sbom", "//6.6.x:perf-arm64"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let library = (doc["packages"].as_array().unwrap().iter())
        .find(|p| p["name"] == "libfake")
        .unwrap_or_else(|| panic!("{doc}"));
    assert_eq!(library["versionInfo"], "libfake-1.0");
    let tar = ws.path().join("sources/libfake-1.0.tar");
    let sha = kbuild::digest::Sha256::of_file(&tar).unwrap().to_string();
    assert_eq!(library["checksums"][0]["checksumValue"], sha.as_str());
    let linked = (doc["relationships"].as_array().unwrap().iter()).any(|r| {
        r["relationshipType"] == "STATIC_LINK" && r["relatedSpdxElement"] == library["SPDXID"]
    });
    assert!(linked, "{doc}");
}

#[test]
fn a_library_is_not_a_target_and_uses_names_only_libraries() {
    let ws = ws_with_library();
    ws.edit(
        "kernel.kdl",
        "    tools \"perf\"",
        "    tools \"perf\" \"libfake\"",
    );
    let stderr = plan_refused(&ws);
    assert!(
        stderr.contains("`libfake` is a library: it has no image to build"),
        "{stderr}"
    );
    assert!(stderr.contains("name it in the `uses`"), "{stderr}");

    let ws = ws_with_library();
    ws.edit("kernel.kdl", "uses \"libfake\"", "uses \"libfak\"");
    let stderr = plan_refused(&ws);
    assert!(
        stderr.contains("`libfak` is not a declared library"),
        "{stderr}"
    );
    assert!(stderr.contains("did you mean `libfake`?"), "{stderr}");

    // `package=` gives a series its version; a tool's tarball is pinned by sha256 or the lock.
    let ws = ws_with_library();
    let text = ws.read("kernel.kdl");
    let start = text.find("    source \"file://sources/libfake").unwrap();
    let end = start + text[start..].find('\n').unwrap();
    ws.edit(
        "kernel.kdl",
        &text[start..end],
        "    source \"file:///usr/src/libfake.tar\" package=\"libfake-source\"",
    );
    let stderr = plan_refused(&ws);
    assert!(
        stderr.contains("`package=` is for a series' source, not a tool's"),
        "{stderr}"
    );
}

#[test]
fn a_libraries_source_is_replaced_like_a_series_source() {
    let ws = ws_with_library();
    // The same library at another path, with its own pin, as kernel.local.kdl maps it.
    let tar = ws.path().join("sources/libfake-1.0.tar");
    let mirror = ws.path().join("mirror/libfake-1.0.tar");
    std::fs::create_dir_all(mirror.parent().unwrap()).unwrap();
    std::fs::rename(&tar, &mirror).unwrap();
    let sha = kbuild::digest::Sha256::of_file(&mirror).unwrap();
    ws.write(
        "kernel.local.kdl",
        &format!(
            "replace \"libfake\" \"file://{}\" sha256=\"{sha}\"\n",
            mirror.display()
        ),
    );
    let r = ws.run(&["//6.6.x:perf-amd64"], 0);
    assert!(
        r.executed()
            .iter()
            .any(|n| n == "library //6.6.x:libfake-amd64")
    );
    assert!(
        ws.read("out/6.6.x/perf-amd64/usr/bin/perf")
            .contains("version 1.0 ")
    );
}

/// `kbuild run LABEL` that must fail in an action (exit 1); its stderr.
fn run_failed(ws: &Ws, label: &str) -> String {
    let r = ws.kbuild(&["run", label]);
    let stderr = String::from_utf8_lossy(&r.stderr).into_owned();
    assert_eq!(r.status.code(), Some(1), "{stderr}");
    stderr
}

/// `kbuild plan` on a manifest it must refuse (exit 2); its stderr.
fn plan_refused(ws: &Ws) -> String {
    let r = ws.kbuild(&["plan"]);
    let stderr = String::from_utf8_lossy(&r.stderr).into_owned();
    assert_eq!(r.status.code(), Some(2), "{stderr}");
    stderr
}

/// A CMake project as bcc is one: a C++ program linked to a shared library of its own, and a
/// script installed under share/, packed as `sources/hello-1.0.tar`. The program prints the
/// GREETING its configure was given.
/// `extra` ends its CMakeLists.txt.
fn cmake_source(ws: &Ws, cxx: bool, extra: &str) -> String {
    let (languages, program) = if cxx {
        (
            "C CXX",
            "#include <cstdio>\nextern \"C\" const char *greet(void);\n\
             int main() { std::printf(\"%s %s\\n\", greet(), GREETING); return 0; }\n",
        )
    } else {
        (
            "C",
            "#include <stdio.h>\nconst char *greet(void);\n\
             int main(void) { printf(\"%s %s\\n\", greet(), GREETING); return 0; }\n",
        )
    };
    let main = if cxx { "hello.cpp" } else { "hello.c" };
    ws.write(
        "cmakesrc/CMakeLists.txt",
        &format!(
            "cmake_minimum_required(VERSION 3.16)\nproject(hello {languages})\n\
             set(GREETING \"world\" CACHE STRING \"what hello greets\")\n\
             add_library(greet SHARED greet.c)\n\
             set_target_properties(greet PROPERTIES VERSION 1.0 SOVERSION 1)\n\
             add_executable(hello {main})\ntarget_link_libraries(hello greet)\n\
             target_compile_definitions(hello PRIVATE GREETING=\"${{GREETING}}\")\n\
             install(TARGETS greet hello)\n\
             install(PROGRAMS tools/trace DESTINATION share/hello/tools)\n{extra}"
        ),
    );
    ws.write("cmakesrc/fake.h", "");
    ws.write(
        "cmakesrc/greet.c",
        "const char *greet(void) { return \"hello\"; }\n",
    );
    ws.write(&format!("cmakesrc/{main}"), program);
    ws.write("cmakesrc/tools/trace", "#!/bin/sh\necho tracing\n");
    let tar = ws.path().join("sources/hello-1.0.tar");
    kbuild::archive::write_tar(
        &ws.path().join("cmakesrc"),
        &tar,
        "hello-1.0",
        1_700_000_000,
    )
    .unwrap();
    kbuild::digest::Sha256::of_file(&tar).unwrap().to_string()
}

/// The fake workspace with a CMake tool `hello` from its own source, `body` inside it.
fn ws_with_cmake_tool(cxx: bool, body: &str) -> Ws {
    ws_with_cmake_project(cxx, body, "")
}

/// [`ws_with_cmake_tool`], with `extra` at the end of the project's CMakeLists.txt.
fn ws_with_cmake_project(cxx: bool, body: &str, extra: &str) -> Ws {
    let ws = Ws::new();
    let sha = cmake_source(&ws, cxx, extra);
    ws.edit(
        "kernel.kdl",
        TOOL,
        &format!(
            "{TOOL}\n\ntool \"hello\" {{\n    source \"file://sources/hello-1.0.tar\" \
             sha256=\"{sha}\"\n    dir \".\"\n    build \"cmake\"\n    binary \"usr/bin/hello\"\n{body}\n}}"
        ),
    );
    ws.edit(
        "kernel.kdl",
        "    tools \"perf\"",
        "    tools \"perf\" \"hello\"",
    );
    ws
}

/// The entries of the image's layers: path, and the link target of a symlink.
fn image_entries(ws: &Ws, reference: &str) -> Vec<(String, Option<String>)> {
    let manifest = ws.layout_blob(ws.layout_entry(reference)["digest"].as_str().unwrap());
    let mut entries = Vec::new();
    for layer in manifest["layers"].as_array().unwrap() {
        let hex = layer["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:");
        let file = std::fs::File::open(ws.path().join("out/blobs/sha256").join(hex)).unwrap();
        let reader: Box<dyn std::io::Read> =
            if layer["mediaType"].as_str().unwrap().ends_with("+gzip") {
                Box::new(flate2::read::MultiGzDecoder::new(file))
            } else {
                Box::new(file)
            };
        for entry in tar::Archive::new(reader).entries().unwrap() {
            let entry = entry.unwrap();
            let link = entry.link_name().unwrap().map(|l| l.display().to_string());
            entries.push((entry.path().unwrap().display().to_string(), link));
        }
    }
    entries
}

#[test]
fn a_cmake_tool_installs_its_tree_and_its_image_holds_it_whole() {
    let ws = ws_with_cmake_tool(true, "    args \"-DGREETING=kbuild\"");
    let r = ws.run(&["//6.6.x:hello-amd64"], 0);
    assert!(
        r.executed().iter().any(|n| n == "tool //6.6.x:hello-amd64"),
        "{:?}",
        r.executed()
    );
    // The image is the installed tree: the program, the library with its version links, and
    // the script, where the project's install rules put them under prefix /usr.
    let root = ws.path().join("out/6.6.x/hello-amd64");
    let run = std::process::Command::new(root.join("usr/bin/hello"))
        .env("LD_LIBRARY_PATH", root.join("usr/lib"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&run.stdout), "hello kbuild\n");
    assert_eq!(
        ws.read("out/6.6.x/hello-amd64/usr/share/hello/tools/trace"),
        "#!/bin/sh\necho tracing\n"
    );
    let entries = image_entries(&ws, "linuxkit/kernel-hello:6.6.71-amd64");
    let has = |path: &str, link: Option<&str>| {
        entries
            .iter()
            .any(|(p, l)| p.trim_end_matches('/') == path && l.as_deref() == link)
    };
    assert!(has("usr/bin/hello", None), "{entries:?}");
    assert!(
        has("usr/lib/libgreet.so", Some("libgreet.so.1")),
        "{entries:?}"
    );
    assert!(
        has("usr/lib/libgreet.so.1", Some("libgreet.so.1.0")),
        "{entries:?}"
    );
    assert!(has("usr/lib/libgreet.so.1.0", None), "{entries:?}");
    assert!(has("usr/share/hello/tools/trace", None), "{entries:?}");
    assert!(has("kernel-source-info", None), "{entries:?}");

    // Its configure arguments are part of its key: a change rebuilds the tool alone.
    ws.edit("kernel.kdl", "-DGREETING=kbuild", "-DGREETING=again");
    let r = ws.run(&["//6.6.x:hello-amd64"], 0);
    let executed = r.executed();
    assert!(executed.iter().any(|n| n == "tool //6.6.x:hello-amd64"));
    assert!(
        !executed
            .iter()
            .any(|n| n.starts_with("unpack") || n.starts_with("fetch") || n.contains("perf")),
        "{executed:?}"
    );
    let run = std::process::Command::new(root.join("usr/bin/hello"))
        .env("LD_LIBRARY_PATH", root.join("usr/lib"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&run.stdout), "hello again\n");
}

#[test]
fn a_cmake_tool_without_its_files_or_with_a_bad_option_is_a_clear_error() {
    // `binary` names a file of the installed tree; one the install did not write is an error.
    let ws = ws_with_cmake_tool(false, "");
    ws.edit(
        "kernel.kdl",
        "binary \"usr/bin/hello\"",
        "binary \"usr/bin/hullo\"",
    );
    let stderr = run_failed(&ws, "//6.6.x:hello-amd64");
    assert!(
        stderr.contains("the install left no `usr/bin/hullo` in the tool's tree"),
        "{stderr}"
    );

    // Without `binary`, an installed tool must install usr/bin/<name>.
    let ws = ws_with_cmake_tool(false, "");
    ws.edit("kernel.kdl", "    binary \"usr/bin/hello\"\n", "");
    ws.run(&["//6.6.x:hello-amd64"], 0);
    let ws = ws_with_cmake_tool(false, "");
    ws.edit("kernel.kdl", "    binary \"usr/bin/hello\"\n", "");
    ws.edit("kernel.kdl", "tool \"hello\"", "tool \"hullo\"");
    ws.edit("kernel.kdl", "\"perf\" \"hello\"", "\"perf\" \"hullo\"");
    let stderr = run_failed(&ws, "//6.6.x:hullo-amd64");
    assert!(
        stderr.contains("the install left no `usr/bin/hullo` in the tool's tree"),
        "{stderr}"
    );

    // A directory without CMakeLists.txt.
    let ws = ws_with_cmake_tool(false, "");
    ws.edit(
        "kernel.kdl",
        "    dir \".\"\n    build",
        "    dir \"tools\"\n    build",
    );
    let stderr = run_failed(&ws, "//6.6.x:hello-amd64");
    assert!(
        stderr.contains("the source has no `tools/CMakeLists.txt`"),
        "{stderr}"
    );

    // An unknown build system, and `strip` on a tree, are refused before anything runs.
    let ws = ws_with_cmake_tool(false, "");
    ws.edit("kernel.kdl", "build \"cmake\"", "build \"cmak\"");
    let stderr = plan_refused(&ws);
    assert!(
        stderr.contains("`cmak` is not a build system kbuild knows"),
        "{stderr}"
    );
    assert!(stderr.contains("did you mean `cmake`?"), "{stderr}");
    let ws = ws_with_cmake_tool(false, "    strip #true");
    let stderr = plan_refused(&ws);
    assert!(
        stderr.contains("`hello` installs a tree, and `strip` is for a tool of one binary"),
        "{stderr}"
    );
}

#[test]
fn kernel_files_put_the_kernels_headers_beside_the_tools_tree_as_linuxkits_bcc_image() {
    let ws = ws_with_cmake_tool(false, "    kernel-files #true");
    let r = ws.run(&["//6.6.x:hello-amd64"], 0);
    // The plain kernel of the series and arch is built for its headers and kernel-dev.tar.
    let executed = r.executed();
    for name in ["install //6.6.x:amd64", "headers //6.6.x:amd64"] {
        assert!(executed.iter().any(|n| n == name), "{executed:?}");
    }
    let entries = image_entries(&ws, "linuxkit/kernel-hello:6.6.71-amd64");
    let has = |path: &str| entries.iter().any(|(p, _)| p.trim_end_matches('/') == path);
    assert!(has("usr/bin/hello"), "{entries:?}");
    assert!(has("usr/include/linux/fake.h"), "{entries:?}");
    assert!(
        has("usr/src/linux-headers-6.6.71-linuxkit/include/config/kernel.release"),
        "{entries:?}"
    );

    // A path both write is an error that names it.
    let ws = ws_with_cmake_project(
        false,
        "    kernel-files #true",
        "install(FILES fake.h DESTINATION include/linux)\n",
    );
    let stderr = run_failed(&ws, "//6.6.x:hello-amd64");
    assert!(
        stderr.contains(
            "the tool's `usr/include/linux/fake.h` is also in the kernel's headers or development files"
        ),
        "{stderr}"
    );

    // On a tool of one binary, or a library, it is refused.
    let ws = ws_with_tool("    kernel-files #true");
    let stderr = plan_refused(&ws);
    assert!(
        stderr.contains("`kernel-files` puts the kernel's headers beside an installed tree, and `perf` is one binary"),
        "{stderr}"
    );
}

/// Cross compiling needs Debian's gcc-aarch64-linux-gnu (installed by `.ci/setup` with
/// KBUILD_SETUP_REAL=1).
#[test]
#[ignore = "needs the aarch64 cross compiler; cargo test -- --include-ignored"]
fn a_cmake_tool_is_cross_compiled_for_a_foreign_arch() {
    let ws = ws_with_cmake_tool(false, "");
    ws.run(&["//6.6.x:hello-arm64"], 0);
    let header = std::process::Command::new("readelf")
        .arg("-h")
        .arg(ws.path().join("out/6.6.x/hello-arm64/usr/bin/hello"))
        .output()
        .unwrap();
    let header = String::from_utf8_lossy(&header.stdout);
    assert!(header.contains("AArch64"), "{header}");
    let header = std::process::Command::new("readelf")
        .arg("-h")
        .arg(
            ws.path()
                .join("out/6.6.x/hello-arm64/usr/lib/libgreet.so.1.0"),
        )
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&header.stdout).contains("AArch64"));
}

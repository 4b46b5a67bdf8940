//! LinuxKit's flat layout (until 2023): every series' configs at the top of kernel/ as
//! `config-<series>-<arch>` (`…-<arch>-rt` for the rt kernels), its patches in
//! `patches-<series>/` (`patches-<series>-rt/`), and its version only in the Makefile's
//! `$(eval $(call kernel,6.1.59,6.1.x,$(EXTRA),$(DEBUG)))` lines. Imported into kbuild's layout,
//! which is LinuxKit's later one: `kernel/<series>/config-<arch>` and `patches/`, the rt files
//! as the variant folder `kernel/<series>-rt/`.

use std::collections::BTreeMap;
use std::path::Path;

use super::{Report, Series, copy_tree, place};
use crate::arch::Arch;

/// What the flat layout gave: the series, and the top-level names it took.
#[derive(Default)]
pub(super) struct Flat {
    pub series: BTreeMap<String, Series>,
    pub taken: Vec<String>,
}

/// One `$(call kernel,VERSION,SERIES,EXTRA,…)` of the Makefile.
#[derive(Debug, PartialEq)]
struct Call {
    version: String,
    series: String,
    /// `-rt` for an rt kernel; empty (or a variable) for the plain one.
    extra: String,
}

/// The Makefile's kernel calls, arguments split at the commas outside `$(…)`.
fn calls(makefile: &str) -> Vec<Call> {
    let mut out = Vec::new();
    for (at, _) in makefile.match_indices("call kernel,") {
        let rest = &makefile[at + "call kernel,".len()..];
        let (mut depth, mut args, mut arg) = (0i32, Vec::new(), String::new());
        for c in rest.chars() {
            match c {
                '(' => depth += 1,
                ')' if depth == 0 => break,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    args.push(std::mem::take(&mut arg));
                    continue;
                }
                '\n' => break,
                _ => {}
            }
            arg.push(c);
        }
        args.push(arg);
        let [version, series, rest @ ..] = args.as_slice() else {
            continue;
        };
        let (version, series) = (version.trim(), series.trim());
        if semver::Version::parse(version).is_err() || !super::is_series_name(series) {
            continue;
        }
        let extra = rest.first().map(|e| e.trim()).unwrap_or("");
        out.push(Call {
            version: version.to_string(),
            series: series.to_string(),
            extra: if extra.starts_with('-') {
                extra.to_string()
            } else {
                String::new()
            },
        });
    }
    out
}

/// Imports the flat layout's series from `lk` into `dest`; nothing when the Makefile calls none.
pub(super) fn import(lk: &Path, dest: &Path, report: &mut Report) -> std::io::Result<Flat> {
    let makefile = std::fs::read_to_string(lk.join("Makefile")).unwrap_or_default();
    let mut flat = Flat::default();
    let calls = calls(&makefile);
    let plain: Vec<&str> = (calls.iter())
        .filter(|c| c.extra.is_empty())
        .map(|c| c.series.as_str())
        .collect();
    for call in &calls {
        // An rt kernel of a series LinuxKit also built plain is that series' rt variant; one
        // it built only as rt is imported as the series itself, from the rt files.
        let variant = !call.extra.is_empty() && plain.contains(&call.series.as_str());
        let folder = match variant {
            true => format!("{}{}", call.series, call.extra),
            false => call.series.clone(),
        };
        let out = dest.join("kernel").join(&folder);
        let mut arches = Vec::new();
        let mut files = Vec::new();
        for arch in Arch::ALL {
            let name = arch.kernel_name();
            let file = format!("config-{}-{name}{}", call.series, call.extra);
            if lk.join(&file).is_file() {
                place(&lk.join(&file), &out.join(format!("config-{name}")))?;
                arches.push(arch);
                files.push(file.clone());
                flat.taken.push(file);
            }
        }
        let patches = format!("patches-{}{}", call.series, call.extra);
        if lk.join(&patches).is_dir() {
            copy_tree(&lk.join(&patches), &out.join("patches"))?;
            files.push(format!("{patches}/"));
            flat.taken.push(patches);
        }
        if arches.is_empty() {
            report.unmapped.push(format!(
                "Makefile: $(call kernel,{},{},{}…): no config-{}-<arch>{} file beside it",
                call.version, call.series, call.extra, call.series, call.extra
            ));
            continue;
        }
        report.notes.push(format!(
            "Makefile: $(call kernel,{},{},{}…), {}: {} (LinuxKit's flat layout until 2023, \
             now kernel/{folder}/)",
            call.version,
            call.series,
            call.extra,
            files.join(", "),
            match variant {
                true => format!("variant \"{}\" of series {}", &call.extra[1..], call.series),
                false => format!("series {} at {}", call.series, call.version),
            }
        ));
        if variant {
            let v = call.extra[1..].to_string();
            if let Some(s) = flat.series.get_mut(&call.series) {
                s.variants.push(v.clone());
            }
            if !report.variants.contains(&v) {
                report.variants.push(v);
            }
        } else {
            flat.series.insert(
                call.series.clone(),
                Series {
                    version: call.version.clone(),
                    arches,
                    ..Series::default()
                },
            );
        }
    }
    Ok(flat)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_calls_of_the_makefile() {
        let makefile = "$(eval $(call kernel,6.1.59,6.1.x,$(EXTRA),$(DEBUG)))\n\
                        $(eval $(call kernel,5.11.4,5.11.x,-rt,))\n\
                        define kernel\n  $(call kernel,$(1),$(2))\n";
        assert_eq!(
            calls(makefile),
            vec![
                Call {
                    version: "6.1.59".into(),
                    series: "6.1.x".into(),
                    extra: String::new()
                },
                Call {
                    version: "5.11.4".into(),
                    series: "5.11.x".into(),
                    extra: "-rt".into()
                },
            ]
        );
    }
}

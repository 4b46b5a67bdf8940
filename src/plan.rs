//! Lowering: targets of the model become a graph of shared, typed actions.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use crate::action::{
    Action, ActionId, ActionKind, ConfigSpec, Dep, PackageSpec, Recipe, Role, TagSpec,
};
use crate::arch::Arch;
use crate::graph::{CycleError, Graph};
use crate::label::{Label, TargetKind};
use crate::model::{Model, Series, VariantSet, expand};

/// Lowers `targets` into a graph. Actions that do not depend on the variant or arch are shared.
pub fn lower(model: &Model, targets: &[Label]) -> Result<Graph, CycleError> {
    let mut lowerer = Lowerer {
        model,
        graph: Graph::default(),
        envs: HashMap::new(),
    };
    for label in targets {
        lowerer.target(label);
    }
    lowerer.graph.check_acyclic()?;
    Ok(lowerer.graph)
}

struct Lowerer<'a> {
    model: &'a Model,
    graph: Graph,
    /// Toolchain environments by series and arch, built once and shared.
    envs: HashMap<(String, Arch), Arc<BTreeMap<String, String>>>,
}

/// Which of a target's variants bring patches: they decide which patched tree it builds from.
fn patching_variants(model: &Model, set: &VariantSet) -> Vec<String> {
    model
        .variants_of(set)
        .filter(|v| v.patches.is_some())
        .map(|v| v.name.clone())
        .collect()
}

/// Every patch directory the targets' trees are made from (present on disk or not).
pub fn patch_dirs(model: &Model, targets: &[Label]) -> Vec<String> {
    let mut dirs: Vec<String> = Vec::new();
    for label in targets {
        let Some(series) = model.series(&label.series) else {
            continue;
        };
        let set = label.variants().cloned().unwrap_or_default();
        let variant_dirs = model.variants_of(&set).filter_map(|v| v.patches.as_ref());
        for dir in variant_dirs.chain(std::iter::once(&series.patches)) {
            let dir = expand(dir, &series.name, None);
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
    }
    dirs
}

/// `*.patch` files of a directory in numeric-prefix order; a missing directory has none.
pub fn patch_files(root: &Path, dir: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".patch"))
        .collect();
    names.sort_by_key(|n| (numeric_prefix(n), n.clone()));
    names.into_iter().map(|n| format!("{dir}/{n}")).collect()
}

fn numeric_prefix(name: &str) -> u64 {
    let digits: String = name.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap_or(u64::MAX)
}

impl Lowerer<'_> {
    fn add(
        &mut self,
        kind: ActionKind,
        name: String,
        label: &Label,
        recipe: Recipe,
        deps: Vec<Dep>,
        arch: Option<Arch>,
    ) -> ActionId {
        let env = match arch.filter(|_| kind.uses_toolchain()) {
            Some(arch) => self.shared_env(&label.series, arch),
            None => Arc::default(),
        };
        let inputs = Action::inputs_of(&recipe);
        let action = Action {
            kind,
            name,
            labels: vec![label.clone()],
            recipe,
            inputs,
            deps,
            env,
            arch,
        };
        self.graph.add(action)
    }

    /// The action of that name if it was lowered already, with `label` added to those it serves.
    /// Checked before building an action, so shared actions are built (and their patch
    /// directories read) once.
    fn existing(&mut self, name: &str, label: &Label) -> Option<ActionId> {
        let id = self.graph.find(name)?;
        self.graph.add_label(id, label);
        Some(id)
    }

    fn series(&self, label: &Label) -> &Series {
        self.model
            .series(&label.series)
            .expect("labels come from the model")
    }

    fn shared_env(&mut self, series: &str, arch: Arch) -> Arc<BTreeMap<String, String>> {
        if let Some(env) = self.envs.get(&(series.to_string(), arch)) {
            return env.clone();
        }
        let env = Arc::new(self.toolchain_env(series, arch));
        self.envs.insert((series.to_string(), arch), env.clone());
        env
    }

    /// The environment of every command that runs the kernel's make: reproducible by construction.
    fn toolchain_env(&self, series: &str, arch: Arch) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        env.insert("ARCH".into(), arch.make_arch().into());
        env.insert("CROSS_COMPILE".into(), self.model.cross_compile(arch));
        env.insert("KBUILD_BUILD_USER".into(), "kbuild".into());
        env.insert("KBUILD_BUILD_HOST".into(), "kbuild".into());
        env.insert("KBUILD_BUILD_VERSION".into(), "1".into());
        env.insert("LC_ALL".into(), "C".into());
        env.insert("TZ".into(), "UTC".into());
        if let Some(epoch) = self.model.series(series).and_then(|s| s.source_date_epoch) {
            env.insert("KBUILD_BUILD_TIMESTAMP".into(), format!("@{epoch}"));
            env.insert("SOURCE_DATE_EPOCH".into(), epoch.to_string());
        }
        env
    }

    fn target(&mut self, label: &Label) {
        match &label.kind {
            TargetKind::Kernel(_) => {
                self.tag(label);
            }
            TargetKind::Tool(tool) => {
                let tool = tool.clone();
                self.tool(label, &tool);
            }
        }
    }

    fn fetch(&mut self, label: &Label) -> ActionId {
        let source = &self.series(label).source;
        let file = source.file_name().to_string();
        let pin = source
            .sha256
            .as_ref()
            .map_or("unpinned", |sha| &sha.as_str()[..12]);
        let name = format!("fetch {file}@{pin}");
        if let Some(id) = self.existing(&name, label) {
            return id;
        }
        let source = self.series(label).source.clone();
        let recipe = Recipe::Fetch {
            urls: source.urls,
            sha256: source.sha256.as_ref().map(ToString::to_string),
            file,
        };
        self.add(ActionKind::Fetch, name, label, recipe, vec![], None)
    }

    /// The tree a target builds from: `//6.6.x` for plain patches, `//6.6.x:rt` with rt's.
    fn tree_name(&self, label: &Label, set: &VariantSet) -> String {
        let patching = patching_variants(self.model, set);
        if patching.is_empty() {
            format!("//{}", label.series)
        } else {
            format!("//{}:{}", label.series, patching.join("-"))
        }
    }

    fn patch(&mut self, label: &Label, set: &VariantSet) -> ActionId {
        let name = format!("patch {}", self.tree_name(label, set));
        if let Some(id) = self.existing(&name, label) {
            return id;
        }
        let source = self.fetch(label);
        let series = self.series(label);
        let mut patches = Vec::new();
        for variant in self.model.variants_of(set) {
            if let Some(dir) = &variant.patches {
                patches.extend(patch_files(
                    &self.model.root,
                    &expand(dir, &series.name, None),
                ));
            }
        }
        patches.extend(patch_files(
            &self.model.root,
            &expand(&series.patches, &series.name, None),
        ));
        let deps = vec![Dep {
            role: Role::Source,
            id: source,
        }];
        self.add(
            ActionKind::Patch,
            name,
            label,
            Recipe::Patch { patches },
            deps,
            None,
        )
    }

    fn headers(&mut self, label: &Label, set: &VariantSet) -> ActionId {
        let tree_name = self.tree_name(label, set);
        let sep = if tree_name.contains(':') { "-" } else { ":" };
        let name = format!("headers {tree_name}{sep}{}", label.arch);
        if let Some(id) = self.existing(&name, label) {
            return id;
        }
        let tree = self.patch(label, set);
        let deps = vec![Dep {
            role: Role::Tree,
            id: tree,
        }];
        self.add(
            ActionKind::Headers,
            name,
            label,
            Recipe::Headers { arch: label.arch },
            deps,
            Some(label.arch),
        )
    }

    fn config_spec(&self, label: &Label, set: &VariantSet) -> ConfigSpec {
        let series = self.series(label);
        let mut spec = ConfigSpec {
            arch: label.arch,
            config: series.config_path(label.arch),
            fragments: Vec::new(),
            force_off: Vec::new(),
            localversion: self.model.defaults.localversion.clone(),
            exact: true,
        };
        for variant in self.model.variants_of(set) {
            spec.fragments.extend(
                variant
                    .fragments
                    .iter()
                    .map(|f| expand(f, &series.name, Some(label.arch))),
            );
            spec.force_off.extend(variant.force_off.iter().cloned());
            spec.localversion.push_str(&variant.localversion_suffix);
            spec.exact &= variant.exact_config;
        }
        spec
    }

    fn configure(&mut self, label: &Label, set: &VariantSet) -> ActionId {
        if let Some(id) = self.existing(&format!("configure {label}"), label) {
            return id;
        }
        let tree = self.patch(label, set);
        let recipe = Recipe::Configure(self.config_spec(label, set));
        let deps = vec![Dep {
            role: Role::Tree,
            id: tree,
        }];
        self.add(
            ActionKind::Configure,
            format!("configure {label}"),
            label,
            recipe,
            deps,
            Some(label.arch),
        )
    }

    fn check(&mut self, label: &Label, set: &VariantSet) -> ActionId {
        if let Some(id) = self.existing(&format!("check-config {label}"), label) {
            return id;
        }
        let config = self.configure(label, set);
        let recipe = Recipe::CheckConfig(self.config_spec(label, set));
        let deps = vec![Dep {
            role: Role::Config,
            id: config,
        }];
        self.add(
            ActionKind::CheckConfig,
            format!("check-config {label}"),
            label,
            recipe,
            deps,
            None,
        )
    }

    fn build_dir(label: &Label) -> String {
        format!("{}/{}", label.series, label.name())
    }

    fn compile(&mut self, label: &Label, set: &VariantSet) -> ActionId {
        if let Some(id) = self.existing(&format!("compile {label}"), label) {
            return id;
        }
        let tree = self.patch(label, set);
        let config = self.configure(label, set);
        let check = self.check(label, set);
        let extra_outputs = self
            .model
            .variants_of(set)
            .flat_map(|v| v.outputs.iter().cloned())
            .collect();
        let recipe = Recipe::Compile {
            arch: label.arch,
            build_dir: Self::build_dir(label),
            extra_outputs,
        };
        let deps = vec![
            Dep {
                role: Role::Tree,
                id: tree,
            },
            Dep {
                role: Role::Config,
                id: config,
            },
            Dep {
                role: Role::Check,
                id: check,
            },
        ];
        self.add(
            ActionKind::Compile,
            format!("compile {label}"),
            label,
            recipe,
            deps,
            Some(label.arch),
        )
    }

    fn install(&mut self, label: &Label, set: &VariantSet) -> ActionId {
        if let Some(id) = self.existing(&format!("install {label}"), label) {
            return id;
        }
        let tree = self.patch(label, set);
        let config = self.configure(label, set);
        let kernel = self.compile(label, set);
        let recipe = Recipe::Install {
            arch: label.arch,
            build_dir: Self::build_dir(label),
        };
        let deps = vec![
            Dep {
                role: Role::Tree,
                id: tree,
            },
            Dep {
                role: Role::Config,
                id: config,
            },
            Dep {
                role: Role::Kernel,
                id: kernel,
            },
        ];
        self.add(
            ActionKind::Install,
            format!("install {label}"),
            label,
            recipe,
            deps,
            Some(label.arch),
        )
    }

    fn package_spec(
        &self,
        label: &Label,
        set: &VariantSet,
        tool_binary: Option<String>,
    ) -> PackageSpec {
        let series = self.series(label);
        let tree = self
            .graph
            .find(&format!("patch {}", self.tree_name(label, set)));
        let patches = match tree.map(|id| &self.graph.action(id).recipe) {
            Some(Recipe::Patch { patches }) => patches.clone(),
            _ => Vec::new(),
        };
        PackageSpec {
            builder: series.builder.clone(),
            version: series.version.to_string(),
            source_url: series.source.urls[0].clone(),
            source_sha256: series
                .source
                .sha256
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            patches,
            tool_binary,
        }
    }

    fn package(&mut self, label: &Label, set: &VariantSet) -> ActionId {
        if let Some(id) = self.existing(&format!("package {label}"), label) {
            return id;
        }
        let kernel = self.compile(label, set);
        let modules = self.install(label, set);
        let headers = self.headers(label, set);
        let recipe = Recipe::Package(self.package_spec(label, set, None));
        let deps = vec![
            Dep {
                role: Role::Kernel,
                id: kernel,
            },
            Dep {
                role: Role::Modules,
                id: modules,
            },
            Dep {
                role: Role::Headers,
                id: headers,
            },
        ];
        self.add(
            ActionKind::Package,
            format!("package {label}"),
            label,
            recipe,
            deps,
            None,
        )
    }

    fn tag_spec(&self, label: &Label, image: String, variant: &str) -> TagSpec {
        let series = self.series(label);
        let prefix = if variant.is_empty() {
            series.version.to_string()
        } else {
            format!("{}-{variant}", series.version)
        };
        TagSpec {
            repository: format!("{}/{image}", self.model.defaults.org),
            prefix,
            arch: label.arch,
        }
    }

    fn tag(&mut self, label: &Label) -> ActionId {
        if let Some(id) = self.existing(&format!("tag {label}"), label) {
            return id;
        }
        let set = label.variants().cloned().unwrap_or_default();
        let image = self.package(label, &set);
        let spec = self.tag_spec(label, self.model.defaults.image.clone(), &set.name());
        let deps = vec![Dep {
            role: Role::Image,
            id: image,
        }];
        self.add(
            ActionKind::Tag,
            format!("tag {label}"),
            label,
            Recipe::Tag(spec),
            deps,
            None,
        )
    }

    fn tool(&mut self, label: &Label, name: &str) -> ActionId {
        let tool = self
            .model
            .tool(name)
            .expect("tools come from the model")
            .clone();
        let plain = VariantSet::default();
        let mut deps = vec![Dep {
            role: Role::Tree,
            id: self.patch(label, &plain),
        }];
        if tool.needs_headers {
            deps.push(Dep {
                role: Role::Headers,
                id: self.headers(label, &plain),
            });
        }
        let recipe = Recipe::Tool {
            arch: label.arch,
            dir: tool.dir.clone(),
            binary: tool.binary.clone(),
        };
        let built = self.add(
            ActionKind::Tool,
            format!("tool {label}"),
            label,
            recipe,
            deps,
            Some(label.arch),
        );
        let spec = self.package_spec(label, &plain, Some(tool.binary.clone()));
        let deps = vec![Dep {
            role: Role::Tool,
            id: built,
        }];
        let image = self.add(
            ActionKind::Package,
            format!("package {label}"),
            label,
            Recipe::Package(spec),
            deps,
            None,
        );
        let spec = self.tag_spec(
            label,
            format!("{}-{}", self.model.defaults.image, tool.name),
            "",
        );
        let deps = vec![Dep {
            role: Role::Image,
            id: image,
        }];
        self.add(
            ActionKind::Tag,
            format!("tag {label}"),
            label,
            Recipe::Tag(spec),
            deps,
            None,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::numeric_prefix;

    #[test]
    fn numeric_prefix_orders_numbers_not_strings() {
        assert!(numeric_prefix("2-a.patch") < numeric_prefix("10-b.patch"));
        assert_eq!(numeric_prefix("x.patch"), u64::MAX);
    }
}

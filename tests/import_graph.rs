//! The import graph of src/ has no circles: no top-level module reaches itself through the
//! modules it imports, and no file imports a file that imports it back (a folder's module file
//! and the files inside that folder count as one, see `front_door`). Arrows point one way
//! along the data flow (doc/design.md), so a module can be read, tested and replaced knowing
//! only what lies below it.
//!
//! Each file is parsed (syn), its unit tests left out, and every path it names that leads into
//! the crate (`crate::…`, `super::…`, a child module, or a name it imported) is followed to the
//! file that defines the item, through re-exports, so `cache::Blob` counts as an arrow to the
//! file that declares `Blob`, not to cache/mod.rs. Paths inside macro calls are not seen.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use petgraph::algo::tarjan_scc;
use petgraph::graph::DiGraph;
use syn::visit::Visit;

type ModPath = Vec<String>;

/// One source file: what it defines at its top level, what it imports and what it names.
#[derive(Default)]
struct FileFacts {
    defs: BTreeSet<String>,
    /// Imported name -> the path it stands for (as written, first segment included).
    uses: HashMap<String, Vec<String>>,
    /// Every path into the crate the file names, with the module it was named in.
    refs: Vec<Vec<String>>,
}

struct Collector<'a> {
    facts: &'a mut FileFacts,
    depth: usize,
}

fn is_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.parse_args::<syn::Meta>()
                .is_ok_and(|m| m.path().is_ident("test"))
    })
}

/// An item's attributes, and the name it defines at its module's top level, if any.
fn item_facts(item: &syn::Item) -> (&[syn::Attribute], Option<String>) {
    let (attrs, ident) = match item {
        syn::Item::Const(i) => (&i.attrs, Some(&i.ident)),
        syn::Item::Enum(i) => (&i.attrs, Some(&i.ident)),
        syn::Item::Fn(i) => (&i.attrs, Some(&i.sig.ident)),
        syn::Item::Impl(i) => (&i.attrs, None),
        syn::Item::Macro(i) => (&i.attrs, i.ident.as_ref()),
        syn::Item::Mod(i) => (&i.attrs, Some(&i.ident)),
        syn::Item::Static(i) => (&i.attrs, Some(&i.ident)),
        syn::Item::Struct(i) => (&i.attrs, Some(&i.ident)),
        syn::Item::Trait(i) => (&i.attrs, Some(&i.ident)),
        syn::Item::Type(i) => (&i.attrs, Some(&i.ident)),
        syn::Item::Union(i) => (&i.attrs, Some(&i.ident)),
        syn::Item::Use(i) => (&i.attrs, None),
        _ => return (&[], None),
    };
    (attrs.as_slice(), ident.map(|i| i.to_string()))
}

fn use_leaves(tree: &syn::UseTree, prefix: &mut Vec<String>, out: &mut Vec<(String, Vec<String>)>) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            use_leaves(&p.tree, prefix, out);
            prefix.pop();
        }
        syn::UseTree::Name(n) => {
            let name = n.ident.to_string();
            if name == "self" {
                out.push((prefix.last().cloned().unwrap_or_default(), prefix.clone()));
            } else {
                let mut path = prefix.clone();
                path.push(name.clone());
                out.push((name, path));
            }
        }
        syn::UseTree::Rename(r) => {
            let mut path = prefix.clone();
            path.push(r.ident.to_string());
            out.push((r.rename.to_string(), path));
        }
        syn::UseTree::Glob(_) => out.push(("*".into(), prefix.clone())),
        syn::UseTree::Group(g) => {
            for t in &g.items {
                use_leaves(t, prefix, out);
            }
        }
    }
}

impl<'ast> Visit<'ast> for Collector<'_> {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        let (attrs, name) = item_facts(item);
        if is_test(attrs) {
            return;
        }
        if self.depth == 0
            && let Some(name) = name
        {
            self.facts.defs.insert(name);
        }
        if let syn::Item::Use(u) = item {
            let mut leaves = Vec::new();
            use_leaves(&u.tree, &mut Vec::new(), &mut leaves);
            for (name, path) in leaves {
                self.facts.refs.push(path.clone());
                if name != "*" && self.depth == 0 {
                    self.facts.uses.insert(name, path);
                }
            }
            return;
        }
        self.depth += 1;
        syn::visit::visit_item(self, item);
        self.depth -= 1;
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        self.facts.refs.push(segments);
        syn::visit::visit_path(self, path);
    }
}

/// Every `.rs` file under `src`.
fn rust_files(src: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files
}

struct Crate {
    files: BTreeMap<ModPath, (PathBuf, FileFacts)>,
}

impl Crate {
    fn read(src: &Path) -> Crate {
        let mut files = BTreeMap::new();
        for path in rust_files(src) {
            if path == src.join("main.rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap().with_extension("");
            let mut module: ModPath = rel.iter().map(|c| c.to_string_lossy().into()).collect();
            if matches!(module.last().map(String::as_str), Some("mod" | "lib")) {
                module.pop();
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let file = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let mut facts = FileFacts::default();
            let mut collector = Collector {
                facts: &mut facts,
                depth: 0,
            };
            for item in &file.items {
                collector.visit_item(item);
            }
            let rel = path
                .strip_prefix(src.parent().unwrap())
                .unwrap()
                .to_path_buf();
            files.insert(module, (rel, facts));
        }
        Crate { files }
    }

    /// The module path and the index of the first segment that is not a module, for an
    /// already expanded path.
    fn resolve_module(&self, from: &ModPath, path: &[String]) -> Option<(ModPath, usize)> {
        let mut module = from.clone();
        let mut i = 0;
        match path.first().map(String::as_str)? {
            "crate" => {
                module.clear();
                i = 1;
            }
            "self" => i = 1,
            "super" => {
                while path.get(i).is_some_and(|s| s == "super") {
                    module.pop();
                    i += 1;
                }
            }
            _ => {}
        }
        if i == 0 {
            let mut child = from.clone();
            child.push(path[0].clone());
            if !self.files.contains_key(&child) {
                return None;
            }
        }
        Some((module, i))
    }

    /// The file (module) that defines what `path`, named in module `from`, stands for.
    fn target(&self, from: &ModPath, path: &[String], depth: usize) -> Option<ModPath> {
        if depth > 8 || path.is_empty() {
            return None;
        }
        let expanded = self.expand(from, path)?;
        let (mut module, mut i) = self.resolve_module(from, &expanded)?;
        while let Some(segment) = expanded.get(i) {
            let mut child = module.clone();
            child.push(segment.clone());
            if self.files.contains_key(&child) {
                module = child;
                i += 1;
                continue;
            }
            let facts = &self.files.get(&module)?.1;
            if !facts.defs.contains(segment)
                && let Some(reexport) = facts.uses.get(segment)
            {
                return self.target(&module, reexport, depth + 1).or(Some(module));
            }
            return Some(module);
        }
        // A bare module (`use crate::cache;`): its uses are counted where they are named.
        None
    }

    /// A path whose first segment is a name the file imported, spelt out.
    fn expand(&self, from: &ModPath, path: &[String]) -> Option<Vec<String>> {
        let first = path.first()?;
        if matches!(first.as_str(), "crate" | "self" | "super") {
            return Some(path.to_vec());
        }
        let mut child = from.clone();
        child.push(first.clone());
        if self.files.contains_key(&child) {
            return Some(path.to_vec());
        }
        let alias = self.files.get(from)?.1.uses.get(first)?;
        if path.len() == 1 {
            // The import itself, already counted as a path of its own.
            return None;
        }
        let mut expanded = alias.clone();
        expanded.extend(path[1..].iter().cloned());
        Some(expanded)
    }

    /// File -> file arrows, each with the names that make it.
    fn arrows(&self) -> BTreeMap<(ModPath, ModPath), BTreeSet<String>> {
        let mut arrows: BTreeMap<(ModPath, ModPath), BTreeSet<String>> = BTreeMap::new();
        for (module, (_, facts)) in &self.files {
            for path in &facts.refs {
                if let Some(to) = self.target(module, path, 0)
                    && &to != module
                    && !front_door(module, &to)
                {
                    let name = path.last().cloned().unwrap_or_default();
                    arrows.entry((module.clone(), to)).or_default().insert(name);
                }
            }
        }
        arrows
    }
}

/// Whether one of the two is the module file (`mod.rs`, or `x.rs` beside `x/`) of a folder
/// that holds the other: the folder's front door, which declares its files and re-exports
/// what the folder offers. Arrows through it and its own files make one room, as any tool that
/// draws folders as rooms shows them; arrows between sibling files, and between folders, count.
fn front_door(a: &ModPath, b: &ModPath) -> bool {
    let inside = |outer: &ModPath, inner: &ModPath| !outer.is_empty() && inner.starts_with(outer);
    inside(a, b) || inside(b, a)
}

fn circles<N: Ord + Clone>(edges: &BTreeSet<(N, N)>) -> Vec<Vec<N>> {
    let mut graph = DiGraph::<N, ()>::new();
    let mut index = BTreeMap::new();
    for (a, b) in edges {
        for n in [a, b] {
            if !index.contains_key(n) {
                index.insert(n.clone(), graph.add_node(n.clone()));
            }
        }
        graph.add_edge(index[a], index[b], ());
    }
    tarjan_scc(&graph)
        .into_iter()
        .filter(|scc| scc.len() > 1)
        .map(|scc| {
            let mut nodes: Vec<N> = scc.into_iter().map(|i| graph[i].clone()).collect();
            nodes.sort();
            nodes
        })
        .collect()
}

#[test]
fn src_has_no_import_circles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let krate = Crate::read(&src);
    let arrows = krate.arrows();
    let name = |m: &ModPath| krate.files[m].0.display().to_string();
    let mut report = String::new();

    let files: BTreeSet<_> = arrows.keys().cloned().collect();
    for circle in circles(&files) {
        report.push_str("files in a circle:\n");
        for ((a, b), names) in &arrows {
            if circle.contains(a) && circle.contains(b) {
                let names: Vec<_> = names.iter().cloned().collect();
                report.push_str(&format!(
                    "  {} -> {}: {}\n",
                    name(a),
                    name(b),
                    names.join(", ")
                ));
            }
        }
    }

    let top = |m: &ModPath| m.first().cloned().unwrap_or_default();
    let modules: BTreeSet<_> = arrows
        .keys()
        .filter(|(a, b)| !a.is_empty() && top(a) != top(b))
        .map(|(a, b)| (top(a), top(b)))
        .collect();
    for circle in circles(&modules) {
        report.push_str(&format!(
            "top-level modules in a circle: {}\n",
            circle.join(", ")
        ));
        for ((a, b), names) in &arrows {
            if !a.is_empty()
                && top(a) != top(b)
                && circle.contains(&top(a))
                && circle.contains(&top(b))
            {
                let names: Vec<_> = names.iter().cloned().collect();
                report.push_str(&format!(
                    "  {} -> {}: {}\n",
                    name(a),
                    name(b),
                    names.join(", ")
                ));
            }
        }
    }
    assert!(report.is_empty(), "import circles in src/:\n{report}");
}

/// lib.rs lists the top-level modules in data-flow order: each imports only modules listed
/// above it, so the list reads from the leaves (digests, archives) to the command line.
#[test]
fn lib_rs_lists_modules_in_data_flow_order() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let krate = Crate::read(&src);
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let listed: Vec<String> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';').to_string())
        .collect();
    let top = |m: &ModPath| m.first().cloned().unwrap_or_default();
    let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (a, b) in krate.arrows().keys() {
        if !a.is_empty() && top(a) != top(b) {
            uses.entry(top(a)).or_default().insert(top(b));
        }
    }
    let mut wrong = Vec::new();
    for (i, module) in listed.iter().enumerate() {
        for used in uses.get(module).into_iter().flatten() {
            if !listed[..i].contains(used) {
                wrong.push(format!("{module} uses {used}, listed after it"));
            }
        }
    }
    // An order that would do: modules whose imports are all placed, leaves first.
    let mut order: Vec<String> = Vec::new();
    let mut left: Vec<String> = listed.clone();
    while !left.is_empty() {
        let ready: Vec<String> = (left.iter())
            .filter(|m| {
                uses.get(*m)
                    .into_iter()
                    .flatten()
                    .all(|u| order.contains(u))
            })
            .cloned()
            .collect();
        if ready.is_empty() {
            break;
        }
        left.retain(|m| !ready.contains(m));
        order.extend(ready);
    }
    assert!(
        wrong.is_empty(),
        "{}\na data-flow order: {}",
        wrong.join("\n"),
        order.join(" ")
    );
}

/// No function of src/ (unit tests aside) is longer than 80 lines: a longer one does several
/// things, each of which deserves a name.
#[test]
fn no_function_is_over_80_lines() {
    struct Lengths<'a> {
        file: &'a str,
        long: Vec<String>,
    }
    impl Lengths<'_> {
        fn check(&mut self, name: &syn::Ident, block: &syn::Block) {
            use syn::spanned::Spanned;
            let span = block.span();
            let lines = span.end().line - span.start().line + 1;
            if lines > 80 {
                self.long
                    .push(format!("{}: {name} is {lines} lines", self.file));
            }
        }
    }
    impl<'ast> Visit<'ast> for Lengths<'_> {
        fn visit_item(&mut self, item: &'ast syn::Item) {
            if !is_test(item_facts(item).0) {
                syn::visit::visit_item(self, item);
            }
        }
        fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
            self.check(&f.sig.ident, &f.block);
            syn::visit::visit_item_fn(self, f);
        }
        fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
            self.check(&f.sig.ident, &f.block);
            syn::visit::visit_impl_item_fn(self, f);
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut long = Vec::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let file = syn::parse_file(&std::fs::read_to_string(&path).unwrap()).unwrap();
                let name = path.strip_prefix(&src).unwrap().display().to_string();
                let mut lengths = Lengths {
                    file: &name,
                    long: Vec::new(),
                };
                lengths.visit_file(&file);
                long.extend(lengths.long);
            }
        }
    }
    long.sort();
    assert!(
        long.is_empty(),
        "functions over 80 lines:\n{}",
        long.join("\n")
    );
}

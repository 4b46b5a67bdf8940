//! Gives each recipe source file a normal form for its code digest (see src/kind/code.rs):
//! the file's Rust tokens, with comments and doc comments dropped and whitespace made single,
//! so that rewording a comment or reformatting changes no key while changing a command line,
//! a make variable or a tar layout changes the keys of the kinds that file implements.

use std::fmt::Write as _;
use std::path::Path;

use proc_macro2::{Delimiter, TokenStream, TokenTree};

/// Every file some action kind's code digest covers: the `"….rs"` strings of src/kind/, where
/// each kind lists its code (src/kind/code.rs says how they combine). The list is kept there
/// alone; a name that is no file fails the build of kbuild, not a key.
fn files() -> Vec<String> {
    let mut files = std::collections::BTreeSet::new();
    println!("cargo:rerun-if-changed=src/kind");
    for entry in std::fs::read_dir("src/kind").expect("src/kind is readable") {
        let path = entry.expect("src/kind is readable").path();
        rs_literals(lex(&path), &mut files);
    }
    files.into_iter().collect()
}

/// The tokens of the source file at `path`, which the build then depends on.
fn lex(path: &Path) -> TokenStream {
    println!("cargo:rerun-if-changed={}", path.display());
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.parse()
        .unwrap_or_else(|e| panic!("lexing {}: {e:?}", path.display()))
}

/// The string literals naming a Rust file in `tokens`, unquoted.
fn rs_literals(tokens: TokenStream, out: &mut std::collections::BTreeSet<String>) {
    for token in tokens {
        match token {
            TokenTree::Group(g) => rs_literals(g.stream(), out),
            TokenTree::Literal(l) => {
                let text = l.to_string();
                // A path under src/; an absolute one (the generated file's) is not a kind's code.
                let name = text.strip_prefix('"').and_then(|t| t.strip_suffix(".rs\""));
                if let Some(name) = name.filter(|n| !n.starts_with('/')) {
                    out.insert(format!("{name}.rs"));
                }
            }
            _ => {}
        }
    }
}

fn main() {
    let mut out = String::from("/// Each recipe file and its tokens without comments.\n");
    out.push_str("pub static NORMAL_FORMS: &[(&str, &str)] = &[\n");
    for file in files() {
        let path = Path::new("src").join(&file);
        let tokens = lex(&path);
        let mut normal = String::new();
        write_tokens(tokens, &mut normal);
        let _ = writeln!(out, "    ({file:?}, {normal:?}),");
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("code.rs");
    std::fs::write(&dest, out).unwrap_or_else(|e| panic!("writing {}: {e}", dest.display()));
    println!("cargo:rerun-if-changed=build.rs");
}

/// Writes `tokens` one space apart, skipping `#[doc = …]` and `#![doc = …]` (what the lexer
/// makes of doc comments; plain comments it drops by itself).
fn write_tokens(tokens: TokenStream, out: &mut String) {
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    let mut i = 0;
    while i < tokens.len() {
        if let Some(skip) = doc_attribute(&tokens[i..]).or_else(|| test_item(&tokens[i..])) {
            i += skip;
            continue;
        }
        match &tokens[i] {
            TokenTree::Group(g) => {
                let (open, close) = match g.delimiter() {
                    Delimiter::Parenthesis => ("(", ")"),
                    Delimiter::Brace => ("{", "}"),
                    Delimiter::Bracket => ("[", "]"),
                    Delimiter::None => ("", ""),
                };
                out.push_str(open);
                out.push(' ');
                write_tokens(g.stream(), out);
                out.push_str(close);
            }
            other => out.push_str(&other.to_string()),
        }
        out.push(' ');
        i += 1;
    }
}

/// How many tokens a `#[cfg(test)]` item at the start of `tokens` spans (the attribute, then
/// everything up to its body or `;`): unit tests decide no output, so editing them keeps keys.
fn test_item(tokens: &[TokenTree]) -> Option<usize> {
    let (TokenTree::Punct(hash), TokenTree::Group(attr)) = (tokens.first()?, tokens.get(1)?) else {
        return None;
    };
    let text: String = attr.stream().to_string().split_whitespace().collect();
    if hash.as_char() != '#' || attr.delimiter() != Delimiter::Bracket || text != "cfg(test)" {
        return None;
    }
    let end = tokens[2..].iter().position(|t| match t {
        TokenTree::Group(g) => g.delimiter() == Delimiter::Brace,
        TokenTree::Punct(p) => p.as_char() == ';',
        _ => false,
    })?;
    Some(2 + end + 1)
}

/// How many tokens a doc attribute at the start of `tokens` spans, if there is one.
fn doc_attribute(tokens: &[TokenTree]) -> Option<usize> {
    let TokenTree::Punct(hash) = tokens.first()? else {
        return None;
    };
    if hash.as_char() != '#' {
        return None;
    }
    let bang = matches!(tokens.get(1), Some(TokenTree::Punct(p)) if p.as_char() == '!');
    let at = if bang { 2 } else { 1 };
    let TokenTree::Group(group) = tokens.get(at)? else {
        return None;
    };
    let first = group.stream().into_iter().next();
    let is_doc = group.delimiter() == Delimiter::Bracket
        && matches!(first, Some(TokenTree::Ident(ref id)) if id == "doc");
    is_doc.then_some(at + 1)
}

//! A bound on how deeply children blocks nest, checked on the text before the KDL parser sees
//! it: the parser recurses once per level, and an 8 KB file of 1,500 nested blocks overflows its
//! stack. kernel.kdl needs two levels; anything past [`MAX_DEPTH`] is refused with a span.

use miette::SourceSpan;

use super::diag::Problem;

pub const MAX_DEPTH: usize = 32;

/// The offset of the first `{` that opens a block deeper than [`MAX_DEPTH`], skipping strings
/// (plain, multi-line and raw) and comments (line and nested block).
fn too_deep(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let (mut i, mut depth) = (0, 0usize);
    while i < bytes.len() {
        match bytes[i] {
            b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Some(i);
                }
            }
            b'}' => depth = depth.saturating_sub(1),
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => i = skip_block_comment(bytes, i),
            b'#' if matches!(bytes.get(i + 1), Some(b'#' | b'"')) => i = skip_raw_string(bytes, i),
            b'"' => i = skip_string(bytes, i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// From `/*` at `i` to its matching `*/` (block comments nest in KDL).
fn skip_block_comment(bytes: &[u8], mut i: usize) -> usize {
    let mut nested = 0;
    while i + 1 < bytes.len() {
        match (bytes[i], bytes[i + 1]) {
            (b'/', b'*') => {
                nested += 1;
                i += 2;
            }
            (b'*', b'/') => {
                nested -= 1;
                i += 2;
                if nested == 0 {
                    return i - 1;
                }
            }
            _ => i += 1,
        }
    }
    bytes.len()
}

/// From `#…#"` at `i` to the closing `"#…#` with as many hashes.
fn skip_raw_string(bytes: &[u8], mut i: usize) -> usize {
    let mut hashes = 0;
    while bytes.get(i) == Some(&b'#') {
        hashes += 1;
        i += 1;
    }
    i += 1;
    while i < bytes.len() {
        if bytes[i] == b'"'
            && bytes[i + 1..]
                .iter()
                .take(hashes)
                .filter(|b| **b == b'#')
                .count()
                == hashes
        {
            return i + hashes;
        }
        i += 1;
    }
    bytes.len()
}

/// From `"` at `i` to the closing quote, escapes included (`"""` strings end at `"""`).
fn skip_string(bytes: &[u8], mut i: usize) -> usize {
    if bytes[i..].starts_with(b"\"\"\"") {
        i += 3;
        while i < bytes.len() && !bytes[i..].starts_with(b"\"\"\"") {
            i += if bytes[i] == b'\\' { 2 } else { 1 };
        }
        return i + 2;
    }
    i += 1;
    while i < bytes.len() && bytes[i] != b'"' {
        i += if bytes[i] == b'\\' { 2 } else { 1 };
    }
    i
}

/// Refuses a text that nests blocks deeper than [`MAX_DEPTH`].
pub fn check(text: &str) -> Result<(), Problem> {
    match too_deep(text) {
        None => Ok(()),
        Some(at) => Err(Problem::new(
            format!("blocks nest deeper than {MAX_DEPTH} levels"),
            SourceSpan::from(at..at + 1),
            "too deep",
        )
        .help("kernel.kdl needs two levels (a node and its children): remove the extra braces")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_first_brace_too_deep() {
        let deep = format!("{}{}", "a {".repeat(40), "}".repeat(40));
        assert_eq!(too_deep(&deep), Some(2 + 3 * 32));
        assert_eq!(
            too_deep("series \"6.6.x\" {\n    version \"6.6.1\"\n}\n"),
            None
        );
    }

    #[test]
    fn braces_in_strings_and_comments_do_not_count() {
        let hidden = "{".repeat(100);
        for text in [
            format!("a \"{hidden}\""),
            format!("a \"\\\"{hidden}\""),
            format!("a #\"{hidden}\"#"),
            format!("a ##\"\"#{hidden}\"##"),
            format!("a \"\"\"\n{hidden}\n\"\"\""),
            format!("// {hidden}\na"),
            format!("/* /* {hidden} */ {hidden} */ a"),
        ] {
            assert_eq!(too_deep(&text), None, "{text}");
        }
    }
}

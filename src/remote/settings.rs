//! Where the remote cache is and how to talk to it: from `--remote-cache` and its options, or
//! the `KBUILD_REMOTE_*` environment, or this machine's `kernel.local.kdl`. None of it enters
//! a key: the same build gives the same keys with any cache or none.

use std::time::Duration;

/// The environment variable holding extra request headers, one `Name: value` a line (for a
/// bearer token: `Authorization: Bearer …`). Their values are sent and never printed.
pub const HEADERS_VAR: &str = "KBUILD_REMOTE_HEADERS";

#[derive(Clone)]
pub struct Settings {
    pub url: String,
    pub instance: String,
    pub headers: Vec<(String, String)>,
    /// Whether this run writes results (off for untrusted builds such as pull requests).
    pub upload: bool,
    pub timeout: Duration,
    /// Transfers at once.
    pub transfers: usize,
    /// The private key this machine signs its uploads with (a trusted writer's).
    pub sign_key: Option<std::path::PathBuf>,
    /// The public keys whose signed results alone this machine takes.
    pub trust: Option<std::path::PathBuf>,
}

/// Shows everything but the header values.
impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Settings")
            .field("url", &self.url)
            .field("instance", &self.instance)
            .field("headers", &names)
            .field("upload", &self.upload)
            .field("timeout", &self.timeout)
            .field("transfers", &self.transfers)
            .field("sign_key", &self.sign_key)
            .field("trust", &self.trust)
            .finish()
    }
}

/// Reads the headers variable's text: `Name: value` lines, blank lines skipped. An error names
/// the line by number only, as its text may be a secret.
pub fn parse_headers(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut headers = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!(
                "line {} of {HEADERS_VAR} is not `Name: value`",
                n + 1
            ));
        };
        let name = name.trim();
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(format!(
                "line {} of {HEADERS_VAR} has no valid header name",
                n + 1
            ));
        }
        headers.push((name.to_string(), value.trim().to_string()));
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_and_errors_do_not_show_values() {
        let h = parse_headers("Authorization: Bearer s3cret\n\nX-Team: kernel\n").unwrap();
        assert_eq!(h[0], ("Authorization".into(), "Bearer s3cret".into()));
        assert_eq!(h.len(), 2);
        let e = parse_headers("Bearer s3cret").unwrap_err();
        assert!(!e.contains("s3cret"), "{e}");
        let settings = Settings {
            url: "grpc://127.0.0.1:1".into(),
            instance: String::new(),
            headers: h,
            upload: true,
            timeout: Duration::from_secs(1),
            transfers: 1,
            sign_key: None,
            trust: None,
        };
        assert!(!format!("{settings:?}").contains("s3cret"));
    }
}

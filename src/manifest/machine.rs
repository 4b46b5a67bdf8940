//! What `kernel.local.kdl` says about this machine besides source replacements: the remote
//! cache it uses by default, `remote-cache "grpcs://cache.example" instance="kernels"
//! upload=#false`, and the cluster its misses run on, `remote-executor "grpcs://rbe.example"`.
//! They are this machine's choice, so they live beside the replacements and never in
//! kernel.kdl; like every remote setting they enter no key.

use std::path::Path;
use std::sync::Arc;

use miette::NamedSource;

use super::diag::{ManifestError, Problem};
use super::files::LOCAL_FILE;
use super::nodes::{self, name};

pub use super::files::REMOTE_CACHE_NODE as NODE;
pub use super::files::REMOTE_EXECUTOR_NODE as EXECUTOR_NODE;

/// The remote cache `kernel.local.kdl` names.
#[derive(Clone, Debug, PartialEq)]
pub struct RemoteDefault {
    pub url: String,
    pub instance: Option<String>,
    pub upload: Option<bool>,
    /// `sign-key="FILE"`: this machine signs what it uploads (a trusted writer).
    pub sign_key: Option<String>,
    /// `trust="FILE"`: this machine takes only results signed by these public keys.
    pub trust: Option<String>,
}

/// The `remote-cache` node of `root`'s kernel.local.kdl, if the file names one. Only a file
/// that is absent is no setting; one that cannot be read or parsed is an error.
pub fn remote_default(root: &Path) -> Result<Option<RemoteDefault>, miette::Report> {
    find(root, NODE, read)
}

/// The `remote-executor "URL"` of `root`'s kernel.local.kdl, if the file names one.
pub fn executor_default(root: &Path) -> Result<Option<String>, miette::Report> {
    find(root, EXECUTOR_NODE, |node| {
        let mut problems = Vec::new();
        nodes::check_props(node, &[], &mut problems);
        let url = nodes::string(node).map_err(|p| vec![p])?;
        if problems.is_empty() {
            Ok(url.value)
        } else {
            Err(problems)
        }
    })
}

/// The one node called `node` of kernel.local.kdl, read by `read`.
fn find<T>(
    root: &Path,
    node: &str,
    read: impl Fn(&kdl::KdlNode) -> Result<T, Vec<Problem>>,
) -> Result<Option<T>, miette::Report> {
    let path = root.join(LOCAL_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(miette::miette!(
                help = "make the file readable or remove it",
                "cannot read `{}`: {e}",
                path.display()
            ));
        }
    };
    let source = || Arc::new(NamedSource::new(LOCAL_FILE, text.clone()));
    let doc = super::parse_kdl(&text).map_err(|p| ManifestError::new(source(), p))?;
    let mut found = None;
    let mut problems = Vec::new();
    for at in doc.nodes().iter().filter(|n| name(n) == node) {
        if found.is_some() {
            problems.push(Problem::new(
                format!("`{node}` is given twice"),
                at.span(),
                "second one",
            ));
            continue;
        }
        match read(at) {
            Ok(setting) => found = Some(setting),
            Err(mut more) => problems.append(&mut more),
        }
    }
    if problems.is_empty() {
        Ok(found)
    } else {
        Err(ManifestError::new(source(), problems).into())
    }
}

fn read(node: &kdl::KdlNode) -> Result<RemoteDefault, Vec<Problem>> {
    let mut problems = Vec::new();
    nodes::check_props(
        node,
        &["instance", "upload", "sign-key", "trust"],
        &mut problems,
    );
    let url = nodes::string(node).map_err(|p| vec![p])?;
    let instance = nodes::string_prop(node, "instance").map_err(|p| vec![p])?;
    let sign_key = nodes::string_prop(node, "sign-key").map_err(|p| vec![p])?;
    let trust = nodes::string_prop(node, "trust").map_err(|p| vec![p])?;
    let upload = match nodes::prop(node, "upload") {
        None => None,
        Some(entry) => match entry.value().as_bool() {
            Some(b) => Some(b),
            None => {
                problems.push(Problem::new(
                    "`upload` must be #true or #false",
                    entry.span(),
                    "not a boolean",
                ));
                None
            }
        },
    };
    if problems.is_empty() {
        Ok(RemoteDefault {
            url: url.value,
            instance: instance.map(|i| i.value),
            upload,
            sign_key: sign_key.map(|k| k.value),
            trust: trust.map(|t| t.value),
        })
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_node_and_refuses_a_second_or_a_wrong_property() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(remote_default(dir.path()).unwrap(), None);
        let file = dir.path().join(LOCAL_FILE);
        std::fs::write(&file, "remote-cache \"grpc://127.0.0.1:1\" upload=#false\n").unwrap();
        assert_eq!(
            remote_default(dir.path()).unwrap(),
            Some(RemoteDefault {
                url: "grpc://127.0.0.1:1".into(),
                instance: None,
                upload: Some(false),
                sign_key: None,
                trust: None,
            })
        );
        std::fs::write(&file, "remote-cache \"a\"\nremote-cache \"b\"\n").unwrap();
        assert!(remote_default(dir.path()).is_err());
        std::fs::write(&file, "remote-cache \"a\" uplaod=#false\n").unwrap();
        assert!(remote_default(dir.path()).is_err());
    }

    #[test]
    fn reads_the_executor_beside_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(executor_default(dir.path()).unwrap(), None);
        let file = dir.path().join(LOCAL_FILE);
        std::fs::write(
            &file,
            "remote-cache \"grpc://c:1\"\nremote-executor \"grpc://e:2\"\n",
        )
        .unwrap();
        assert_eq!(
            executor_default(dir.path()).unwrap().as_deref(),
            Some("grpc://e:2")
        );
        assert_eq!(
            remote_default(dir.path()).unwrap().unwrap().url,
            "grpc://c:1"
        );
        std::fs::write(&file, "remote-executor \"a\" jobs=4\n").unwrap();
        assert!(executor_default(dir.path()).is_err());
        std::fs::write(&file, "remote-executor \"a\"\nremote-executor \"b\"\n").unwrap();
        assert!(executor_default(dir.path()).is_err());
    }
}

//! A small client of the OCI distribution API: blobs (HEAD, cross-repository mount, upload),
//! manifests (HEAD, GET, PUT), over HTTP or HTTPS, with basic or bearer-token auth taken from
//! the docker config file (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`) or from
//! `KBUILD_REGISTRY_USER` and `KBUILD_REGISTRY_PASSWORD`.

use std::io::Read;
use std::path::Path;
use std::sync::Mutex;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum RegistryError {
    #[error("cannot reach registry `{host}`: {message}")]
    #[diagnostic(help("check the host and port; a local registry without TLS needs --insecure"))]
    Unreachable { host: String, message: String },
    #[error("registry `{host}` refused {what}: HTTP {status} {body}")]
    #[diagnostic(help(
        "check your credentials (docker login, or KBUILD_REGISTRY_USER and KBUILD_REGISTRY_PASSWORD)"
    ))]
    Refused {
        host: String,
        what: String,
        status: u16,
        body: String,
    },
    #[error("cannot make a request to registry `{host}`: {message}")]
    #[diagnostic(help(
        "check --registry (HOST[:PORT], no scheme or path); if the server sent the URL or token, it answered something invalid"
    ))]
    Invalid { host: String, message: String },
    #[error("cannot read the credentials for registry `{host}`: {message}")]
    #[diagnostic(help(
        "fix the docker config (`docker login`, or its credHelpers/credsStore helper), or set KBUILD_REGISTRY_USER and KBUILD_REGISTRY_PASSWORD"
    ))]
    Credentials { host: String, message: String },
}

/// The largest reply kbuild reads: manifests, indexes, tokens and error documents are small.
const MAX_REPLY: u64 = 16 << 20;

pub struct Registry {
    host: String,
    base: String,
    agent: ureq::Agent,
    basic: Option<String>,
    token: Mutex<Option<String>>,
}

/// `user:password` in base64, from the environment or as docker finds them: the docker config
/// file's `auths`, or the credential helper it names (`credHelpers` for this host, else
/// `credsStore`). No credentials configured is anonymous access; a config or helper that fails
/// is an error, as pushing anonymously would only fail later with a less helpful answer.
fn credentials(host: &str) -> Result<Option<String>, RegistryError> {
    use base64::Engine as _;
    use docker_credential::{CredentialRetrievalError as E, DockerCredential};
    if let (Ok(user), Ok(password)) = (
        std::env::var("KBUILD_REGISTRY_USER"),
        std::env::var("KBUILD_REGISTRY_PASSWORD"),
    ) {
        return Ok(Some(
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")),
        ));
    }
    let basic = |user: String, password: String| {
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    };
    let failed = |message: String| RegistryError::Credentials {
        host: host.to_string(),
        message,
    };
    // The crate reads the same file; one that is not there is anonymous access, not an error.
    let dir = std::env::var_os("DOCKER_CONFIG")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".docker")));
    let Some(config) = dir.map(|d| d.join("config.json")).filter(|c| c.exists()) else {
        return Ok(None);
    };
    let failed = |message: String| failed(format!("{message} ({})", config.display()));
    match with_sigpipe_ignored(|| docker_credential::get_credential(host)) {
        Ok(DockerCredential::UsernamePassword(user, password)) => Ok(Some(basic(user, password))),
        Ok(DockerCredential::IdentityToken(_)) => Err(failed(
            "the docker config holds an identity token for it, which kbuild cannot exchange".into(),
        )),
        Err(E::NoCredentialConfigured | E::ConfigNotFound) => Ok(None),
        Err(e) => Err(failed(e.to_string())),
    }
}

/// Runs `f` with SIGPIPE ignored. kbuild dies quietly on a closed stdout (`kbuild list | head`),
/// but a credential helper that exits without reading the host kbuild writes to its stdin
/// (one that fails at once) must give an error, not kill kbuild with the pipe's signal.
fn with_sigpipe_ignored<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: swaps the disposition of one signal and puts the previous one back.
    let previous = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let out = f();
    // SAFETY: as above.
    unsafe { libc::signal(libc::SIGPIPE, previous) };
    out
}

/// `sha256:` and 64 lowercase hexadecimal digits.
pub(crate) fn is_sha256_digest(text: &str) -> bool {
    text.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Reads `realm`, `service` and `scope` from a `WWW-Authenticate: Bearer …` header.
fn bearer_params(header: &str) -> Option<Vec<(String, String)>> {
    let rest = header.strip_prefix("Bearer ")?;
    let mut params = Vec::new();
    for part in rest.split("\",") {
        let (k, v) = part.split_once('=')?;
        params.push((k.trim().to_string(), v.trim().trim_matches('"').to_string()));
    }
    Some(params)
}

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A request body: bytes, or a file streamed with its length.
pub enum Body<'a> {
    Empty,
    Bytes(&'a str, &'a [u8]),
    File(&'a Path),
}

impl Registry {
    pub fn new(host: &str, insecure: bool) -> Result<Registry, RegistryError> {
        let scheme = if insecure { "http" } else { "https" };
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        Ok(Registry {
            host: host.into(),
            base: format!("{scheme}://{host}"),
            agent,
            basic: credentials(host)?,
            token: Mutex::new(None),
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    fn send(
        &self,
        method: &str,
        url: &str,
        accept: Option<&str>,
        body: &Body,
    ) -> Result<Reply, RegistryError> {
        let unreachable = |e: ureq::Error| RegistryError::Unreachable {
            host: self.host.clone(),
            message: e.to_string(),
        };
        let mut request = ureq::http::Request::builder().method(method).uri(url);
        if let Some(accept) = accept {
            request = request.header("Accept", accept);
        }
        let token = self.token.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {token}"));
        } else if let Some(basic) = &self.basic {
            request = request.header("Authorization", format!("Basic {basic}"));
        }
        let invalid = |e: ureq::http::Error| RegistryError::Invalid {
            host: self.host.clone(),
            message: format!("{url}: {e}"),
        };
        let response = match body {
            Body::Empty => self.agent.run(
                request
                    .header("Content-Length", "0")
                    .body(())
                    .map_err(invalid)?,
            ),
            Body::Bytes(media, bytes) => {
                let request = request
                    .header("Content-Type", *media)
                    .body(bytes.to_vec())
                    .map_err(invalid)?;
                self.agent.run(request)
            }
            Body::File(path) => {
                let file = std::fs::File::open(path).map_err(|e| RegistryError::Unreachable {
                    host: self.host.clone(),
                    message: e.to_string(),
                })?;
                let len = file.metadata().map(|m| m.len()).unwrap_or(0);
                let request = request
                    .header("Content-Type", "application/octet-stream")
                    .header("Content-Length", len.to_string())
                    .body(ureq::SendBody::from_owned_reader(file))
                    .map_err(invalid)?;
                self.agent.run(request)
            }
        }
        .map_err(unreachable)?;
        self.read_reply(response, &format!("{method} {url}"), method == "HEAD")
    }

    /// A reply read whole. Replies are JSON documents and errors: a registry that sends more
    /// than [`MAX_REPLY`] is not trusted with the memory, and one cut short (against its
    /// `Content-Length`, or by a broken connection) is an error, never a shorter document.
    fn read_reply(
        &self,
        response: ureq::http::Response<ureq::Body>,
        what: &str,
        head: bool,
    ) -> Result<Reply, RegistryError> {
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let reply = Reply {
            status,
            headers,
            body: Vec::new(),
        };
        let declared: Option<u64> = reply.header("Content-Length").and_then(|l| l.parse().ok());
        let mut body = Vec::new();
        let read = (response.into_body().into_reader().take(MAX_REPLY + 1)).read_to_end(&mut body);
        let cut = |problem: String| RegistryError::Unreachable {
            host: self.host.clone(),
            message: format!("{what}: {problem}"),
        };
        read.map_err(|e| cut(format!("the reply was cut short: {e}")))?;
        if body.len() as u64 > MAX_REPLY {
            return Err(cut(format!("the reply is over {MAX_REPLY} bytes")));
        }
        if let Some(declared) = declared.filter(|&d| d != body.len() as u64 && !head) {
            return Err(cut(format!(
                "the reply was cut short: {} of {declared} bytes",
                body.len()
            )));
        }
        Ok(Reply { body, ..reply })
    }

    /// Sends a request to `path` (or an absolute URL), answering a bearer challenge once.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        accept: Option<&str>,
        body: Body,
    ) -> Result<Reply, RegistryError> {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        let reply = self.send(method, &url, accept, &body)?;
        if reply.status != 401 {
            return Ok(reply);
        }
        let Some(params) = reply.header("WWW-Authenticate").and_then(bearer_params) else {
            return Ok(reply);
        };
        self.fetch_token(&params)?;
        self.send(method, &url, accept, &body)
    }

    fn fetch_token(&self, params: &[(String, String)]) -> Result<(), RegistryError> {
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let realm = get("realm").unwrap_or_default();
        let mut url = format!("{realm}?service={}", get("service").unwrap_or_default());
        if let Some(scope) = get("scope") {
            url.push_str(&format!("&scope={scope}"));
        }
        *self.token.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let reply = self.send("GET", &url, None, &Body::Empty)?;
        let json: serde_json::Value = serde_json::from_slice(&reply.body).unwrap_or_default();
        let token = json
            .get("token")
            .or_else(|| json.get("access_token"))
            .and_then(|t| t.as_str());
        match token {
            Some(token) => {
                *self.token.lock().unwrap_or_else(|e| e.into_inner()) = Some(token.to_string());
                Ok(())
            }
            None => Err(self.refused("a token", &reply)),
        }
    }

    pub fn refused(&self, what: &str, reply: &Reply) -> RegistryError {
        let body = String::from_utf8_lossy(&reply.body)
            .chars()
            .take(300)
            .collect();
        RegistryError::Refused {
            host: self.host.clone(),
            what: what.into(),
            status: reply.status,
            body,
        }
    }

    pub fn blob_exists(&self, repo: &str, digest: &str) -> Result<bool, RegistryError> {
        Ok(self
            .request(
                "HEAD",
                &format!("/v2/{repo}/blobs/{digest}"),
                None,
                Body::Empty,
            )?
            .status
            == 200)
    }

    /// Tries a cross-repository mount; returns whether the blob is now in `repo`.
    pub fn mount(&self, repo: &str, digest: &str, from: &str) -> Result<bool, RegistryError> {
        let path = format!("/v2/{repo}/blobs/uploads/?mount={digest}&from={from}");
        Ok(self.request("POST", &path, None, Body::Empty)?.status == 201)
    }

    /// Uploads a blob from a file in one monolithic PUT.
    pub fn upload(&self, repo: &str, digest: &str, file: &Path) -> Result<(), RegistryError> {
        let start = self.request(
            "POST",
            &format!("/v2/{repo}/blobs/uploads/"),
            None,
            Body::Empty,
        )?;
        if start.status != 202 {
            return Err(self.refused(&format!("an upload to {repo}"), &start));
        }
        let location = start.header("Location").unwrap_or_default().to_string();
        let location = if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            location
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let done = self.request(
            "PUT",
            &format!("{location}{sep}digest={digest}"),
            None,
            Body::File(file),
        )?;
        if done.status != 201 {
            return Err(self.refused(&format!("blob {digest}"), &done));
        }
        Ok(())
    }

    /// The digest a tag or digest reference resolves to, if it exists.
    pub fn manifest_digest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<Option<String>, RegistryError> {
        let accept = format!("{},{}", super::MEDIA_INDEX, super::MEDIA_MANIFEST);
        let reply = self.request(
            "HEAD",
            &format!("/v2/{repo}/manifests/{reference}"),
            Some(&accept),
            Body::Empty,
        )?;
        if reply.status != 200 {
            return Ok(None);
        }
        match reply.header("Docker-Content-Digest") {
            Some(digest) if is_sha256_digest(digest) => Ok(Some(digest.to_string())),
            // The header is optional: the manifest's own bytes say its digest.
            None => Ok(self
                .get_manifest(repo, reference)?
                .map(|bytes| format!("sha256:{}", crate::digest::Sha256::of_bytes(&bytes)))),
            Some(other) => Err(RegistryError::Invalid {
                host: self.host.clone(),
                message: format!(
                    "`{repo}:{reference}` has the digest `{other}`, which is no sha256 digest"
                ),
            }),
        }
    }

    pub fn get_manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<Option<Vec<u8>>, RegistryError> {
        let accept = format!("{},{}", super::MEDIA_INDEX, super::MEDIA_MANIFEST);
        let reply = self.request(
            "GET",
            &format!("/v2/{repo}/manifests/{reference}"),
            Some(&accept),
            Body::Empty,
        )?;
        Ok((reply.status == 200).then_some(reply.body))
    }

    /// A blob's bytes (bounded as every reply is), if the registry has it. The caller checks
    /// them against the digest.
    pub fn get_blob(&self, repo: &str, digest: &str) -> Result<Option<Vec<u8>>, RegistryError> {
        let reply = self.request(
            "GET",
            &format!("/v2/{repo}/blobs/{digest}"),
            None,
            Body::Empty,
        )?;
        Ok((reply.status == 200).then_some(reply.body))
    }

    /// Whether the registry serves the OCI 1.1 referrers API for `repo` (then it lists a
    /// manifest's referrers itself, and no `sha256-<hex>` fallback index is needed).
    pub fn has_referrers_api(&self, repo: &str, digest: &str) -> Result<bool, RegistryError> {
        let reply = self.request(
            "GET",
            &format!("/v2/{repo}/referrers/{digest}"),
            Some(super::MEDIA_INDEX),
            Body::Empty,
        )?;
        Ok(reply.status == 200
            && reply
                .header("Content-Type")
                .is_some_and(|t| t.starts_with(super::MEDIA_INDEX)))
    }

    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<(), RegistryError> {
        let reply = self.request(
            "PUT",
            &format!("/v2/{repo}/manifests/{reference}"),
            None,
            Body::Bytes(media_type, bytes),
        )?;
        if reply.status != 201 {
            return Err(self.refused(&format!("manifest {repo}:{reference}"), &reply));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::bearer_params;

    #[test]
    fn parses_a_bearer_challenge() {
        let p = bearer_params("Bearer realm=\"https://auth.example/token\",service=\"registry.example\",scope=\"repository:linuxkit/kernel:pull,push\"").unwrap();
        assert_eq!(
            p[0],
            (
                "realm".to_string(),
                "https://auth.example/token".to_string()
            )
        );
        assert_eq!(p[2].1, "repository:linuxkit/kernel:pull,push");
    }
}

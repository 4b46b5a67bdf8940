//! The HTTP cache protocol of Bazel and bazel-remote: `GET`/`HEAD`/`PUT` on `/ac/<hash>` (an
//! `ActionResult` message) and `/cas/<hash>`, under an optional instance prefix. Any WebDAV
//! server that takes `PUT` serves it (nginx with `dav_methods PUT`). SHA-256 only, as Bazel.

use std::io::Write;
use std::time::Duration;

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use prost::Message;

use super::digest::Function;
use super::transport::{Capabilities, RemoteError, Source, Transport};

/// Blobs from this size on are asked for (`HEAD`) before they are sent; smaller ones are sent
/// without asking (a kernel tree's median file is a few KiB).
const ASK_FROM: i64 = 16 << 10;

pub struct Http {
    base: String,
    agent: ureq::Agent,
    /// Extra headers (a bearer token): sent, never shown.
    headers: Vec<(String, String)>,
}

impl Http {
    pub fn new(
        base: &str,
        instance: &str,
        headers: Vec<(String, String)>,
        timeout: Duration,
    ) -> Http {
        let mut base = base.trim_end_matches('/').to_string();
        if !instance.is_empty() {
            base = format!("{base}/{}", instance.trim_matches('/'));
        }
        // https:// trusts the system's roots, as grpcs:// does.
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::PlatformVerifier)
            .build();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .tls_config(tls)
            .build()
            .into();
        Http {
            base,
            agent,
            headers,
        }
    }

    fn url(&self, kind: &str, digest: &re::Digest) -> String {
        format!("{}/{kind}/{}", self.base, digest.hash)
    }

    fn request(&self, method: &str, url: &str) -> ureq::http::request::Builder {
        let mut request = ureq::http::Request::builder().method(method).uri(url);
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        request
    }

    /// Runs a request; the status, or why there is none. The URL is kbuild's own (no secret in
    /// it); header values never appear in an error.
    fn run<B: ureq::AsSendBody>(
        &self,
        request: ureq::http::Request<B>,
    ) -> Result<ureq::http::Response<ureq::Body>, RemoteError> {
        let url = request.uri().to_string();
        self.agent
            .run(request)
            .map_err(|e| RemoteError::Unreachable(format!("{url}: {e}")))
    }

    fn get(
        &self,
        kind: &str,
        digest: &re::Digest,
        to: &mut dyn Write,
    ) -> Result<bool, RemoteError> {
        let url = self.url(kind, digest);
        let request = self
            .request("GET", &url)
            .body(())
            .map_err(|e| RemoteError::Invalid(e.to_string()))?;
        let response = self.run(request)?;
        match response.status().as_u16() {
            200 => {}
            404 => return Ok(false),
            status => return Err(RemoteError::Unreachable(format!("{url}: HTTP {status}"))),
        }
        let mut body = response.into_body().into_reader();
        std::io::copy(&mut body, to)
            .map_err(|e| RemoteError::Unreachable(format!("{url}: {e}")))?;
        Ok(true)
    }

    fn put(&self, kind: &str, digest: &re::Digest, body: Source<'_>) -> Result<(), RemoteError> {
        let url = self.url(kind, digest);
        let invalid = |e: ureq::http::Error| RemoteError::Invalid(e.to_string());
        let response = match body {
            Source::Bytes(bytes) => self.run(
                self.request("PUT", &url)
                    .header("Content-Type", "application/octet-stream")
                    .body(bytes.to_vec())
                    .map_err(invalid)?,
            )?,
            Source::File(path) => {
                let file = std::fs::File::open(path)
                    .map_err(|e| RemoteError::Unreachable(format!("{}: {e}", path.display())))?;
                let len = file.metadata().map_or(0, |m| m.len());
                self.run(
                    self.request("PUT", &url)
                        .header("Content-Type", "application/octet-stream")
                        .header("Content-Length", len.to_string())
                        .body(ureq::SendBody::from_owned_reader(file))
                        .map_err(invalid)?,
                )?
            }
        };
        match response.status().as_u16() {
            200..=299 => Ok(()),
            status => Err(RemoteError::Unreachable(format!(
                "PUT {url}: HTTP {status}"
            ))),
        }
    }
}

fn only_sha256(function: Function) -> Result<(), RemoteError> {
    match function {
        Function::Sha256 => Ok(()),
        other => Err(RemoteError::Invalid(format!(
            "the HTTP cache protocol speaks SHA-256, not {}",
            other.name()
        ))),
    }
}

impl Transport for Http {
    /// The HTTP protocol has no capabilities call: SHA-256, no batches.
    fn capabilities(&self) -> Result<Capabilities, RemoteError> {
        Ok(Capabilities {
            functions: vec![Function::Sha256],
            max_batch: 0,
        })
    }

    fn get_action_result(
        &self,
        function: Function,
        action: &re::Digest,
    ) -> Result<Option<re::ActionResult>, RemoteError> {
        only_sha256(function)?;
        let mut bytes = Vec::new();
        if !self.get("ac", action, &mut bytes)? {
            return Ok(None);
        }
        re::ActionResult::decode(bytes.as_slice())
            .map(Some)
            .map_err(|e| {
                RemoteError::Invalid(format!("the action cache entry {}: {e}", action.hash))
            })
    }

    fn update_action_result(
        &self,
        function: Function,
        action: &re::Digest,
        result: &re::ActionResult,
    ) -> Result<(), RemoteError> {
        only_sha256(function)?;
        self.put("ac", action, Source::Bytes(&result.encode_to_vec()))
    }

    fn find_missing(
        &self,
        function: Function,
        digests: &[re::Digest],
    ) -> Result<Vec<re::Digest>, RemoteError> {
        only_sha256(function)?;
        let mut missing = Vec::new();
        for digest in digests {
            // Asking costs a round trip, as sending a small blob does: those are sent unasked.
            if digest.size_bytes < ASK_FROM {
                missing.push(digest.clone());
                continue;
            }
            let url = self.url("cas", digest);
            let request = self
                .request("HEAD", &url)
                .body(())
                .map_err(|e| RemoteError::Invalid(e.to_string()))?;
            match self.run(request)?.status().as_u16() {
                200 => {}
                404 => missing.push(digest.clone()),
                status => {
                    return Err(RemoteError::Unreachable(format!(
                        "HEAD {url}: HTTP {status}"
                    )));
                }
            }
        }
        Ok(missing)
    }

    fn read_blob(
        &self,
        function: Function,
        digest: &re::Digest,
        to: &mut dyn Write,
    ) -> Result<(), RemoteError> {
        only_sha256(function)?;
        if self.get("cas", digest, to)? {
            Ok(())
        } else {
            Err(RemoteError::Invalid(format!(
                "the server lacks the blob {} that its action cache names",
                digest.hash
            )))
        }
    }

    fn write_blobs(
        &self,
        function: Function,
        blobs: &[(re::Digest, Source<'_>)],
    ) -> Result<(), RemoteError> {
        only_sha256(function)?;
        for (digest, source) in blobs {
            self.put("cas", digest, *source)?;
        }
        Ok(())
    }
}

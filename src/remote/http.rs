//! The HTTP cache protocol of Bazel and bazel-remote: `GET`/`HEAD`/`PUT` on `/ac/<hash>` (an
//! `ActionResult` message) and `/cas/<hash>`, under an optional instance prefix. Any WebDAV
//! server that takes `PUT` serves it (nginx with `dav_methods PUT`). SHA-256 only, as Bazel.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use prost::Message;

use super::budget::Budget;
use super::digest::Function;
use super::layout::Limited;
use super::transport::{Capabilities, RemoteError, Source, Transport};

/// The largest action-cache answer kbuild reads: an `ActionResult` naming two outputs and a log
/// is a few hundred bytes; anything near this bound is a server's attempt to fill memory.
pub const MAX_ACTION_RESULT: u64 = 1 << 20;

/// Blobs from this size on are asked for (`HEAD`) before they are sent; smaller ones are sent
/// without asking (a kernel tree's median file is a few KiB).
const ASK_FROM: i64 = 16 << 10;

pub struct Http {
    base: String,
    agent: ureq::Agent,
    /// Extra headers (a bearer token): sent, never shown.
    headers: Vec<(String, String)>,
    budget: Arc<Budget>,
}

impl Http {
    pub fn new(
        base: &str,
        instance: &str,
        headers: Vec<(String, String)>,
        budget: Arc<Budget>,
    ) -> Http {
        let mut base = base.trim_end_matches('/').to_string();
        if !instance.is_empty() {
            base = format!("{base}/{}", instance.trim_matches('/'));
        }
        // https:// trusts the system's roots, as grpcs:// does.
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::PlatformVerifier)
            .build();
        // No redirect is followed: the extra headers carry credentials, and a cache that sends
        // them on to another origin (or a plain-HTTP one) would hand them to whoever is there.
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .tls_config(tls)
            .build()
            .into();
        Http {
            base,
            agent,
            headers,
            budget,
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

    /// Runs a request, again after a short pause when it failed in a way that may pass (no
    /// answer, a reset connection, 408, 429, 5xx): one dropped connection on a busy CI server
    /// must not end the run's uploads. The last answer, or why there is none. The URL is
    /// kbuild's own (no secret in it); header values never appear in an error.
    fn call(
        &self,
        method: &str,
        url: &str,
        body: Option<Source<'_>>,
    ) -> Result<ureq::http::Response<ureq::Body>, RemoteError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let started = Instant::now();
            let answer = self.once(method, url, body);
            // Only a quick failure is tried again: one that took long (a timeout, a crawling
            // answer) would take as long again, and the run's budget is not spent on repeats.
            let last = attempt == ATTEMPTS || started.elapsed() > QUICK || self.budget.exhausted();
            match answer {
                Ok(response) if last || !passing(response.status().as_u16()) => {
                    return refuse_redirect(url, response);
                }
                Err(e @ RemoteError::Invalid(_)) => return Err(e),
                Err(e) if last => return Err(e),
                _ => std::thread::sleep(PAUSE * attempt),
            }
        }
    }

    /// One try; the body, if any, is sent as an octet stream, a file opened afresh.
    fn once(
        &self,
        method: &str,
        url: &str,
        body: Option<Source<'_>>,
    ) -> Result<ureq::http::Response<ureq::Body>, RemoteError> {
        let request = self.request(method, url);
        let octets =
            |r: ureq::http::request::Builder| r.header("Content-Type", "application/octet-stream");
        match body {
            None => self.send(url, request.body(())),
            Some(Source::Bytes(bytes)) => self.send(url, octets(request).body(bytes.to_vec())),
            Some(Source::File(path)) => {
                let file = std::fs::File::open(path)
                    .map_err(|e| RemoteError::Unreachable(format!("{}: {e}", path.display())))?;
                let len = file.metadata().map_or(0, |m| m.len());
                let request = octets(request).header("Content-Length", len.to_string());
                self.send(url, request.body(ureq::SendBody::from_owned_reader(file)))
            }
        }
    }

    /// Runs a request that could be made, or says why it could not be made or sent.
    fn send<B: ureq::AsSendBody>(
        &self,
        url: &str,
        request: Result<ureq::http::Request<B>, ureq::http::Error>,
    ) -> Result<ureq::http::Response<ureq::Body>, RemoteError> {
        let request = request.map_err(|e| RemoteError::Invalid(e.to_string()))?;
        let request = self
            .agent
            .configure_request(request)
            .timeout_global(Some(self.budget.call_timeout(0)))
            .build();
        self.agent
            .run(request)
            .map_err(|e| RemoteError::Unreachable(format!("{url}: {e}")))
    }

    /// Reads `/<kind>/<hash>` into `to`; whether the server has it.
    fn get(
        &self,
        kind: &str,
        digest: &re::Digest,
        to: &mut dyn Write,
    ) -> Result<bool, RemoteError> {
        let url = self.url(kind, digest);
        let response = self.call("GET", &url, None)?;
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
        match self.call("PUT", &url, Some(body))?.status().as_u16() {
            200..=299 => Ok(()),
            status => Err(RemoteError::Unreachable(format!(
                "PUT {url}: HTTP {status}"
            ))),
        }
    }
}

/// Tries of one request, and the pause before the second (longer before each later one).
const ATTEMPTS: u32 = 3;
const PAUSE: Duration = Duration::from_millis(200);
/// A failure quicker than this (a reset connection, a 503) may pass when asked again.
const QUICK: Duration = Duration::from_secs(2);

/// A redirect is an error that says where it led (the origin only: a path may hold a token),
/// so that the user can point kbuild at the address that answers.
fn refuse_redirect(
    url: &str,
    response: ureq::http::Response<ureq::Body>,
) -> Result<ureq::http::Response<ureq::Body>, RemoteError> {
    let status = response.status().as_u16();
    if !(300..400).contains(&status) {
        return Ok(response);
    }
    let to = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .and_then(|l| l.parse::<ureq::http::Uri>().ok())
        .and_then(|u| Some(format!("{}://{}", u.scheme_str()?, u.authority()?)))
        .unwrap_or_else(|| "another address".into());
    Err(RemoteError::Unreachable(format!(
        "{url}: HTTP {status}, a redirect to {to}; kbuild follows no redirect from a cache \
         (its headers may hold credentials): set --remote-cache to the address that answers"
    )))
}

/// Statuses that may pass when asked again: a timeout, too many requests, a server error.
fn passing(status: u16) -> bool {
    matches!(status, 408 | 429 | 500..=599)
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
        let mut bytes = Limited::new(Vec::new(), MAX_ACTION_RESULT);
        let found = self.get("ac", action, &mut bytes);
        if bytes.exceeded() {
            return Err(RemoteError::Invalid(format!(
                "the action cache entry {} is larger than {MAX_ACTION_RESULT} bytes",
                action.hash
            )));
        }
        if !found? {
            return Ok(None);
        }
        re::ActionResult::decode(bytes.into_inner().as_slice())
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
            match self.call("HEAD", &url, None)?.status().as_u16() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    /// The bodies a test server was sent.
    type Bodies = Arc<Mutex<Vec<Vec<u8>>>>;

    /// A server answering the given statuses in turn, one a connection, then closing; the
    /// bodies it was sent are kept.
    fn server(statuses: Vec<u16>) -> (String, Bodies, Arc<AtomicUsize>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let asked = Arc::new(AtomicUsize::new(0));
        let (kept, count) = (bodies.clone(), asked.clone());
        std::thread::spawn(move || {
            for status in statuses {
                let Ok((stream, _)) = listener.accept() else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let (mut line, mut len) = (String::new(), 0);
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                    line.clear();
                }
                let mut body = vec![0; len];
                reader.read_exact(&mut body).unwrap();
                kept.lock().unwrap().push(body);
                let mut stream = stream;
                let answer = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                stream.write_all(answer.as_bytes()).unwrap();
            }
        });
        (url, bodies, asked)
    }

    fn digest() -> re::Digest {
        Function::Sha256.of_bytes(b"blob")
    }

    #[test]
    fn a_put_answered_503_is_sent_again_from_the_file() {
        let (url, bodies, asked) = server(vec![503, 500, 201]);
        let http = Http::new(&url, "", Vec::new(), Budget::new(Duration::from_secs(5)));
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), b"blob").unwrap();
        http.put("cas", &digest(), Source::File(file.path()))
            .unwrap();
        assert_eq!(asked.load(Ordering::SeqCst), 3);
        assert_eq!(*bodies.lock().unwrap(), vec![b"blob".to_vec(); 3]);
    }

    #[test]
    fn a_lasting_error_is_reported_after_three_tries_and_a_refusal_at_once() {
        let (url, _, asked) = server(vec![500, 500, 500, 500]);
        let http = Http::new(&url, "", Vec::new(), Budget::new(Duration::from_secs(5)));
        let e = http
            .put("ac", &digest(), Source::Bytes(b"blob"))
            .unwrap_err();
        assert!(e.to_string().contains("HTTP 500"), "{e}");
        assert_eq!(asked.load(Ordering::SeqCst), 3);

        let (url, _, asked) = server(vec![403, 201]);
        let http = Http::new(&url, "", Vec::new(), Budget::new(Duration::from_secs(5)));
        let e = http
            .put("ac", &digest(), Source::Bytes(b"blob"))
            .unwrap_err();
        assert!(e.to_string().contains("HTTP 403"), "{e}");
        assert_eq!(asked.load(Ordering::SeqCst), 1);
    }
}

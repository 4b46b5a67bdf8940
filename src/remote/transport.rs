//! What a remote cache protocol must do: the few calls kbuild makes, the same for REAPI over
//! gRPC and for the HTTP cache protocol.

use std::io::Write;
use std::path::Path;

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;

use super::digest::Function;
use super::layout::Limited;

/// Why a call to the server failed. Every failure makes the remote a miss, never a failed run.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The server could not serve the call (slow, HTTP 5xx, a gRPC status).
    #[error("{0}")]
    Unreachable(String),
    /// Nobody answers at the address (refused, reset, gRPC `UNAVAILABLE` after its retries): a
    /// server gone is gone for the rest of the run.
    #[error("{0}")]
    Down(String),
    /// An action waited its queue timeout and no worker took it: most often a platform that no
    /// worker offers.
    #[error("{0}")]
    Unclaimed(String),
    /// The server answered something kbuild cannot use (garbage, a digest that does not match).
    #[error("{0}")]
    Invalid(String),
}

impl RemoteError {
    /// The same failure, its message put in `context`.
    pub fn within(self, context: impl FnOnce(String) -> String) -> RemoteError {
        match self {
            RemoteError::Unreachable(m) => RemoteError::Unreachable(context(m)),
            RemoteError::Down(m) => RemoteError::Down(context(m)),
            RemoteError::Unclaimed(m) => RemoteError::Unclaimed(context(m)),
            RemoteError::Invalid(m) => RemoteError::Invalid(context(m)),
        }
    }

    /// Whether the server itself is at fault (down, failing, slow), not what it sent.
    pub fn is_servers(&self) -> bool {
        !matches!(self, RemoteError::Invalid(_))
    }
}

/// What the server offers.
#[derive(Clone, Debug)]
pub struct Capabilities {
    pub functions: Vec<Function>,
    /// The most bytes one batch call may carry; 0 when the server states no bound.
    pub max_batch: u64,
}

/// Where the bytes of an upload come from.
#[derive(Clone, Copy)]
pub enum Source<'a> {
    Bytes(&'a [u8]),
    File(&'a Path),
}

impl Source<'_> {
    pub fn read_all(&self) -> std::io::Result<Vec<u8>> {
        match self {
            Source::Bytes(b) => Ok(b.to_vec()),
            Source::File(p) => std::fs::read(p),
        }
    }
}

pub trait Transport: Send + Sync {
    fn capabilities(&self) -> Result<Capabilities, RemoteError>;

    fn get_action_result(
        &self,
        function: Function,
        action: &re::Digest,
    ) -> Result<Option<re::ActionResult>, RemoteError>;

    fn update_action_result(
        &self,
        function: Function,
        action: &re::Digest,
        result: &re::ActionResult,
    ) -> Result<(), RemoteError>;

    /// Those of `digests` the server does not hold.
    fn find_missing(
        &self,
        function: Function,
        digests: &[re::Digest],
    ) -> Result<Vec<re::Digest>, RemoteError>;

    /// Writes the blob's bytes to `to`, as the server sends them (the caller verifies).
    fn read_blob(
        &self,
        function: Function,
        digest: &re::Digest,
        to: &mut dyn Write,
    ) -> Result<(), RemoteError>;

    /// Reads small blobs whole, as the server sends them (the caller verifies); a protocol with
    /// batch calls asks for many at once.
    fn read_blobs(
        &self,
        function: Function,
        digests: &[re::Digest],
    ) -> Result<Vec<(re::Digest, Vec<u8>)>, RemoteError> {
        digests
            .iter()
            .map(|d| Ok((d.clone(), read_limited(self, function, d)?)))
            .collect()
    }

    /// Runs the action `action` names through the server's Execution service and gives its
    /// response, following the operation to its end (again by name if the stream breaks) and
    /// cancelling it when `cancel` is set. `wait` bounds the whole execution, and the time it
    /// may stay queued with no worker taking it. Only REAPI has one.
    fn execute(
        &self,
        function: Function,
        action: &re::Digest,
        wait: (std::time::Duration, std::time::Duration),
        cancel: &(dyn Fn() -> bool + Sync),
    ) -> Result<re::ExecuteResponse, RemoteError> {
        let _ = (function, action, wait, cancel);
        Err(RemoteError::Invalid(
            "the HTTP cache protocol has no remote execution: give a grpc:// executor".into(),
        ))
    }

    /// Uploads blobs; a protocol with batch calls groups the small ones.
    fn write_blobs(
        &self,
        function: Function,
        blobs: &[(re::Digest, Source<'_>)],
    ) -> Result<(), RemoteError>;
}

/// Reads a blob into memory, refusing more bytes than its digest names.
pub fn read_limited<T: Transport + ?Sized>(
    transport: &T,
    function: Function,
    digest: &re::Digest,
) -> Result<Vec<u8>, RemoteError> {
    let limit = u64::try_from(digest.size_bytes).unwrap_or(0);
    let mut to = Limited::new(Vec::new(), limit);
    let read = transport.read_blob(function, digest, &mut to);
    if to.exceeded() {
        return Err(RemoteError::Invalid(format!(
            "the server sent more than the {limit} bytes of the blob {}",
            digest.hash
        )));
    }
    read?;
    Ok(to.into_inner())
}

pub fn io_error(what: &str) -> impl FnOnce(std::io::Error) -> RemoteError + '_ {
    move |e| RemoteError::Unreachable(format!("{what}: {e}"))
}

//! REAPI v2 over gRPC (Bazel's `--remote_cache=grpc://…`): BuildGrid, Buildbarn, BuildBuddy,
//! NativeLink, bazel-remote. Small blobs go in batch calls within the server's
//! `max_batch_total_size_bytes`, large ones through ByteStream.

use std::io::Write;
use std::time::Duration;

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use bazel_remote_apis::google::bytestream;
use re::action_cache_client::ActionCacheClient;
use re::capabilities_client::CapabilitiesClient;
use re::content_addressable_storage_client::ContentAddressableStorageClient;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use super::budget::Budget;
use super::digest::Function;
use super::transport::{Capabilities, RemoteError, Source, Transport};

/// Messages may be as large as a batch, and more: the default 4 MB bound of tonic is too small
/// for the tree of a kernel source (80,000 files).
const MAX_MESSAGE: usize = 256 << 20;
/// A ByteStream chunk.
const CHUNK: usize = 1 << 20;

pub struct Grpc {
    runtime: tokio::runtime::Runtime,
    channel: Channel,
    instance: String,
    headers: Vec<(AsciiMetadataKey, AsciiMetadataValue)>,
    budget: std::sync::Arc<Budget>,
    /// Asked once per run.
    capabilities: std::sync::OnceLock<Capabilities>,
}

fn status(what: &str) -> impl FnOnce(tonic::Status) -> RemoteError + '_ {
    move |s| {
        let message = format!("{what}: {} ({})", s.code(), s.message());
        match s.code() {
            // tonic's own answer when no connection could be made, and a server's "go away".
            tonic::Code::Unavailable => RemoteError::Down(message),
            _ => RemoteError::Unreachable(message),
        }
    }
}

/// How often a call is tried when the server says to come back: `RESOURCE_EXHAUSTED` (a
/// server's concurrency limit, BuildGrid's among them) often, `UNAVAILABLE` (a restart, or
/// nobody listening) twice, so that a server that is down costs well under a second.
fn tries(code: tonic::Code) -> u32 {
    match code {
        tonic::Code::ResourceExhausted => 8,
        tonic::Code::Unavailable => 2,
        _ => 1,
    }
}

/// Runs `call` until it succeeds, fails for good, or has been tried as often as its failure
/// allows, waiting 50 ms, 100 ms, 200 ms … between tries.
fn retrying<T>(
    what: &str,
    mut call: impl FnMut() -> Result<T, tonic::Status>,
) -> Result<T, RemoteError> {
    let mut delay = Duration::from_millis(50);
    let mut tried = 0;
    loop {
        tried += 1;
        match call() {
            Ok(value) => return Ok(value),
            Err(s) if tried < tries(s.code()) => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(s) => return Err(status(what)(s)),
        }
    }
}

impl Grpc {
    /// `url` is `grpc://host:port` or `grpcs://host:port` (TLS with the system's roots). The
    /// connection is made on first use, so a server that is down costs a warning, not a start.
    pub fn new(
        url: &str,
        instance: &str,
        headers: &[(String, String)],
        budget: std::sync::Arc<Budget>,
    ) -> Result<Grpc, String> {
        let timeout = budget.limit();
        let (tls, rest) = if let Some(rest) = url.strip_prefix("grpcs://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("grpc://") {
            (false, rest)
        } else {
            return Err(format!("`{url}` is not a grpc:// or grpcs:// URL"));
        };
        let scheme = if tls { "https" } else { "http" };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| format!("starting the gRPC runtime: {e}"))?;
        let mut endpoint =
            Endpoint::from_shared(format!("{scheme}://{}", rest.trim_end_matches('/')))
                .map_err(|e| format!("`{url}`: {e}"))?
                .connect_timeout(timeout.min(Duration::from_secs(10)))
                .timeout(timeout);
        if tls {
            endpoint = endpoint
                .tls_config(ClientTlsConfig::new().with_native_roots())
                .map_err(|e| format!("`{url}`: {e}"))?;
        }
        let channel = {
            let _enter = runtime.enter();
            endpoint.connect_lazy()
        };
        let headers = headers
            .iter()
            .map(|(name, value)| {
                let key = AsciiMetadataKey::from_bytes(name.to_ascii_lowercase().as_bytes())
                    .map_err(|_| format!("`{name}` is no gRPC header name"))?;
                let value = AsciiMetadataValue::try_from(value.as_str())
                    .map_err(|_| format!("the value of header `{name}` is not printable ASCII"))?;
                Ok((key, value))
            })
            .collect::<Result<_, String>>()?;
        Ok(Grpc {
            runtime,
            channel,
            instance: instance.to_string(),
            headers,
            budget,
            capabilities: std::sync::OnceLock::new(),
        })
    }

    /// The connection, for the other services a caller speaks over it (the Bots service of
    /// `kbuild worker`, Execution).
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// Runs `future` on this connection's runtime; not from inside it.
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// A request with the configured headers and the call's time bound.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        for (key, value) in &self.headers {
            request.metadata_mut().insert(key.clone(), value.clone());
        }
        request.set_timeout(self.budget.call_timeout(0));
        request
    }

    fn cas(&self) -> ContentAddressableStorageClient<Channel> {
        ContentAddressableStorageClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }

    fn bytestream(&self) -> bytestream::byte_stream_client::ByteStreamClient<Channel> {
        bytestream::byte_stream_client::ByteStreamClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
    }

    fn resource(&self, function: Function, digest: &re::Digest) -> String {
        let blob = format!(
            "blobs/{}{}/{}",
            function.resource_segment(),
            digest.hash,
            digest.size_bytes
        );
        if self.instance.is_empty() {
            blob
        } else {
            format!("{}/{blob}", self.instance)
        }
    }

    fn upload_resource(&self, function: Function, digest: &re::Digest) -> String {
        let blob = self.resource(function, digest);
        let uuid = uuid();
        match blob.strip_prefix(&format!("{}/", self.instance)) {
            Some(rest) if !self.instance.is_empty() => {
                format!("{}/uploads/{uuid}/{rest}", self.instance)
            }
            _ => format!("uploads/{uuid}/{blob}"),
        }
    }

    fn write_stream(
        &self,
        function: Function,
        digest: &re::Digest,
        source: Source<'_>,
    ) -> Result<(), RemoteError> {
        let what = format!("ByteStream.Write {}", super::digest::show(digest));
        let committed = retrying(&what, || {
            let stream = self.chunks(function, digest, source)?;
            self.runtime
                .block_on(self.bytestream().write(self.request(stream)))
                .map(|r| r.into_inner().committed_size)
        })?;
        if committed != digest.size_bytes {
            return Err(RemoteError::Invalid(format!(
                "{what}: the server committed {committed} of {} bytes",
                digest.size_bytes
            )));
        }
        Ok(())
    }

    /// The write requests of one upload, each chunk read when tonic asks for it, so that a
    /// large file is never held whole. A short read ends the stream early, and the server then
    /// refuses the incomplete write.
    fn chunks(
        &self,
        function: Function,
        digest: &re::Digest,
        source: Source<'_>,
    ) -> Result<
        impl futures_util::Stream<Item = bytestream::WriteRequest> + Send + 'static,
        tonic::Status,
    > {
        let resource = self.upload_resource(function, digest);
        let mut reader: Box<dyn std::io::Read + Send> = match source {
            Source::Bytes(b) => Box::new(std::io::Cursor::new(b.to_vec())),
            Source::File(p) => Box::new(std::fs::File::open(p).map_err(|e| {
                tonic::Status::failed_precondition(format!("{}: {e}", p.display()))
            })?),
        };
        let size = digest.size_bytes;
        let (mut offset, mut done) = (0i64, false);
        Ok(futures_util::stream::poll_fn(move |_| {
            if done {
                return std::task::Poll::Ready(None);
            }
            let mut data = vec![0u8; CHUNK.min((size - offset).max(0) as usize)];
            if reader.read_exact(&mut data).is_err() {
                done = true;
                return std::task::Poll::Ready(None);
            }
            let finish_write = offset + data.len() as i64 >= size;
            let request = bytestream::WriteRequest {
                resource_name: resource.clone(),
                write_offset: offset,
                finish_write,
                data,
            };
            offset = request.write_offset + request.data.len() as i64;
            done = finish_write;
            std::task::Poll::Ready(Some(request))
        }))
    }

    fn batch_update(
        &self,
        function: Function,
        blobs: Vec<(re::Digest, Vec<u8>)>,
    ) -> Result<(), RemoteError> {
        let request = re::BatchUpdateBlobsRequest {
            instance_name: self.instance.clone(),
            requests: blobs
                .into_iter()
                .map(|(digest, data)| re::batch_update_blobs_request::Request {
                    digest: Some(digest),
                    data,
                    compressor: 0,
                })
                .collect(),
            digest_function: function.code(),
        };
        let response = retrying("BatchUpdateBlobs", || {
            self.runtime
                .block_on(self.cas().batch_update_blobs(self.request(request.clone())))
        })?;
        for r in response.into_inner().responses {
            if let Some(s) = r.status.filter(|s| s.code != 0) {
                let hash = r.digest.map(|d| d.hash).unwrap_or_default();
                return Err(RemoteError::Unreachable(format!(
                    "BatchUpdateBlobs {hash}: code {} ({})",
                    s.code, s.message
                )));
            }
        }
        Ok(())
    }
}

/// A random version-4 UUID for an upload's resource name.
fn uuid() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let seed = format!(
        "{:?} {} {}",
        std::time::SystemTime::now(),
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    );
    let mut b = *blake3::hash(seed.as_bytes()).as_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(&b[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

impl Transport for Grpc {
    fn execute(
        &self,
        function: Function,
        action: &re::Digest,
        wait: (Duration, Duration),
        cancel: &(dyn Fn() -> bool + Sync),
    ) -> Result<re::ExecuteResponse, RemoteError> {
        self.execute_action(function, action, wait, cancel)
    }

    fn capabilities(&self) -> Result<Capabilities, RemoteError> {
        if let Some(known) = self.capabilities.get() {
            return Ok(known.clone());
        }
        let request = re::GetCapabilitiesRequest {
            instance_name: self.instance.clone(),
        };
        let caps = retrying("GetCapabilities", || {
            self.runtime.block_on(
                CapabilitiesClient::new(self.channel.clone())
                    .get_capabilities(self.request(request.clone())),
            )
        })?
        .into_inner();
        let cache = caps.cache_capabilities.ok_or_else(|| {
            RemoteError::Invalid("the server offers no cache (no cache_capabilities)".into())
        })?;
        let functions = cache
            .digest_functions
            .iter()
            .filter_map(|&code| {
                [Function::Blake3, Function::Sha256]
                    .into_iter()
                    .find(|f| f.code() == code)
            })
            .collect();
        let known = Capabilities {
            functions,
            max_batch: cache.max_batch_total_size_bytes.max(0) as u64,
        };
        Ok(self.capabilities.get_or_init(|| known).clone())
    }

    fn get_action_result(
        &self,
        function: Function,
        action: &re::Digest,
    ) -> Result<Option<re::ActionResult>, RemoteError> {
        let request = re::GetActionResultRequest {
            instance_name: self.instance.clone(),
            action_digest: Some(action.clone()),
            digest_function: function.code(),
            ..Default::default()
        };
        // An ActionResult is small: a larger answer is refused before it fills memory.
        let client = ActionCacheClient::new(self.channel.clone())
            .max_decoding_message_size(super::http::MAX_ACTION_RESULT as usize);
        retrying("GetActionResult", || {
            let mut client = client.clone();
            match self
                .runtime
                .block_on(client.get_action_result(self.request(request.clone())))
            {
                Ok(r) => Ok(Some(r.into_inner())),
                Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
                Err(s) => Err(s),
            }
        })
    }

    fn update_action_result(
        &self,
        function: Function,
        action: &re::Digest,
        result: &re::ActionResult,
    ) -> Result<(), RemoteError> {
        let request = re::UpdateActionResultRequest {
            instance_name: self.instance.clone(),
            action_digest: Some(action.clone()),
            action_result: Some(result.clone()),
            digest_function: function.code(),
            ..Default::default()
        };
        let client =
            ActionCacheClient::new(self.channel.clone()).max_encoding_message_size(MAX_MESSAGE);
        retrying("UpdateActionResult", || {
            let mut client = client.clone();
            self.runtime
                .block_on(client.update_action_result(self.request(request.clone())))
        })?;
        Ok(())
    }

    fn find_missing(
        &self,
        function: Function,
        digests: &[re::Digest],
    ) -> Result<Vec<re::Digest>, RemoteError> {
        let mut missing = Vec::new();
        // Bounded requests: a kernel tree names 80,000 blobs.
        for part in digests.chunks(10_000) {
            let request = re::FindMissingBlobsRequest {
                instance_name: self.instance.clone(),
                blob_digests: part.to_vec(),
                digest_function: function.code(),
            };
            let response = retrying("FindMissingBlobs", || {
                self.runtime
                    .block_on(self.cas().find_missing_blobs(self.request(request.clone())))
            })?;
            missing.extend(response.into_inner().missing_blob_digests);
        }
        Ok(missing)
    }

    fn read_blob(
        &self,
        function: Function,
        digest: &re::Digest,
        to: &mut dyn Write,
    ) -> Result<(), RemoteError> {
        let request = bytestream::ReadRequest {
            resource_name: self.resource(function, digest),
            read_offset: 0,
            read_limit: 0,
        };
        let what = format!("ByteStream.Read {}", super::digest::show(digest));
        // Only the call is tried again: once bytes were written, a failure is final.
        let mut stream = retrying(&what, || {
            self.runtime
                .block_on(self.bytestream().read(self.request(request.clone())))
        })?
        .into_inner();
        self.runtime.block_on(async {
            while let Some(chunk) = stream.message().await.map_err(status(&what))? {
                to.write_all(&chunk.data)
                    .map_err(|e| RemoteError::Unreachable(format!("{what}: {e}")))?;
            }
            Ok(())
        })
    }

    fn read_blobs(
        &self,
        function: Function,
        digests: &[re::Digest],
    ) -> Result<Vec<(re::Digest, Vec<u8>)>, RemoteError> {
        let bound = self.capabilities().map_or(0, |c| c.max_batch);
        let mut out = Vec::with_capacity(digests.len());
        let mut batch: Vec<re::Digest> = Vec::new();
        let mut size = 0u64;
        let flush = |batch: &mut Vec<re::Digest>, out: &mut Vec<_>| -> Result<(), RemoteError> {
            if batch.is_empty() {
                return Ok(());
            }
            let request = re::BatchReadBlobsRequest {
                instance_name: self.instance.clone(),
                digests: std::mem::take(batch),
                digest_function: function.code(),
                ..Default::default()
            };
            let response = retrying("BatchReadBlobs", || {
                self.runtime
                    .block_on(self.cas().batch_read_blobs(self.request(request.clone())))
            })?;
            for r in response.into_inner().responses {
                let digest = r.digest.unwrap_or_default();
                if let Some(s) = r.status.filter(|s| s.code != 0) {
                    return Err(RemoteError::Invalid(format!(
                        "the server lacks the blob {} that its action cache names (code {}: {})",
                        digest.hash, s.code, s.message
                    )));
                }
                out.push((digest, r.data));
            }
            Ok(())
        };
        for digest in digests {
            let bytes = digest.size_bytes as u64 + 256;
            if bound == 0 || bytes >= bound {
                out.push((
                    digest.clone(),
                    super::transport::read_limited(self, function, digest)?,
                ));
                continue;
            }
            if size + bytes >= bound {
                flush(&mut batch, &mut out)?;
                size = 0;
            }
            size += bytes;
            batch.push(digest.clone());
        }
        flush(&mut batch, &mut out)?;
        Ok(out)
    }

    fn write_blobs(
        &self,
        function: Function,
        blobs: &[(re::Digest, Source<'_>)],
    ) -> Result<(), RemoteError> {
        let bound = self.capabilities().map_or(0, |c| c.max_batch);
        // Room for the request's framing: each entry costs its digest and a few tags.
        let fits = |size: u64| bound > 0 && size + 256 < bound;
        let mut batch: Vec<(re::Digest, Vec<u8>)> = Vec::new();
        let mut batch_size = 0u64;
        for (digest, source) in blobs {
            let size = digest.size_bytes as u64;
            if !fits(size) {
                self.write_stream(function, digest, *source)?;
                continue;
            }
            if !fits(batch_size + size + 256) && !batch.is_empty() {
                self.batch_update(function, std::mem::take(&mut batch))?;
                batch_size = 0;
            }
            let data = source
                .read_all()
                .map_err(|e| RemoteError::Unreachable(format!("reading a blob to upload: {e}")))?;
            batch_size += size + 256;
            batch.push((digest.clone(), data));
        }
        if !batch.is_empty() {
            self.batch_update(function, batch)?;
        }
        Ok(())
    }
}

impl Grpc {
    /// One Execute, or WaitExecution for `name` once the first stream broke: the operation's
    /// name (once known) and, when it ended, its response.
    async fn follow(
        &self,
        function: Function,
        action: &re::Digest,
        name: &mut Option<String>,
        (wait, queue): (Duration, Duration),
    ) -> Result<Followed, tonic::Status> {
        use bazel_remote_apis::google::longrunning::operation::Result as Outcome;
        use prost::Message as _;
        let mut client = re::execution_client::ExecutionClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE);
        let mut stream = match name.clone() {
            None => {
                let request = re::ExecuteRequest {
                    instance_name: self.instance.clone(),
                    action_digest: Some(action.clone()),
                    digest_function: function.code(),
                    ..Default::default()
                };
                let mut request = self.request(request);
                request.set_timeout(wait);
                client.execute(request).await?.into_inner()
            }
            Some(name) => {
                let mut request = self.request(re::WaitExecutionRequest { name });
                request.set_timeout(wait);
                client.wait_execution(request).await?.into_inner()
            }
        };
        // Until a worker takes the action, each wait for news is bounded by `queue`: a
        // platform no worker offers would otherwise wait for ever.
        let mut queued_since: Option<std::time::Instant> = None;
        loop {
            let next = match queued_since {
                Some(since) => {
                    let left = queue.saturating_sub(since.elapsed());
                    match tokio::time::timeout(left, stream.message()).await {
                        Ok(next) => next?,
                        Err(_) => return Ok(Followed::Unclaimed),
                    }
                }
                None => stream.message().await?,
            };
            let Some(op) = next else { break };
            *name = Some(op.name.clone());
            let stage = op
                .metadata
                .as_ref()
                .and_then(|m| re::ExecuteOperationMetadata::decode(&m.value[..]).ok())
                .map_or(0, |m| m.stage);
            if stage == re::execution_stage::Value::Queued as i32 {
                queued_since.get_or_insert_with(std::time::Instant::now);
            } else {
                queued_since = None;
            }
            if !op.done {
                continue;
            }
            return match op.result {
                Some(Outcome::Response(any)) => prost::Message::decode(&any.value[..])
                    .map(|r| Followed::Done(Box::new(r)))
                    .map_err(|e| {
                        tonic::Status::data_loss(format!(
                            "the ExecuteResponse does not decode: {e}"
                        ))
                    }),
                Some(Outcome::Error(status)) => Err(tonic::Status::new(
                    tonic::Code::from_i32(status.code),
                    status.message,
                )),
                None => Err(tonic::Status::data_loss(
                    "a done operation without a result",
                )),
            };
        }
        Err(tonic::Status::unavailable(
            "the operation stream ended early",
        ))
    }

    /// Asks the server to cancel the operation `name` (Ctrl-C), not waiting long for it.
    fn cancel_operation(&self, name: &str) {
        use bazel_remote_apis::google::longrunning::operations_client::OperationsClient;
        // A busy server may take seconds to answer; a cancel lost leaves the command running
        // on its worker to the end, so it is asked up to three times.
        for _ in 0..3 {
            let mut request = self.request(
                bazel_remote_apis::google::longrunning::CancelOperationRequest {
                    name: name.to_string(),
                },
            );
            request.set_timeout(Duration::from_secs(10));
            let answer = self
                .runtime
                .block_on(OperationsClient::new(self.channel.clone()).cancel_operation(request));
            match answer {
                Ok(_) => return,
                Err(s)
                    if matches!(
                        s.code(),
                        tonic::Code::NotFound | tonic::Code::InvalidArgument
                    ) =>
                {
                    return;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }
}

/// How following an operation ended.
enum Followed {
    Done(Box<re::ExecuteResponse>),
    /// It waited its queue timeout and no worker took it.
    Unclaimed,
}

/// How often a broken operation stream is taken up again by name before the execution counts
/// as failed.
const RECONNECTS: u32 = 3;

impl Grpc {
    pub(super) fn execute_action(
        &self,
        function: Function,
        action: &re::Digest,
        (wait, queue): (Duration, Duration),
        cancel: &(dyn Fn() -> bool + Sync),
    ) -> Result<re::ExecuteResponse, RemoteError> {
        let mut name = None;
        let mut broke = 0;
        loop {
            let outcome = self.runtime.block_on(async {
                tokio::select! {
                    outcome = self.follow(function, action, &mut name, (wait, queue)) => Some(outcome),
                    _ = cancelled(cancel) => None,
                }
            });
            match outcome {
                None => {
                    if let Some(name) = &name {
                        self.cancel_operation(name);
                    }
                    return Err(RemoteError::Unreachable("interrupted".into()));
                }
                Some(Ok(Followed::Done(response))) => return Ok(*response),
                Some(Ok(Followed::Unclaimed)) => {
                    if let Some(name) = &name {
                        self.cancel_operation(name);
                    }
                    return Err(RemoteError::Unclaimed(format!(
                        "queued for {} s and no worker took it",
                        queue.as_secs()
                    )));
                }
                // The stream broke (a proxy, a restart): follow the same operation by name.
                Some(Err(s))
                    if s.code() == tonic::Code::Unavailable
                        && name.is_some()
                        && broke < RECONNECTS =>
                {
                    broke += 1;
                    std::thread::sleep(Duration::from_millis(200 << broke));
                }
                Some(Err(s)) if s.code() == tonic::Code::DeadlineExceeded && name.is_some() => {
                    if let Some(name) = &name {
                        self.cancel_operation(name);
                    }
                    return Err(status("Execute")(s));
                }
                Some(Err(s)) => return Err(status("Execute")(s)),
            }
        }
    }
}

async fn cancelled(cancel: &(dyn Fn() -> bool + Sync)) {
    while !cancel() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server nobody reaches is told apart by its status, not by words of its message: the
    /// engine switches such a server off for the run.
    #[test]
    fn unavailable_is_a_server_down_and_other_statuses_are_not() {
        let down = status("Execute")(tonic::Status::unavailable("tcp connect error"));
        assert!(matches!(down, RemoteError::Down(_)), "{down:?}");
        assert!(down.is_servers());
        for other in [
            tonic::Status::deadline_exceeded("slow"),
            tonic::Status::internal("connect"),
            tonic::Status::resource_exhausted("unavailable"),
        ] {
            let e = status("Execute")(other);
            assert!(matches!(e, RemoteError::Unreachable(_)), "{e:?}");
        }
    }

    /// An action no worker took is its own failure, and it keeps its kind through context.
    #[test]
    fn an_unclaimed_action_keeps_its_kind_with_context() {
        let e = RemoteError::Unclaimed("queued for 2 s".into()).within(|m| format!("`out`: {m}"));
        assert!(matches!(&e, RemoteError::Unclaimed(m) if m == "`out`: queued for 2 s"));
    }

    #[test]
    fn resource_names_follow_the_bytestream_rules() {
        let d = re::Digest {
            hash: "ab".repeat(32),
            size_bytes: 42,
        };
        let plain = Grpc::new(
            "grpc://127.0.0.1:1",
            "",
            &[],
            Budget::new(Duration::from_secs(1)),
        )
        .unwrap();
        assert_eq!(
            plain.resource(Function::Sha256, &d),
            format!("blobs/{}/42", d.hash)
        );
        // BLAKE3 must name its function; SHA-256 may not.
        let named = Grpc::new(
            "grpc://127.0.0.1:1",
            "kernels",
            &[],
            Budget::new(Duration::from_secs(1)),
        )
        .unwrap();
        assert_eq!(
            named.resource(Function::Blake3, &d),
            format!("kernels/blobs/blake3/{}/42", d.hash)
        );
        let upload = named.upload_resource(Function::Blake3, &d);
        let parts: Vec<&str> = upload.split('/').collect();
        assert_eq!(parts[..2], ["kernels", "uploads"]);
        assert_eq!(parts[2].len(), 36, "a UUID: {upload}");
        assert_eq!(parts[3..], ["blobs", "blake3", d.hash.as_str(), "42"]);
        assert_ne!(
            upload,
            named.upload_resource(Function::Blake3, &d),
            "a new UUID each time"
        );
        assert!(Grpc::new("http://x", "", &[], Budget::new(Duration::from_secs(1))).is_err());
        let bad = [("bad header".to_string(), "v".to_string())];
        assert!(Grpc::new("grpc://x:1", "", &bad, Budget::new(Duration::from_secs(1))).is_err());
    }
}

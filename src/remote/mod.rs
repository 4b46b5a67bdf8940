//! The remote cache: action results shared between machines over the Remote Execution API
//! (gRPC, [`grpc`]) or the HTTP cache protocol ([`http`]), so a CI runner that starts empty
//! takes what another machine built instead of building it again.
//!
//! The remote is never trusted and never required. A server that is down or answers errors
//! gets one warning and the run goes on locally without it; a result whose blobs do not match
//! their digests, or whose files do not make the manifest it claims, is a miss; nothing enters
//! the local cache before it is verified. Results go up only after an action succeeded here, in
//! the background of the rest of the run, and a failed upload is a warning.
//!
//! Mapping (see [`reapi`]): one REAPI `Action` per kbuild action, salted with the kbuild key;
//! its `ActionResult` holds the outputs as a `Tree`, kbuild's output manifest as a file, and
//! the action's log as stdout.

mod budget;
pub mod digest;
mod execute;
mod inflight;
#[doc(hidden)]
pub mod fuzzing;
pub mod grpc;
mod http;
pub mod layout;
pub mod reapi;
pub mod settings;
pub mod signing;
mod transport;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, mpsc};

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use prost::Message;

pub use budget::Budget;
pub use digest::Function;
pub use execute::{Executed, RemoteCommand, part_of};
pub use grpc::Grpc;
pub use settings::Settings;
pub use transport::{Capabilities, RemoteError, Source, Transport};

use crate::cache::{Cache, OutputEntry, OutputManifest};
use crate::key::ActionKey;
use crate::kind::ActionKind;
use crate::report::Reporter;
use layout::{Limited, TreeFile};

/// Blobs below this size are read in batches, the others streamed one by one.
const SMALL_BLOB: i64 = 1 << 20;

/// The largest tree or manifest kbuild reads into memory: a kernel's install tree with every
/// module is a few hundred KiB of either; more is a server's attempt to fill memory.
const MAX_MESSAGE: u64 = 64 << 20;

/// What a run moved from and to the remote.
#[derive(Default, Debug)]
pub struct Stats {
    pub down: AtomicU64,
    pub up: AtomicU64,
    pub failed_uploads: AtomicU64,
}

/// A result found in the remote action cache: the manifest it claims (which gives dependents
/// their key) and where its files are (`None` for a result kept by its manifest alone).
#[derive(Clone, Debug)]
pub struct Hit {
    pub manifest: OutputManifest,
    tree: Option<re::Digest>,
    /// The trusted key that signed the result, when the reader asks for signatures.
    signed_by: Option<String>,
}

/// One upload to do after the run's own work.
struct Upload {
    kind: ActionKind,
    key: ActionKey,
    manifest: OutputManifest,
    log: Vec<u8>,
}

pub struct Remote {
    transport: Box<dyn Transport>,
    /// The time this run may lose to the server, shared with the transport (see [`budget`]).
    budget: std::sync::Arc<Budget>,
    function: Function,
    url: String,
    upload: bool,
    /// Set by the first failure to reach the server: the rest of the run is local.
    broken: AtomicBool,
    /// Keys whose result could not be fetched: no longer offered this run.
    bad: Mutex<HashSet<ActionKey>>,
    warned: Mutex<HashSet<String>>,
    pub stats: Stats,
    /// Remote digests of local blobs learnt this run (only SHA-256 differs from blake3).
    remote_digests: Mutex<HashMap<(crate::digest::Digest, bool), re::Digest>>,
    cache: Cache,
    uploads: Mutex<Option<mpsc::Sender<Upload>>>,
    uploader: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Remote hashes the server is known to hold this run (uploaded, found or downloaded):
    /// never asked for or sent again, so a tree made from another tree costs its changes only.
    present: Mutex<HashSet<String>>,
    /// Blobs some thread of this run is sending now: sent once, waited for by the others.
    inflight: inflight::InFlight,
    /// Downloads: on the critical path, at the run's priority.
    transfers: rayon::ThreadPool,
    /// Uploads and their hashing: background work at the lowest CPU priority, so the build
    /// never waits for them while it has work (see `exec::lower_own_priority`).
    uploading: rayon::ThreadPool,
    /// Signs uploads (a trusted writer); see [`signing`].
    signer: Option<signing::Signer>,
    /// Takes only results signed by these keys.
    trust: Option<signing::Trust>,
    /// Where its warnings go: the run's view.
    report: std::sync::Arc<dyn Reporter>,
}

impl Remote {
    /// Connects as `settings` say. Only a malformed setting is an error; a server that cannot
    /// be reached gives a warning and a remote that answers every lookup with a miss.
    pub fn connect(
        settings: &Settings,
        cache: &Cache,
        report: std::sync::Arc<dyn Reporter>,
    ) -> Result<std::sync::Arc<Remote>, String> {
        let budget = Budget::new(settings.timeout);
        let transport: Box<dyn Transport> = if settings.url.starts_with("grpc") {
            Box::new(grpc::Grpc::new(
                &settings.url,
                &settings.instance,
                &settings.headers,
                budget.clone(),
            )?)
        } else if settings.url.starts_with("http://") || settings.url.starts_with("https://") {
            Box::new(http::Http::new(
                &settings.url,
                &settings.instance,
                settings.headers.clone(),
                budget.clone(),
            ))
        } else {
            return Err(format!(
                "`{}` is no remote cache URL: use grpc://, grpcs://, http:// or https://",
                settings.url
            ));
        };
        let signer = (settings.sign_key.as_deref())
            .map(signing::Signer::load)
            .transpose()?;
        let trust = (settings.trust.as_deref())
            .map(signing::Trust::load)
            .transpose()?;
        Ok(Remote::over(
            transport,
            budget,
            settings,
            (cache, report),
            (signer, trust),
        ))
    }

    /// A remote over `transport`, with the digest function the server prefers of those kbuild
    /// speaks (BLAKE3, else SHA-256).
    pub fn over(
        transport: Box<dyn Transport>,
        budget: std::sync::Arc<Budget>,
        settings: &Settings,
        (cache, report): (&Cache, std::sync::Arc<dyn Reporter>),
        (signer, trust): (Option<signing::Signer>, Option<signing::Trust>),
    ) -> std::sync::Arc<Remote> {
        let transfers = rayon::ThreadPoolBuilder::new()
            .num_threads(settings.transfers.max(1))
            .thread_name(|i| format!("kbuild-remote-{i}"))
            .build()
            .expect("a thread pool starts");
        let uploading = rayon::ThreadPoolBuilder::new()
            .num_threads(settings.transfers.max(1))
            .thread_name(|i| format!("kbuild-upload-{i}"))
            .start_handler(|_| crate::exec::lower_own_priority())
            .build()
            .expect("a thread pool starts");
        let mut remote = Remote {
            transport,
            budget,
            function: Function::Sha256,
            url: settings.url.clone(),
            // A reader that takes only signed results and cannot sign would put up entries that
            // such readers refuse, over the signed ones of the same keys: it only reads.
            upload: settings.upload && (trust.is_none() || signer.is_some()),
            broken: AtomicBool::new(false),
            bad: Mutex::default(),
            warned: Mutex::default(),
            stats: Stats::default(),
            remote_digests: Mutex::default(),
            cache: cache.clone(),
            uploads: Mutex::new(None),
            uploader: Mutex::new(None),
            present: Mutex::default(),
            inflight: Default::default(),
            transfers,
            uploading,
            signer,
            trust,
            report,
        };
        match remote.timed(0, || remote.transport.capabilities()) {
            Ok(caps) if caps.functions.contains(&Function::Blake3) => {
                remote.function = Function::Blake3
            }
            Ok(caps) if caps.functions.contains(&Function::Sha256) => {}
            Ok(_) => remote.give_up(&RemoteError::Invalid(
                "the server offers neither BLAKE3 nor SHA-256".into(),
            )),
            Err(e) => remote.give_up(&e),
        }
        std::sync::Arc::new(remote)
    }

    pub fn function(&self) -> Function {
        self.function
    }

    pub fn is_usable(&self) -> bool {
        !self.broken.load(Ordering::Relaxed)
    }

    fn warn(&self, what: &str) {
        let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
        if warned.insert(what.to_string()) {
            self.report.say(&format!(
                "kbuild: warning: remote cache {}: {what}",
                self.url
            ));
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Stops all calls to the server for the rest of the run without a warning of its own:
    /// remote execution found it gone and said so already.
    pub fn switch_off(&self) {
        self.broken.store(true, Ordering::Relaxed);
    }

    /// The server cannot be reached: one warning, and no more calls this run.
    fn give_up(&self, error: &RemoteError) {
        if !self.broken.swap(true, Ordering::Relaxed) {
            self.warn(&format!("{error}; building without it"));
        }
    }

    /// Notes a failure: a server that cannot be reached, or that answered something kbuild
    /// cannot use, is not asked again this run (one warning, not one per action).
    fn failed(&self, error: RemoteError) {
        self.give_up(&error)
    }

    /// Runs one call to the server that moves about `bytes`, and charges its time to the run's
    /// budget; once the budget is spent, the remote is off for the rest of the run.
    fn timed<T>(
        &self,
        bytes: u64,
        call: impl FnOnce() -> Result<T, RemoteError>,
    ) -> Result<T, RemoteError> {
        if self.budget.exhausted() {
            return Err(self.over_budget());
        }
        let started = std::time::Instant::now();
        let answer = call();
        if self.budget.charge(started.elapsed(), bytes) {
            let error = self.over_budget();
            self.give_up(&error);
            return Err(error);
        }
        answer
    }

    fn over_budget(&self) -> RemoteError {
        RemoteError::Unreachable(format!(
            "the server made this run wait {:.0} s in all, more than --remote-timeout's {} s",
            self.budget.spent().as_secs_f64(),
            self.budget.limit().as_secs()
        ))
    }

    /// Reads one blob whole into memory, verified (for messages: trees, manifests).
    fn read_small(&self, digest: &re::Digest) -> Result<Vec<u8>, RemoteError> {
        let declared = u64::try_from(digest.size_bytes).unwrap_or(u64::MAX);
        if declared > MAX_MESSAGE {
            return Err(RemoteError::Invalid(format!(
                "the server names a message of {declared} bytes ({}); kbuild reads at most {MAX_MESSAGE}",
                digest::show(digest)
            )));
        }
        let bytes = self.timed(declared, || {
            transport::read_limited(&*self.transport, self.function, digest)
        })?;
        self.stats
            .down
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        if self.function.of_bytes(&bytes) != *digest {
            return Err(RemoteError::Invalid(format!(
                "the blob {} does not match its digest",
                digest::show(digest)
            )));
        }
        Ok(bytes)
    }

    /// The remote's result for `key`, if it holds one that kbuild wrote and can read.
    pub fn lookup(&self, kind: ActionKind, key: ActionKey) -> Option<Hit> {
        let bad = self
            .bad
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&key);
        if bad || !self.is_usable() {
            return None;
        }
        match self.try_lookup(kind, key) {
            Ok(hit) => hit,
            Err(e) => {
                self.failed(e);
                None
            }
        }
    }

    fn try_lookup(&self, kind: ActionKind, key: ActionKey) -> Result<Option<Hit>, RemoteError> {
        let action = reapi::action(self.function, kind, key).action.digest;
        let Some(result) = self.timed(0, || {
            self.transport.get_action_result(self.function, &action)
        })?
        else {
            return Ok(None);
        };
        let Some((manifest, tree)) = reapi::parts(&result) else {
            return Ok(None);
        };
        let signed_by = match &self.trust {
            None => None,
            Some(trust) => {
                let signed = signing::Signed {
                    function: self.function,
                    action: &action,
                    manifest: &manifest,
                    tree: tree.as_ref(),
                };
                let Some(signer) = trust.signer(&signed, &result) else {
                    // Unsigned entries are normal (another branch's, an older kbuild's): a
                    // miss, said once, and the server stays in use.
                    self.warn(
                        "a result without a valid signature by a trusted key was taken as a miss",
                    );
                    return Ok(None);
                };
                Some(signer)
            }
        };
        let bytes = self.read_small(&manifest)?;
        let manifest: OutputManifest = serde_json::from_slice(&bytes)
            .map_err(|e| RemoteError::Invalid(format!("the output manifest of {key}: {e}")))?;
        Ok(Some(Hit {
            manifest,
            tree,
            signed_by,
        }))
    }

    /// Downloads a hit's files into `dest` (which must not exist), verifies each against the
    /// tree's digest and the manifest's blake3, ingests them and stores the entry under `key`.
    /// Files whose blob is in the local cache already are taken from there.
    pub fn fetch(&self, hit: &Hit, key: ActionKey, dest: &Path) -> Option<OutputManifest> {
        if !self.is_usable() {
            return None;
        }
        let Some(tree) = &hit.tree else {
            // Kept by its manifest alone: built here, which is no fault of the server's.
            self.refuse(key);
            return None;
        };
        match self.try_fetch(hit, tree, key, dest) {
            Ok(manifest) => Some(manifest),
            Err(e) => {
                // A server that serves bytes other than it promised is not asked again this
                // run: what it claims can no longer be taken for granted.
                let _ = std::fs::remove_dir_all(dest);
                self.refuse(key);
                self.give_up(&e);
                None
            }
        }
    }

    fn try_fetch(
        &self,
        hit: &Hit,
        tree: &re::Digest,
        key: ActionKey,
        dest: &Path,
    ) -> Result<OutputManifest, RemoteError> {
        let tree = re::Tree::decode(self.read_small(tree)?.as_slice())
            .map_err(|e| RemoteError::Invalid(format!("the output tree of {key}: {e}")))?;
        let entries = reapi::entries(self.function, &tree)
            .map_err(|e| RemoteError::Invalid(format!("the output tree of {key}: {e}")))?;
        let layout = layout::check(&hit.manifest, &entries)
            .map_err(|e| RemoteError::Invalid(format!("the output tree of {key}: {e}")))?;
        layout::create_root(dest).map_err(transport::io_error("creating a download directory"))?;
        let total = layout::declared_bytes(layout.files.iter().map(|f| f.digest));
        layout::check_room(dest, total)
            .map_err(|e| RemoteError::Invalid(format!("the output tree of {key}: {e}")))?;
        self.download_files(&layout.files, key, dest)?;
        layout::make_links(dest, &layout.links)
            .map_err(transport::io_error("making a downloaded symlink"))?;
        self.adopt(hit, key, dest)
    }

    /// Brings the files of a hit into `dest`: files already in the local blob store are copied;
    /// small ones come in batch calls; the rest stream, several at once.
    fn download_files(
        &self,
        files: &[TreeFile<'_>],
        key: ActionKey,
        dest: &Path,
    ) -> Result<(), RemoteError> {
        use rayon::prelude::*;
        let mut needed = Vec::new();
        for file in files {
            if !self.copy_local(dest, file.path, file.want)? {
                needed.push(file);
            }
        }
        let (small, large): (Vec<_>, Vec<_>) = needed
            .into_iter()
            .partition(|f| f.digest.size_bytes < SMALL_BLOB);
        let groups: Vec<_> = small.chunks(256).collect();
        self.transfers.install(|| {
            groups
                .par_iter()
                .try_for_each(|group| self.download_batch(group, key, dest))
        })?;
        self.transfers.install(|| {
            large.par_iter().try_for_each(|f| {
                self.download((dest, f.path), f.digest, f.want, key, |w| {
                    let bytes = f.digest.size_bytes.max(0) as u64;
                    self.timed(bytes, || {
                        self.transport.read_blob(self.function, f.digest, w)
                    })
                })
            })
        })
    }

    /// Reads a group of small files in one batch call and writes each.
    fn download_batch(
        &self,
        group: &[&TreeFile<'_>],
        key: ActionKey,
        dest: &Path,
    ) -> Result<(), RemoteError> {
        let digests: Vec<re::Digest> = group.iter().map(|f| f.digest.clone()).collect();
        let bytes = digests.iter().map(|d| d.size_bytes.max(0) as u64).sum();
        let blobs: HashMap<String, Vec<u8>> = self
            .timed(bytes, || self.transport.read_blobs(self.function, &digests))?
            .into_iter()
            .map(|(d, data)| (d.hash, data))
            .collect();
        for f in group {
            let data = blobs.get(&f.digest.hash).ok_or_else(|| {
                RemoteError::Invalid(format!(
                    "the server lacks the blob {} that its action cache names",
                    f.digest.hash
                ))
            })?;
            self.download((dest, f.path), f.digest, f.want, key, |w| {
                w.write_all(data)
                    .map_err(transport::io_error("writing a download"))
            })?;
        }
        Ok(())
    }

    /// Ingests the verified files of a hit and stores them locally under `key`, if they make
    /// the manifest the server claimed.
    fn adopt(&self, hit: &Hit, key: ActionKey, dest: &Path) -> Result<OutputManifest, RemoteError> {
        let _publishing = self.cache.publishing();
        let manifest = OutputManifest::ingest(dest, &self.cache.blobs)
            .map_err(|e| RemoteError::Invalid(format!("ingesting the outputs of {key}: {e}")))?;
        if manifest.digest() != hit.manifest.digest() {
            return Err(RemoteError::Invalid(format!(
                "the outputs of {key} do not make the manifest the server claims"
            )));
        }
        self.cache
            .store(key, &manifest)
            .map_err(|e| RemoteError::Unreachable(format!("storing {key} locally: {e}")))?;
        // Where it came from, for `why` and `cache verify`; a lost note loses no data.
        let origin = crate::cache::Origin {
            remote: self.url.clone(),
            signed_by: hit.signed_by.clone(),
        };
        if let Err(e) = self.cache.note_origin(key, &origin) {
            self.warn(&format!("noting where {key} came from: {e}"));
        }
        self.cache.add_hold(key);
        Ok(manifest)
    }

    /// Copies a file whose blob the local cache holds already; whether it did.
    fn copy_local(&self, dest: &Path, path: &str, want: &OutputEntry) -> Result<bool, RemoteError> {
        let local = self.cache.blobs.path(want.digest, want.executable);
        if !crate::digest::Digest::of_file(&local).is_ok_and(|d| d == want.digest) {
            return Ok(false);
        }
        let (mut file, _) = self.create(dest, path)?;
        let mut from =
            std::fs::File::open(&local).map_err(transport::io_error("copying a local blob"))?;
        std::io::copy(&mut from, &mut file).map_err(transport::io_error("copying a local blob"))?;
        Ok(true)
    }

    /// Writes one file of a hit into `dest/path` from `fill` (a stream from the server, or bytes
    /// a batch brought), hashing on the way, and verifies it.
    fn download(
        &self,
        (dest, path): (&Path, &str),
        digest: &re::Digest,
        want: &OutputEntry,
        key: ActionKey,
        fill: impl FnOnce(&mut dyn std::io::Write) -> Result<(), RemoteError>,
    ) -> Result<(), RemoteError> {
        let (at, got) = self.write_bounded((dest, path), digest, &format!(" of {key}"), fill)?;
        self.verified(&at, path, digest, want, key, got)
    }

    /// Writes a new file `dest/path` from `fill`, refusing more bytes than `digest` names and
    /// hashing on the way; gives where it is and its remote and blake3 digests, for the caller
    /// to check. `of` ends the message about a server that sends too much.
    fn write_bounded(
        &self,
        (dest, path): (&Path, &str),
        digest: &re::Digest,
        of: &str,
        fill: impl FnOnce(&mut dyn std::io::Write) -> Result<(), RemoteError>,
    ) -> Result<(PathBuf, (re::Digest, crate::digest::Digest)), RemoteError> {
        let (file, at) = self.create(dest, path)?;
        let limit = u64::try_from(digest.size_bytes).unwrap_or(0);
        let mut writer = Limited::new(
            digest::HashingWriter::new(self.function, std::io::BufWriter::new(file)),
            limit,
        );
        let filled = fill(&mut writer);
        if writer.exceeded() {
            return Err(RemoteError::Invalid(format!(
                "the server sent more than the {limit} bytes of `{path}`{of}"
            )));
        }
        filled?;
        let got = writer
            .into_inner()
            .finish()
            .map_err(transport::io_error("writing a download"))?;
        Ok((at, got))
    }

    /// A new file at `dest/path`, never written through a symlink (see [`layout`]).
    fn create(&self, dest: &Path, path: &str) -> Result<(std::fs::File, PathBuf), RemoteError> {
        layout::create_file(dest, path)
            .map_err(|e| RemoteError::Invalid(format!("writing `{path}` of a remote result: {e}")))
    }

    /// Checks a downloaded file against the tree's digest and the manifest's blake3.
    fn verified(
        &self,
        at: &Path,
        path: &str,
        digest: &re::Digest,
        want: &OutputEntry,
        key: ActionKey,
        (got, blake3): (re::Digest, crate::digest::Digest),
    ) -> Result<(), RemoteError> {
        self.stats
            .down
            .fetch_add(got.size_bytes as u64, Ordering::Relaxed);
        if got != *digest || blake3 != want.digest {
            return Err(RemoteError::Invalid(format!(
                "`{path}` of {key} does not match its digest {}",
                digest::show(digest)
            )));
        }
        if want.executable {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(at, std::fs::Permissions::from_mode(0o755))
                .map_err(transport::io_error("making a download executable"))?;
        }
        self.remote_digests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((want.digest, want.executable), digest.clone());
        self.known_present([digest.hash.clone()]);
        Ok(())
    }

    /// No longer offers `key` this run: its result is built here.
    fn refuse(&self, key: ActionKey) {
        self.bad
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key);
    }

    fn known_present(&self, hashes: impl IntoIterator<Item = String>) {
        self.present
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(hashes);
    }

    /// Which of `wanted` the server lacks, asking only about what this run has not seen there;
    /// in parallel parts (the HTTP protocol asks blob by blob).
    fn missing(&self, wanted: Vec<re::Digest>) -> Result<HashSet<String>, RemoteError> {
        use rayon::prelude::*;
        let unknown: Vec<re::Digest> = {
            let present = self.present.lock().unwrap_or_else(|e| e.into_inner());
            wanted
                .into_iter()
                .filter(|d| !present.contains(&d.hash))
                .collect()
        };
        let parts: Vec<Vec<re::Digest>> = self.uploading.install(|| {
            unknown
                .par_chunks(1_000)
                .map(|part| self.timed(0, || self.transport.find_missing(self.function, part)))
                .collect::<Result<_, _>>()
        })?;
        let missing: HashSet<String> = parts.into_iter().flatten().map(|d| d.hash).collect();
        self.known_present(
            unknown
                .into_iter()
                .map(|d| d.hash)
                .filter(|h| !missing.contains(h)),
        );
        Ok(missing)
    }

    /// Queues the upload of an action that just succeeded here; `finish` waits for the queue.
    pub fn upload(
        self: &std::sync::Arc<Self>,
        kind: ActionKind,
        key: ActionKey,
        manifest: &OutputManifest,
        log: &Path,
    ) {
        if !self.upload || !self.is_usable() {
            return;
        }
        let job = Upload {
            kind,
            key,
            manifest: manifest.clone(),
            log: std::fs::read(log).unwrap_or_default(),
        };
        let mut sender = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
        if sender.is_none() {
            let (tx, rx) = mpsc::channel::<Upload>();
            let me = self.clone();
            let handle = std::thread::Builder::new()
                .name("kbuild-upload".into())
                .spawn(move || {
                    crate::exec::lower_own_priority();
                    for job in rx {
                        if !me.is_usable() {
                            continue;
                        }
                        if let Err(e) = me.try_upload(&job) {
                            me.stats.failed_uploads.fetch_add(1, Ordering::Relaxed);
                            me.warn(&format!("uploading {} {}: {e}", job.kind, job.key));
                            if e.is_servers() {
                                me.give_up(&e);
                            }
                        }
                    }
                })
                .expect("a thread starts");
            *self.uploader.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
            *sender = Some(tx);
        }
        let _ = sender.as_ref().expect("set above").send(job);
    }

    /// Waits for every queued upload.
    pub fn finish(&self) {
        drop(
            self.uploads
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
        if let Some(handle) = self
            .uploader
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = handle.join();
        }
    }

    /// The remote digest of a local blob: its blake3 under BLAKE3, else hashed (once a run).
    fn remote_digest(&self, entry: &OutputEntry) -> Result<re::Digest, RemoteError> {
        if self.function == Function::Blake3 {
            return Ok(re::Digest {
                hash: entry.digest.to_hex(),
                size_bytes: entry.size as i64,
            });
        }
        let memo = (entry.digest, entry.executable);
        if let Some(known) = self
            .remote_digests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&memo)
        {
            return Ok(known.clone());
        }
        let path = self.cache.blobs.path(entry.digest, entry.executable);
        let (digest, _) = digest::of_file(self.function, &path)
            .map_err(transport::io_error("hashing a blob to upload"))?;
        self.remote_digests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(memo, digest.clone());
        Ok(digest)
    }

    fn try_upload(&self, job: &Upload) -> Result<(), RemoteError> {
        use rayon::prelude::*;
        // See `Upload::ManifestOnly`: a patched tree is made again here faster than it is sent.
        let with_files = job.kind.traits().upload == crate::kind::Upload::Files;
        let files: Vec<&OutputEntry> = job
            .manifest
            .entries()
            .iter()
            .filter(|e| with_files && e.symlink.is_none())
            .collect();
        let digests: Vec<re::Digest> = self.uploading.install(|| {
            files
                .par_iter()
                .map(|e| self.remote_digest(e))
                .collect::<Result<_, _>>()
        })?;
        let tree = with_files.then(|| self.tree_blob(&job.manifest, &files, &digests));
        let manifest = serde_json::to_vec(&job.manifest).expect("manifests serialise");
        let manifest = reapi::Blob {
            digest: self.function.of_bytes(&manifest),
            data: manifest,
        };
        let log = reapi::Blob {
            digest: self.function.of_bytes(&job.log),
            data: job.log.clone(),
        };
        let messages = reapi::action(self.function, job.kind, job.key);
        let small: Vec<&reapi::Blob> = [
            tree.as_ref(),
            Some(&manifest),
            Some(&log),
            Some(&messages.action),
            Some(&messages.command),
            Some(&messages.input_root),
        ]
        .into_iter()
        .flatten()
        .collect();
        let mut wanted: Vec<re::Digest> = small.iter().map(|b| b.digest.clone()).collect();
        wanted.extend(digests.iter().cloned());
        wanted.sort_by(|a, b| a.hash.cmp(&b.hash));
        wanted.dedup();
        let missing = self.missing(wanted)?;
        let paths: Vec<PathBuf> = files
            .iter()
            .map(|e| self.cache.blobs.path(e.digest, e.executable))
            .collect();
        let files = digests.iter().zip(paths.iter().map(PathBuf::as_path));
        self.send_missing(&missing, files, &small)?;
        let mut result = reapi::result(&manifest, tree.as_ref(), Some(&log.digest));
        if let Some(signer) = &self.signer {
            let signed = signing::Signed {
                function: self.function,
                action: &messages.action.digest,
                manifest: &manifest.digest,
                tree: tree.as_ref().map(|t| &t.digest),
            };
            signer.sign(&signed, &mut result);
        }
        self.timed(0, || {
            self.transport
                .update_action_result(self.function, &messages.action.digest, &result)
        })
    }

    /// Sends each blob the server lacks once (files, then the small blobs of the result), in
    /// batches on the upload pool; the bytes and blobs this call sent.
    fn send_missing<'a>(
        &self,
        missing: &HashSet<String>,
        files: impl Iterator<Item = (&'a re::Digest, &'a Path)>,
        small: &[&'a reapi::Blob],
    ) -> Result<(u64, u64), RemoteError> {
        let mut uploads: Vec<(re::Digest, Source<'a>)> = Vec::new();
        let mut seen = HashSet::new();
        for (digest, path) in files {
            if missing.contains(&digest.hash) && seen.insert(digest.hash.clone()) {
                uploads.push((digest.clone(), Source::File(path)));
            }
        }
        for blob in small {
            if missing.contains(&blob.digest.hash) && seen.insert(blob.digest.hash.clone()) {
                uploads.push((blob.digest.clone(), Source::Bytes(&blob.data)));
            }
        }
        // What another action of this run is sending is waited for, then sent here only if
        // that send failed.
        let mut sent = (0, 0);
        while !uploads.is_empty() {
            let (mine, theirs) = self
                .inflight
                .claim(uploads.iter().map(|(d, _)| d.hash.clone()));
            let claimed: HashSet<&str> = mine.iter().map(String::as_str).collect();
            let (now, later): (Vec<_>, Vec<_>) = uploads
                .into_iter()
                .partition(|(d, _)| claimed.contains(d.hash.as_str()));
            let done = self.send_claimed(&now);
            self.inflight.release(&mine);
            sent.0 += done?;
            sent.1 += now.len() as u64;
            self.inflight.wait(&theirs);
            let present = self.present.lock().unwrap_or_else(|e| e.into_inner());
            uploads = later
                .into_iter()
                .filter(|(d, _)| !present.contains(&d.hash))
                .collect();
        }
        Ok(sent)
    }

    /// Sends blobs this thread has claimed, in batches on the upload pool; the bytes sent.
    fn send_claimed(&self, uploads: &[(re::Digest, Source<'_>)]) -> Result<u64, RemoteError> {
        use rayon::prelude::*;
        let bytes: u64 = uploads.iter().map(|(d, _)| d.size_bytes as u64).sum();
        let chunks: Vec<&[(re::Digest, Source<'_>)]> = uploads.chunks(64).collect();
        self.uploading.install(|| {
            chunks.par_iter().try_for_each(|part| {
                let bytes = part.iter().map(|(d, _)| d.size_bytes.max(0) as u64).sum();
                self.timed(bytes, || self.transport.write_blobs(self.function, part))
            })
        })?;
        self.stats.up.fetch_add(bytes, Ordering::Relaxed);
        self.known_present(uploads.iter().map(|(d, _)| d.hash.clone()));
        Ok(bytes)
    }

    /// The REAPI `Tree` of a manifest's files, whose remote digests are `digests`.
    fn tree_blob(
        &self,
        manifest: &OutputManifest,
        files: &[&OutputEntry],
        digests: &[re::Digest],
    ) -> reapi::Blob {
        let by_entry: HashMap<(crate::digest::Digest, bool), &re::Digest> = files
            .iter()
            .zip(digests)
            .map(|(e, d)| ((e.digest, e.executable), d))
            .collect();
        let empty = re::Digest::default();
        let tree = reapi::tree(self.function, manifest, |e| {
            by_entry
                .get(&(e.digest, e.executable))
                .map_or_else(|| empty.clone(), |d| (*d).clone())
        });
        reapi::Blob::of(self.function, &tree)
    }
}

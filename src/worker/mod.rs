//! `kbuild worker`: a bot of the Remote Workers API (`google.devtools.remoteworkers.v1test2`,
//! as BuildGrid serves it and buildbox-worker speaks it) that runs any REAPI action, kbuild's
//! or anyone's.
//!
//! The bot keeps one session: it offers its platform (on its first device, where BuildGrid
//! matches), takes up to `--jobs` leases, runs each on a thread of its own ([`lease`]) and
//! reports it completed with its `ActionResult` in the next update. Updates long-poll, so every
//! call has a deadline, and a call in flight is dropped as soon as a lease finishes so the
//! result goes out at once. On SIGTERM or SIGINT the bot says it is terminating (the server
//! assigns nothing new), finishes and reports what it runs, and leaves; a second signal kills
//! the running commands and leaves at once, and the server hands their leases to another bot
//! when this session expires.

pub mod command;
mod container;
mod inputs;
mod lease;
mod outputs;
pub mod proto;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message;
use prost_types::Any;
use tokio::sync::mpsc;

use crate::remote::{Budget, Function, Grpc, Transport};
use proto::bots::bots_client::BotsClient;
use proto::{BotSession, BotStatus, Device, Lease, LeaseState, Property, Worker};

/// A line of the worker's log on stderr, stamped with the UTC date and time to the millisecond:
/// a worker runs for days, and telling how long a lease waited, ran or took to report needs
/// the when.
macro_rules! say {
    ($($arg:tt)*) => {
        eprintln!("kbuild worker: {} {}", $crate::worker::stamp(), format_args!($($arg)*))
    };
}

/// `2023-11-14T22:13:20.123Z` of now.
fn stamp() -> String {
    stamp_at(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default(),
    )
}

/// [`crate::oci::rfc3339`] of `since_epoch`, with its milliseconds.
fn stamp_at(since_epoch: Duration) -> String {
    let seconds = crate::oci::rfc3339(since_epoch.as_secs());
    let whole = seconds.strip_suffix('Z').unwrap_or(&seconds);
    format!("{whole}.{:03}Z", since_epoch.subsec_millis())
}

pub use command::Executor;

/// How long one session call may wait for work: BuildGrid holds an update open until a lease
/// comes or 80% of this passes, and reaps a bot it has not heard from in its keep-alive time.
const POLL: Duration = Duration::from_secs(30);

/// What `kbuild worker` was asked to be.
pub struct Options {
    pub server: String,
    pub instance: String,
    pub jobs: usize,
    pub executor: Executor,
    /// Platform properties offered beyond `OSFamily` and `ISA`.
    pub properties: Vec<Property>,
    /// The worker's blob store and the leases' directories.
    pub dir: PathBuf,
}

/// One lease the bot holds, as it will report it.
struct Held {
    lease: Lease,
    cancel: Arc<AtomicBool>,
}

/// A finished lease: its result, or the status that says why it has none.
type Finished = (
    String,
    Result<
        bazel_remote_apis::build::bazel::remote::execution::v2::ActionResult,
        bazel_remote_apis::google::rpc::Status,
    >,
);

/// The `ISA` value of this machine, as Bazel and Kleaf spell it.
fn isa() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "x86-64",
        "aarch64" => "aarch64",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// The platform the bot offers: `OSFamily`, `ISA`, then what the operator added.
pub fn platform(extra: &[Property]) -> Vec<Property> {
    let mut props = vec![
        Property::new("OSFamily", "Linux"),
        Property::new("ISA", isa()),
    ];
    props.extend(extra.iter().cloned());
    props
}

/// Serves leases until a signal stops it. `stop` counts the signals received.
pub fn serve(options: &Options, stop: Arc<AtomicUsize>) -> Result<(), String> {
    let cas = Grpc::new(
        &options.server,
        &options.instance,
        &[],
        Budget::new(Duration::from_secs(3600)),
    )?;
    let function = cas
        .capabilities()
        .map_err(|e| format!("{}: {e}", options.server))?
        .functions
        .first()
        .copied()
        .unwrap_or(Function::Sha256);
    let store =
        inputs::Store::open(&options.dir).map_err(|e| format!("{}: {e}", options.dir.display()))?;
    let work = options.dir.join("leases");
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let bot_id = format!("{}-{}", host.trim(), std::process::id());
    if options.executor == Executor::Docker {
        container::sweep();
    }
    let containers = container::Containers::new(&bot_id);
    let session = Session {
        options,
        cas: &cas,
        function,
        store: &store,
        work,
        bot_id,
        stop,
        containers: &containers,
        busy: Mutex::new(Vec::new()),
    };
    let mounts: Vec<PathBuf> = (0..options.jobs)
        .map(|slot| lease::slot_dir(&session.work, slot))
        .collect();
    std::thread::scope(|scope| {
        if options.executor == Executor::Docker {
            let offered = (options.properties.iter())
                .filter(|p| p.key == command::CONTAINER_IMAGE)
                .filter_map(|p| command::resolve(&p.value));
            for image in offered {
                let (containers, mounts) = (&containers, &mounts);
                scope.spawn(move || containers.warm(&image, mounts));
            }
        }
        session.run(scope)
    })
}

struct Session<'a> {
    options: &'a Options,
    cas: &'a Grpc,
    function: Function,
    store: &'a inputs::Store,
    work: PathBuf,
    bot_id: String,
    stop: Arc<AtomicUsize>,
    containers: &'a container::Containers,
    /// Which lease slots run a lease: each slot has its directory, and its container per image.
    busy: Mutex<Vec<bool>>,
}

impl<'a> Session<'a> {
    fn worker(&self) -> Worker {
        Worker {
            devices: vec![Device {
                handle: self.bot_id.clone(),
                properties: platform(&self.options.properties),
            }],
            properties: Vec::new(),
            configs: vec![Property::new("capacity", &self.options.jobs.to_string())],
        }
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = self.cas.request(message);
        request.set_timeout(POLL);
        request
    }

    fn run<'s>(&'s self, scope: &'s std::thread::Scope<'s, '_>) -> Result<(), String> {
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Finished>();
        let mut client = BotsClient::new(self.cas.channel())
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20);
        let mut session = self.create(&mut client)?;
        say!(
            "bot {} serving {} (session {})",
            self.bot_id,
            self.options.server,
            session.name
        );
        let mut held: BTreeMap<String, Held> = BTreeMap::new();
        // The creation itself long-polls, and may come back with leases.
        self.take(&session, &mut held, &done_tx, scope);
        let mut failures = 0u32;
        loop {
            while let Ok(done) = done_rx.try_recv() {
                complete(&mut held, done);
            }
            let stopping = self.stop.load(Ordering::Relaxed);
            if stopping >= 2 {
                for h in held.values() {
                    h.cancel.store(true, Ordering::Relaxed);
                }
                return Ok(());
            }
            session.status = if stopping == 1 {
                BotStatus::BotTerminating
            } else {
                BotStatus::Ok
            } as i32;
            session.leases = held.values().map(|h| h.lease.clone()).collect();
            session.worker = Some(self.worker());
            let running = held
                .values()
                .any(|h| h.lease.state == LeaseState::Active as i32);
            let reported = !held
                .values()
                .any(|h| h.lease.state == LeaseState::Completed as i32);
            if stopping == 1 && !running && reported {
                return Ok(());
            }
            let request = proto::UpdateBotSessionRequest {
                name: session.name.clone(),
                bot_session: Some(session.clone()),
                update_mask: None,
            };
            let answer = self.cas.block_on(async {
                tokio::select! {
                    answer = client.update_bot_session(self.request(request)) => Some(answer),
                    Some(done) = done_rx.recv() => {
                        complete(&mut held, done);
                        None
                    }
                    _ = signalled(&self.stop, stopping) => None,
                }
            });
            match answer {
                None => continue,
                Some(Ok(answer)) => {
                    failures = 0;
                    session = answer.into_inner();
                    self.take(&session, &mut held, &done_tx, scope);
                }
                Some(Err(status)) if status.code() == tonic::Code::DeadlineExceeded => {}
                Some(Err(status)) => {
                    failures += 1;
                    if self.lost(&status, &mut held, &mut session, &mut client)? {
                        self.take(&session, &mut held, &done_tx, scope);
                    }
                    std::thread::sleep(backoff(failures));
                }
            }
        }
    }

    /// After an update failed: a server that forgot the session (restarted, or reaped it) gets
    /// a new one, and the leases held now are its to give out again. Whether a new session
    /// was made.
    fn lost(
        &self,
        status: &tonic::Status,
        held: &mut BTreeMap<String, Held>,
        session: &mut BotSession,
        client: &mut BotsClient<tonic::transport::Channel>,
    ) -> Result<bool, String> {
        say!("UpdateBotSession: {} ({})", status.code(), status.message());
        if matches!(
            status.code(),
            tonic::Code::NotFound | tonic::Code::InvalidArgument
        ) {
            for h in held.values() {
                h.cancel.store(true, Ordering::Relaxed);
            }
            held.clear();
            *session = self.create(client)?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Opens the session, trying again with backoff while the server is away.
    fn create(
        &self,
        client: &mut BotsClient<tonic::transport::Channel>,
    ) -> Result<BotSession, String> {
        let mut failures = 0;
        loop {
            let request = proto::CreateBotSessionRequest {
                parent: self.options.instance.clone(),
                bot_session: Some(BotSession {
                    bot_id: self.bot_id.clone(),
                    status: BotStatus::Ok as i32,
                    worker: Some(self.worker()),
                    ..Default::default()
                }),
            };
            match self
                .cas
                .block_on(client.create_bot_session(self.request(request)))
            {
                Ok(session) => return Ok(session.into_inner()),
                Err(status) => {
                    failures += 1;
                    if self.stop.load(Ordering::Relaxed) > 0 {
                        return Err(format!("stopped before a session opened: {status}"));
                    }
                    say!(
                        "CreateBotSession: {} ({}); trying again",
                        status.code(),
                        status.message()
                    );
                    std::thread::sleep(backoff(failures));
                }
            }
        }
    }

    /// Starts the leases the server gave that the bot does not run yet, cancels those it
    /// took back, and forgets the completed ones it acknowledged (no longer listed).
    fn take<'s>(
        &'s self,
        session: &BotSession,
        held: &mut BTreeMap<String, Held>,
        done: &mpsc::UnboundedSender<Finished>,
        scope: &'s std::thread::Scope<'s, '_>,
    ) {
        let listed: BTreeMap<&str, &Lease> =
            session.leases.iter().map(|l| (l.id.as_str(), l)).collect();
        held.retain(|id, h| {
            let keep = listed
                .get(id.as_str())
                .is_some_and(|l| l.state != LeaseState::Cancelled as i32);
            if !keep {
                h.cancel.store(true, Ordering::Relaxed);
                if h.lease.state != LeaseState::Completed as i32 {
                    say!("lease {id}: cancelled by the server, command stopped");
                }
            }
            keep
        });
        for lease in &session.leases {
            let fresh = lease.state == LeaseState::Pending as i32
                || lease.state == LeaseState::Active as i32;
            if !fresh || held.contains_key(&lease.id) {
                continue;
            }
            say!("lease {}: running", lease.id);
            let cancel = Arc::new(AtomicBool::new(false));
            let mut accepted = lease.clone();
            accepted.state = LeaseState::Active as i32;
            held.insert(
                lease.id.clone(),
                Held {
                    lease: accepted,
                    cancel: cancel.clone(),
                },
            );
            let (id, payload, done) = (lease.id.clone(), lease.payload.clone(), done.clone());
            let slot = self.claim();
            scope.spawn(move || {
                let ctx = lease::Context {
                    cas: self.cas,
                    function: self.function,
                    store: self.store,
                    executor: self.options.executor,
                    work: &self.work,
                    bot_id: &self.bot_id,
                    containers: self.containers,
                };
                let result = lease::execute(&ctx, slot, payload.as_ref(), &cancel);
                self.release(slot);
                let _ = done.send((id, result));
            });
        }
    }
}

impl Session<'_> {
    /// The first free lease slot (the server gives at most `--jobs` leases, so slots stay
    /// that many unless it gives more).
    fn claim(&self) -> usize {
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        let slot = busy.iter().position(|b| !b).unwrap_or(busy.len());
        if slot == busy.len() {
            busy.push(true);
        }
        busy[slot] = true;
        slot
    }

    fn release(&self, slot: usize) {
        self.busy.lock().unwrap_or_else(|e| e.into_inner())[slot] = false;
    }
}

/// Marks a held lease completed with its result or its status.
fn complete(held: &mut BTreeMap<String, Held>, (id, result): Finished) {
    let Some(h) = held.get_mut(&id) else {
        return;
    };
    h.lease.state = LeaseState::Completed as i32;
    match result {
        Ok(result) => {
            h.lease.result = Some(Any {
                type_url: lease::RESULT_TYPE.into(),
                value: result.encode_to_vec(),
            });
            say!("lease {id}: exit code {}", result.exit_code);
            h.lease.status = Some(Default::default());
        }
        Err(status) => {
            say!("lease {id}: {}", status.message);
            h.lease.result = None;
            h.lease.status = Some(status);
        }
    }
}

/// Returns once more signals than `seen` have arrived.
async fn signalled(stop: &AtomicUsize, seen: usize) {
    while stop.load(Ordering::Relaxed) <= seen {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// 0.5 s, 1 s, 2 s … up to 30 s between tries at a server that is away.
fn backoff(failures: u32) -> Duration {
    Duration::from_millis(500u64 << failures.min(6).saturating_sub(1)).min(POLL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_carry_the_utc_date_and_time_to_the_millisecond() {
        let at = Duration::from_millis(1_700_000_000_123);
        assert_eq!(stamp_at(at), "2023-11-14T22:13:20.123Z");
        assert_eq!(
            stamp_at(Duration::from_millis(5)),
            "1970-01-01T00:00:00.005Z"
        );
    }
}

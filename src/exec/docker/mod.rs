//! The Docker executor: each command in a throwaway container of the series' builder image,
//! through the Docker API (bollard), on the local daemon or an arch's native builder.
//!
//! The image is named in the manifest but keyed by its content: the identity of every action is
//! the image ID the daemon reports, and that exact ID is what the container runs, so a retagged
//! image can neither slip under a cached key nor change a build halfway through a run.

pub mod builder;
pub mod container;
pub mod endpoint;
pub mod export;
pub mod owner;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

pub use endpoint::Endpoints;

use super::{Cancel, ExecError, Executor, Identity, Invocation, Probe, Toolset};

/// The paths a container sees, at the same paths as on the host.
#[derive(Clone, Debug, Default)]
pub struct Mounts {
    /// The workspace and the cache: sources, patches, configs, dependency outputs.
    pub read_only: Vec<PathBuf>,
    /// Build directories and work in progress.
    pub read_write: Vec<PathBuf>,
}

pub struct Docker {
    endpoints: Endpoints,
    binds: Vec<bollard::models::Mount>,
    user: String,
    runtime: tokio::runtime::Runtime,
    clients: Mutex<HashMap<String, bollard::Docker>>,
    /// Image IDs by endpoint and reference, resolved once per run.
    images: Mutex<HashMap<(String, String), String>>,
    /// This process, as the label on its containers says.
    owner: Option<owner::Owner>,
}

impl Docker {
    pub fn new(endpoints: Endpoints, mounts: &Mounts) -> std::io::Result<Docker> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let ro: Vec<&std::path::Path> = mounts.read_only.iter().map(PathBuf::as_path).collect();
        let rw: Vec<&std::path::Path> = mounts.read_write.iter().map(PathBuf::as_path).collect();
        // SAFETY: getuid and getgid cannot fail and touch no memory.
        let user = unsafe { format!("{}:{}", libc::getuid(), libc::getgid()) };
        Ok(Docker {
            endpoints,
            binds: container::binds(&ro, &rw),
            user,
            runtime,
            clients: Mutex::new(HashMap::new()),
            images: Mutex::new(HashMap::new()),
            owner: owner::Owner::current(),
        })
    }

    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    fn client(&self, endpoint: &str) -> Result<bollard::Docker, ExecError> {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = clients.get(endpoint) {
            return Ok(client.clone());
        }
        let client = self.runtime.block_on(endpoint::connect(endpoint))?;
        // Once per daemon and run: what earlier runs could not clean up themselves.
        if let Some(me) = &self.owner {
            self.runtime.block_on(owner::sweep(&client, me));
        }
        clients.insert(endpoint.to_string(), client.clone());
        Ok(client)
    }

    /// The ID of `image` on `endpoint`, or an error that says how to get the image.
    pub fn image_id(&self, endpoint: &str, image: &str) -> Result<String, ExecError> {
        let key = (endpoint.to_string(), image.to_string());
        if let Some(id) = self
            .images
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(id.clone());
        }
        let client = self.client(endpoint)?;
        let inspected = self.runtime.block_on(client.inspect_image(image));
        let id = match inspected {
            Ok(found) => found.id.unwrap_or_default(),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {
                return Err(ExecError::unavailable(
                    format!(
                        "the builder image `{image}` is not on the Docker daemon at {}",
                        endpoint::describe(endpoint)
                    ),
                    format!(
                        "create it with `kbuild builder create --tag {image}`, load one with \
                         `docker load`, or name another in the manifest's `builder`"
                    ),
                ));
            }
            Err(e) => {
                return Err(ExecError::unavailable(
                    format!("cannot inspect the builder image `{image}`: {e}"),
                    "check the Docker daemon (`docker info`), or build with `--executor host`",
                ));
            }
        };
        self.images
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, id.clone());
        Ok(id)
    }

    fn builder_of<'a>(&self, builder: Option<&'a str>) -> Result<&'a str, ExecError> {
        builder.ok_or_else(|| {
            ExecError::unavailable(
                "the action names no builder image",
                "set `builder` in the manifest's defaults or series",
            )
        })
    }
}

impl Executor for Docker {
    /// The image's content ID: the toolchain inside it is what the image is. The endpoint is
    /// not part of it, as the same image builds the same bytes on any daemon.
    fn identity(&self, set: &Toolset, _probe: &mut dyn Probe) -> Result<Identity, ExecError> {
        let image = self.builder_of(set.builder.as_deref())?;
        let id = self.image_id(self.endpoints.for_arch(set.arch), image)?;
        Ok(Identity::Docker {
            image: image.to_string(),
            id,
        })
    }

    fn run(&self, inv: &Invocation, log: &std::fs::File, cancel: &Cancel) -> Result<(), ExecError> {
        if cancel.is_cancelled() {
            return Err(ExecError::Cancelled);
        }
        let endpoint = self.endpoints.for_arch(inv.arch);
        let image = self.builder_of(inv.builder.as_deref())?;
        let image_id = self.image_id(endpoint, image)?;
        let client = self.client(endpoint)?;
        let owner = self.owner.as_ref().map(owner::Owner::label);
        let spec = container::Spec {
            image_id: &image_id,
            owner: owner.as_deref(),
            binds: &self.binds,
            user: &self.user,
        };
        self.runtime
            .block_on(container::run(&client, inv, &spec, log, cancel))
    }

    fn name(&self) -> &'static str {
        "docker"
    }
}

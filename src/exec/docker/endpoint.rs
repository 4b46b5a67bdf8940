//! Docker endpoints: which daemon builds which arch, and connecting to one.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::arch::Arch;
use crate::exec::ExecError;

/// The daemons a run uses: the local one (`DOCKER_HOST`, else the default socket) and native
/// builders per arch.
#[derive(Clone, Debug, Default)]
pub struct Endpoints {
    pub per_arch: BTreeMap<Arch, String>,
}

/// How an endpoint is named in messages and keys of the client map.
pub const LOCAL: &str = "local";

impl Endpoints {
    /// The endpoints of the manifest's `builders` block, overridden per arch by
    /// `KBUILD_DOCKER_HOST_<ARCH>` (e.g. `KBUILD_DOCKER_HOST_AARCH64=tcp://arm:2375`).
    pub fn from_manifest(declared: &BTreeMap<Arch, String>) -> Endpoints {
        let mut per_arch = declared.clone();
        for arch in Arch::ALL {
            let var = format!(
                "KBUILD_DOCKER_HOST_{}",
                arch.kernel_name().to_ascii_uppercase()
            );
            match std::env::var(&var) {
                Ok(url) if url.is_empty() || url == LOCAL => {
                    per_arch.remove(&arch);
                }
                Ok(url) => {
                    per_arch.insert(arch, url);
                }
                Err(_) => {}
            }
        }
        Endpoints { per_arch }
    }

    /// The endpoint that runs an action for `arch`: its native builder, else the local daemon.
    pub fn for_arch(&self, arch: Option<Arch>) -> &str {
        arch.and_then(|a| self.per_arch.get(&a))
            .map_or(LOCAL, String::as_str)
    }
}

/// The address behind `endpoint`, for messages.
pub fn describe(endpoint: &str) -> String {
    if endpoint == LOCAL {
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
    } else {
        endpoint.to_string()
    }
}

/// Connects and agrees on an API version: Debian's engine speaks 1.41, older than bollard's own.
pub async fn connect(endpoint: &str) -> Result<bollard::Docker, ExecError> {
    let unreachable = |e: &dyn std::fmt::Display| {
        ExecError::unavailable(
            format!(
                "cannot reach the Docker daemon at {}: {e}",
                describe(endpoint)
            ),
            "start the daemon (or point DOCKER_HOST or the manifest's `builders` at one), \
             or build on this machine with `--executor host`",
        )
    };
    let client = if endpoint == LOCAL {
        bollard::Docker::connect_with_defaults()
    } else {
        bollard::Docker::connect_with_host(endpoint)
    }
    .map_err(|e| unreachable(&e))?;
    // A kernel build is one long request (the attach stream); the default two minutes is not.
    let client = client.with_timeout(Duration::from_secs(7 * 24 * 3600));
    let ping = tokio::time::timeout(Duration::from_secs(20), client.ping()).await;
    match ping {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(unreachable(&e)),
        Err(_) => return Err(unreachable(&"no answer within 20 s")),
    }
    client
        .negotiate_version()
        .await
        .map_err(|e| unreachable(&e))
}

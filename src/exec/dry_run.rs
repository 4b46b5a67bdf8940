//! The dry-run executor: records commands and writes their declared outputs without running them.

use std::io::Write;
use std::sync::Mutex;

use super::{Cancel, ExecError, Executor, Identity, Invocation, Probe, Toolset};
use crate::digest::Digest;

#[derive(Debug, Default)]
pub struct DryRun {
    pub commands: Mutex<Vec<String>>,
}

impl Executor for DryRun {
    fn identity(&self, set: &Toolset, _probe: &mut dyn Probe) -> Result<Identity, ExecError> {
        Ok(Identity::DryRun {
            tools: set.tools.clone(),
        })
    }

    fn run(
        &self,
        inv: &Invocation,
        mut log: &std::fs::File,
        cancel: &Cancel,
    ) -> Result<(), ExecError> {
        if cancel.is_cancelled() {
            return Err(ExecError::Cancelled);
        }
        let line = inv.display();
        let _ = writeln!(log, "dry-run: {line}");
        self.commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line.clone());
        // Outputs depend on the command and its environment, as a real build's would.
        let env: Vec<String> = inv.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let content = Digest::of_bytes(format!("{line}\n{}", env.join("\n")).as_bytes()).to_hex();
        for out in &inv.outputs {
            let path = inv.cwd.join(out);
            let write = || -> std::io::Result<()> {
                std::fs::create_dir_all(path.parent().unwrap_or(&inv.cwd))?;
                std::fs::write(&path, &content)
            };
            write().map_err(|source| ExecError::Spawn {
                program: inv.program.clone(),
                source,
            })?;
        }
        Ok(())
    }

    fn name(&self) -> &'static str {
        "dry-run"
    }
}

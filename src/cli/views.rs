//! `--progress`, `--events` and `--profile`: which views of a run the reporter feeds.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use clap::ValueEnum;

use crate::report::{
    Fanout, Reporter, Silent, events::Events, plain::Plain, terminal::Terminal, trace::Trace,
};

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub(crate) enum Progress {
    /// The live status area on a terminal, plain lines otherwise.
    Auto,
    /// The live status area.
    Tty,
    /// A line per finished action and a heartbeat every 30 s for a long one (CI logs).
    Plain,
    /// Nothing but warnings and the summary.
    None,
}

#[derive(clap::Args, Debug, Clone)]
pub(crate) struct Views {
    /// How progress shows on stderr [default: auto; none with --format json].
    #[arg(long, value_enum, env = "KBUILD_PROGRESS")]
    progress: Option<Progress>,
    /// Write one JSON object per line as things happen (doc/events.md); `-` for stdout.
    #[arg(long, value_name = "FILE")]
    events: Option<PathBuf>,
    /// Write the run as a Chrome trace (Perfetto, chrome://tracing): a track per worker.
    #[arg(long, value_name = "FILE")]
    profile: Option<PathBuf>,
}

impl Views {
    /// The reporter of a run whose own report goes to stdout when `json`.
    pub(crate) fn reporter(&self, json: bool) -> miette::Result<Arc<dyn Reporter>> {
        let mut views: Vec<Box<dyn Reporter>> = Vec::new();
        let mode = match self.progress {
            Some(mode) => mode,
            None if json => Progress::None,
            None => Progress::Auto,
        };
        let tty = std::io::stderr().is_terminal()
            && std::env::var("TERM").is_ok_and(|t| !t.is_empty() && t != "dumb");
        match mode {
            Progress::Tty => views.push(Box::new(Terminal::new(color()))),
            Progress::Auto if tty => views.push(Box::new(Terminal::new(color()))),
            Progress::Auto | Progress::Plain => {
                views.push(Box::new(Plain::with_heartbeat(heartbeat()?)))
            }
            Progress::None => views.push(Box::new(Quiet)),
        }
        if let Some(path) = &self.events {
            if json && path.as_os_str() == "-" {
                miette::bail!(
                    help = "write the events to a file, or drop --format json",
                    "--events - and --format json would both write to stdout"
                );
            }
            let events = Events::create(path).map_err(|e| {
                miette::miette!(
                    help = "pass a writable path to --events",
                    "cannot write {}: {e}",
                    path.display()
                )
            })?;
            views.push(Box::new(events));
        }
        if let Some(path) = &self.profile {
            // Fail now, not after a long build.
            std::fs::write(path, b"").map_err(|e| {
                miette::miette!(
                    help = "pass a writable path to --profile",
                    "cannot write {}: {e}",
                    path.display()
                )
            })?;
            views.push(Box::new(Trace::new(path.clone())));
        }
        Ok(match views.len() {
            1 => Arc::from(views.pop().expect("one view")),
            _ => Arc::new(Fanout(views)),
        })
    }
}

/// How often plain output says that a long action still runs: `KBUILD_HEARTBEAT` seconds
/// (for CI systems that kill a job silent for less than the default 30 s).
fn heartbeat() -> miette::Result<std::time::Duration> {
    let Ok(text) = std::env::var("KBUILD_HEARTBEAT") else {
        return Ok(std::time::Duration::from_secs(30));
    };
    match text.parse::<f64>() {
        Ok(s) if s > 0.0 && s.is_finite() => Ok(std::time::Duration::from_secs_f64(s)),
        _ => miette::bail!(
            help = "set it to a number of seconds, e.g. KBUILD_HEARTBEAT=30",
            "KBUILD_HEARTBEAT=`{text}` is no number of seconds"
        ),
    }
}

/// `NO_COLOR` set to anything but the empty string turns colour off (no-color.org).
fn color() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// `--progress none`: no progress, but warnings still reach the user.
struct Quiet;

impl Reporter for Quiet {
    fn event(&self, event: &crate::report::Event) {
        match event {
            crate::report::Event::Message { text } => eprintln!("{text}"),
            _ => Silent.event(event),
        }
    }
}

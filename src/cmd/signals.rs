//! The signals that end a training run cleanly: SIGINT (Ctrl-C), SIGTERM (`kill`, `timeout`,
//! Slurm, systemd) and SIGHUP (a closed terminal or ssh session). Each sets a flag that the
//! training loop checks before every step; the run then saves `latest.json` and the process
//! exits with 128 + the signal's number (130, 143, 129), as if the signal had ended it, so
//! that scripts can tell an interrupted run from a finished one. A second signal while the
//! first is being handled ends the process at once (checkpoints are written atomically, so
//! that loses the save in progress, never a file).

use anyhow::{Context, Result};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signal(i32);

impl Signal {
    pub fn exit_code(self) -> i32 {
        128 + self.0
    }
}

pub struct Signals {
    flag: Arc<AtomicUsize>,
}

impl Signals {
    pub fn install() -> Result<Signals> {
        let flag = Arc::new(AtomicUsize::new(0));
        #[cfg(unix)]
        {
            use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
            use signal_hook::flag as sig;
            let armed = Arc::new(AtomicBool::new(false));
            for s in [SIGINT, SIGTERM, SIGHUP] {
                // Registered first, so it sees `armed` as it was before this signal: set
                // means a second signal, which exits at once.
                sig::register_conditional_shutdown(s, 128 + s, armed.clone())
                    .and_then(|_| sig::register(s, armed.clone()))
                    .and_then(|_| sig::register_usize(s, flag.clone(), s as usize))
                    .context("cannot install signal handlers")?;
            }
            // Writing past a file-size limit (`ulimit -f`) raises SIGXFSZ, which would kill
            // the process mid-save; with a handler the write fails with EFBIG instead, and
            // the run ends with an error like any other failed write.
            sig::register(
                signal_hook::consts::SIGXFSZ,
                Arc::new(AtomicBool::new(false)),
            )
            .context("cannot install signal handlers")?;
        }
        Ok(Signals { flag })
    }

    /// The signal received, if any.
    pub fn received(&self) -> Option<Signal> {
        match self.flag.load(Ordering::SeqCst) {
            0 => None,
            s => Some(Signal(s as i32)),
        }
    }
}

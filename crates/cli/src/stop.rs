//! The signals that stop a command that runs until told to (`serve`, `dev
//! mock-exchange`): SIGTERM, SIGINT and SIGHUP, caught from the moment
//! [`StopSignals::catch`] returns (on Unix) and kept until they are waited for. A second
//! one ends the process as the signal's default action would, for a stop that does not
//! finish.
//!
//! SIGHUP stops as SIGTERM does, draining first: it comes when the ssh session or
//! terminal of a foreground `serve` closes, and operators send it out of habit (to reload,
//! which keygate does not do this way). Its default action killed the gateway with
//! requests in flight: an order already forwarded was left with no outcome event.
//!
//! A command catches them before it says it is ready, so that whoever reads that line and
//! then stops it is heard. tokio's signal streams were set up inside the wait for them,
//! and a SIGTERM that came while one was being set up (its handler installed, nothing yet
//! listening) was dropped: the gateway went on serving until killed.

use std::thread;

use anyhow::Context;
use tokio::sync::oneshot;

/// SIGTERM, SIGINT and SIGHUP, caught since [`StopSignals::catch`].
pub(crate) struct StopSignals {
    /// Sent to by the thread that waits for them, once the first has come.
    came: oneshot::Receiver<()>,
}

impl StopSignals {
    /// Catches SIGTERM, SIGINT and SIGHUP from now on, in place of their default action,
    /// on a thread of its own (on other systems, Ctrl-C once that thread has started).
    pub(crate) fn catch() -> anyhow::Result<StopSignals> {
        let (first, came) = oneshot::channel();
        #[cfg(unix)]
        let waiting = {
            use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
            let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
                .context("catching SIGTERM, SIGINT and SIGHUP")?;
            move || {
                let mut first = Some(first);
                for signal in signals.forever() {
                    match first.take() {
                        Some(first) => {
                            let _ = first.send(());
                        }
                        // A second stop: the stop under way is not waited for.
                        None => {
                            let _ = signal_hook::low_level::emulate_default_handler(signal);
                        }
                    }
                }
            }
        };
        #[cfg(not(unix))]
        let waiting = move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            // Without a handler, nothing is sent and the wait lasts as long as the process.
            if let Ok(runtime) = runtime {
                if runtime.block_on(tokio::signal::ctrl_c()).is_ok() {
                    let _ = first.send(());
                    runtime.block_on(std::future::pending::<()>());
                }
            }
        };
        thread::Builder::new()
            .name("keygate-signals".into())
            .spawn(waiting)
            .context("starting the thread that waits for SIGTERM, SIGINT and SIGHUP")?;
        Ok(StopSignals { came })
    }

    /// Blocks until one of them has come (at once if one came already).
    pub(crate) fn wait(self) {
        if self.came.blocking_recv().is_err() {
            // The thread that waits for them is gone: nothing will come.
            loop {
                thread::park();
            }
        }
    }

    /// Completes once one of them has come.
    pub(crate) async fn waited(self) {
        if self.came.await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

//! The signals that stop a command that runs until told to (`serve`, `dev
//! mock-exchange`): SIGTERM and SIGINT, caught from the moment [`StopSignals::catch`]
//! returns and kept until they are waited for.
//!
//! A command catches them before it says it is ready, so that whoever reads that line and
//! then stops it is heard. tokio's signal streams were set up inside the wait for them,
//! and a SIGTERM that came while one was being set up (its handler installed, nothing yet
//! listening) was dropped: the gateway went on serving until killed.

use anyhow::Context;

/// SIGTERM and SIGINT, caught since [`StopSignals::catch`].
pub(crate) struct StopSignals {
    #[cfg(unix)]
    signals: signal_hook::iterator::Signals,
}

impl StopSignals {
    /// Catches SIGTERM and SIGINT from now on, in place of their default action.
    pub(crate) fn catch() -> anyhow::Result<StopSignals> {
        #[cfg(unix)]
        {
            use signal_hook::consts::{SIGINT, SIGTERM};
            let signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
                .context("catching SIGTERM and SIGINT")?;
            Ok(StopSignals { signals })
        }
        #[cfg(not(unix))]
        Ok(StopSignals {})
    }

    /// Blocks until one of them has come (at once if one came already).
    pub(crate) fn wait(self) {
        #[cfg(unix)]
        {
            let mut signals = self.signals;
            // `forever` ends only if the signals are closed, which nothing here does.
            let _ = signals.forever().next();
        }
        #[cfg(not(unix))]
        {
            let waited = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map(|runtime| runtime.block_on(tokio::signal::ctrl_c()));
            if waited.is_err() {
                std::thread::park();
            }
        }
    }

    /// Completes once one of them has come, waited for on a thread of its own.
    pub(crate) fn waited(self) -> impl std::future::Future<Output = ()> {
        let (came, arrived) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("keygate-signals".into())
            .spawn(move || {
                self.wait();
                let _ = came.send(());
            })
            .map(|_| ())
            .unwrap_or_else(|e| tracing::warn!("cannot wait for SIGTERM or SIGINT: {e}"));
        async move {
            // A sender dropped without sending: no thread waits, so nothing will come.
            if arrived.await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

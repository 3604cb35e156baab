//! Stopping: Ctrl-C and SIGTERM as a cancellation token ([`SignalToken`]) handed to whatever
//! must stop on them (the script runner, the headless lab, a standalone role): the one path
//! from signals to shutdown. [`StopSignals`] is the listening underneath.

use tokio_util::sync::CancellationToken;

/// Ctrl-C (SIGINT) and SIGTERM, listened for from the moment this is made: a signal that
/// arrives before [`StopSignals::recv`] is awaited is not lost (and does not kill the process).
pub struct StopSignals {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    /// Starts listening. Must be called inside the runtime.
    pub fn new() -> StopSignals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            StopSignals {
                interrupt: signal(SignalKind::interrupt()).ok(),
                terminate: signal(SignalKind::terminate()).ok(),
            }
        }
        #[cfg(not(unix))]
        StopSignals {}
    }

    /// Resolves on the next Ctrl-C or SIGTERM.
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        {
            async fn next(signal: Option<&mut tokio::signal::unix::Signal>) {
                match signal {
                    Some(signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            tokio::select! {
                () = next(self.interrupt.as_mut()) => {}
                () = next(self.terminate.as_mut()) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

impl Default for StopSignals {
    fn default() -> Self {
        StopSignals::new()
    }
}

/// A [`CancellationToken`] cancelled on the next Ctrl-C or SIGTERM, listening from the moment
/// this is made. The listener ends when this is dropped; the token stays usable.
pub struct SignalToken {
    token: CancellationToken,
    listener: tokio::task::JoinHandle<()>,
}

impl SignalToken {
    /// Starts listening. Must be called inside the runtime.
    pub fn new() -> SignalToken {
        let token = CancellationToken::new();
        let mut signals = StopSignals::new();
        let cancel = token.clone();
        let listener = tokio::spawn(async move {
            signals.recv().await;
            cancel.cancel();
        });
        SignalToken { token, listener }
    }

    /// The token: cancelled once a signal arrived.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }
}

impl Default for SignalToken {
    fn default() -> Self {
        SignalToken::new()
    }
}

impl Drop for SignalToken {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

//! Process signals, as `knative.dev/pkg/signals` handles them for upstream's
//! binaries (both the queue-proxy and the activator use this): the first
//! SIGTERM or SIGINT starts a graceful shutdown, a second one exits 1 at once.

use std::future::Future;
use tokio::signal::unix::{SignalKind, signal};

/// Completes on the first SIGTERM or SIGINT; a second one exits 1 immediately, as
/// knative.dev/pkg/signals does, for an operator who wants the pod gone now.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        let first = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = first, "received signal, shutting down gracefully");
        tokio::spawn(async move {
            let second = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            tracing::error!(
                signal = second,
                "received second signal, exiting immediately"
            );
            std::process::exit(1);
        });
    })
}

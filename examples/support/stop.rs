//! Stopping an example gracefully, shared by the examples that run until
//! stopped (`tests/hosts/probe.rs` takes it too).

/// Completes on Ctrl-C or SIGTERM (what `kill` and service managers send). A
/// signal that cannot be listened for is logged and ignored rather than
/// taken as a request to stop.
pub(crate) async fn signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => drop(term.recv().await),
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C; stopping"),
        () = term => tracing::info!("SIGTERM; stopping"),
    }
}

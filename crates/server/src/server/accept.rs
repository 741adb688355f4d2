//! The accept loop: a permit before each accept, backoff on errors, the
//! per-address cap, then the connection's own task.

use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, info, warn};

use crate::door::Doors;
use crate::layer::Layer;
use crate::stats::Counters;

use super::listener::Listener;
use super::shared::{NewConnection, Shared};

pub(super) async fn accept_loop(
    mut listener: Listener,
    layer: Layer,
    doors: Option<Arc<Doors>>,
    backoff_max: Duration,
    shared: Arc<Shared>,
) {
    let mut backoff = Duration::from_millis(1);
    info!("accepting connections");
    loop {
        // The permit comes first: at the limit we stop accepting, and the
        // kernel's backlog holds newcomers instead of our memory.
        let permit = tokio::select! {
            permit = shared.permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break, // the semaphore is never closed
            },
            () = shared.shutdown.cancelled() => break,
        };
        let (stream, peer_addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => {
                    backoff = Duration::from_millis(1);
                    accepted
                }
                Err(e) => {
                    warn!(error = %e, ?backoff, "accept failed; backing off");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = shared.shutdown.cancelled() => break,
                    }
                    backoff = (backoff * 2).min(backoff_max);
                    continue;
                }
            },
            () = shared.shutdown.cancelled() => break,
        };
        let address_slot = match &shared.per_address {
            Some(per) => match per.take(peer_addr.ip()) {
                Some(slot) => Some(slot),
                None => {
                    // Accepted and closed at once: the client learns now,
                    // rather than waiting in the backlog.
                    Counters::add(&shared.counters.refused_per_address, 1);
                    debug!(peer = %peer_addr, "too many connections from this address; closed");
                    drop(stream);
                    continue;
                }
            },
            None => None,
        };
        (shared.spawner.0)(
            &shared,
            NewConnection {
                stream,
                layer: layer.clone(),
                peer_addr,
                permit,
                address_slot,
                ready: None,
                doors: doors.clone(),
            },
        );
    }
    info!("stopped accepting");
}

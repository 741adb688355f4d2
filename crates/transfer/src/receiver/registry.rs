//! The transfers running now, as the request handlers and the writers see
//! them, and the failures remembered for late requests.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use enchufe_server::{Connection, ConnectionId};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::{Error, Reason};
use crate::protocol::{Chunk, Control, TransferId};

use super::config::Config;
use super::event::Event;

#[derive(Debug)]
pub(super) struct Inner {
    pub(super) dir: PathBuf,
    pub(super) config: Config,
    pub(super) active: Mutex<HashMap<TransferId, Arc<Active>>>,
    /// Why the last transfers failed, so a chunk or a finish that arrives
    /// just after its transfer ended is told the reason rather than
    /// "unknown transfer". Bounded: [`RECENT`] entries.
    pub(super) failed: Mutex<std::collections::VecDeque<(TransferId, (Reason, String))>>,
    pub(super) events: broadcast::Sender<Event>,
    pub(super) tasks: TaskTracker,
    /// Cancelled by [`Receiver::shutdown`]: every writer's cut is a child.
    pub(super) shutdown: CancellationToken,
}

/// A running transfer, as the request handlers see it.
#[derive(Debug)]
pub(super) struct Active {
    /// The declared size, so a chunk past it is refused by its request.
    pub(super) size: u64,
    pub(super) conn: ConnectionId,
    /// To tell a live duplicate from a connection that is gone but not yet
    /// reported by `on_disconnect`.
    pub(super) conn_handle: Connection,
    pub(super) tx: mpsc::Sender<Cmd>,
    /// Ends the transfer and deletes the partial file.
    pub(super) cancel: CancellationToken,
    /// Ends the transfer and keeps the partial file.
    pub(super) cut: CancellationToken,
    /// Cancelled when the writer has exited (the registry entry is gone).
    pub(super) exited: CancellationToken,
    /// Why the writer ended, for the requests that find it gone.
    pub(super) failure: Mutex<Option<(Reason, String)>>,
}

#[derive(Debug)]
pub(super) enum Cmd {
    Chunk(Chunk),
    Finish {
        hash: String,
        reply: oneshot::Sender<Control>,
    },
}

/// How long a cancel or a duplicate offer waits for a writer to exit.
pub(super) const EXIT_WAIT: Duration = Duration::from_secs(5);

/// Failures remembered for late requests: enough for every transfer that
/// may run at once to have ended several times over, at a few hundred
/// bytes each.
pub(super) const RECENT: usize = 64;
impl Inner {
    /// The transfers running now, whose partial files are not leftovers.
    pub(super) fn running(&self) -> HashSet<TransferId> {
        self.active
            .lock()
            .expect("registry lock")
            .keys()
            .copied()
            .collect()
    }
}

/// The error a writer left behind, for a request that found it gone.
pub(super) fn failure_of(active: &Active) -> Error {
    match active.failure.lock().expect("failure lock").clone() {
        Some((reason, message)) => Error::Refused { reason, message },
        None => Error::Refused {
            reason: Reason::UnknownTransfer,
            message: "the transfer has ended".into(),
        },
    }
}

//! What a connection's driver needs from the client it serves: where
//! unsolicited frames and the connection's end go.

use bytes::BytesMut;
use tokio::sync::{broadcast, mpsc};

use crate::reconnect::EVENTS_QUEUE;
use crate::{Config, Event, Result};

/// What a connection's driver needs from the client it serves.
#[derive(Debug, Clone)]
pub(crate) struct Wiring {
    /// Where unsolicited frames go.
    pub(crate) incoming: mpsc::Sender<Result<BytesMut>>,
    /// Where the connection's end is reported.
    pub(crate) events: broadcast::Sender<Event>,
    /// Whether the error that ends the connection goes to `incoming` too
    /// (`recv` returns it once). A reconnecting client's `recv` goes on
    /// across connections, so its links report their end as events only.
    pub(crate) report_end: bool,
}

impl Wiring {
    /// A client's incoming queue and events, for links that report their
    /// end to `recv` unless the client reconnects.
    pub(crate) fn new(config: &Config) -> (Wiring, mpsc::Receiver<Result<BytesMut>>) {
        // Every client is built through here: its metric series exist from
        // now on, before its first connection.
        #[cfg(feature = "metrics")]
        enchufe_engine::meter::register("client", enchufe_engine::meter::ERROR_KINDS);
        let (incoming, incoming_rx) = mpsc::channel(config.incoming_queue);
        let (events, _) = broadcast::channel(EVENTS_QUEUE);
        let wiring = Wiring {
            incoming,
            events,
            report_end: config.reconnect.is_none(),
        };
        (wiring, incoming_rx)
    }

    /// As [`Wiring::new`] for a client that cannot reconnect.
    pub(crate) fn fixed(config: &Config) -> (Wiring, mpsc::Receiver<Result<BytesMut>>) {
        let (mut wiring, incoming) = Self::new(config);
        wiring.report_end = true;
        (wiring, incoming)
    }
}

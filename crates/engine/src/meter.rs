//! Connection metrics through the [`metrics`] facade (feature `metrics`):
//! what every role (server connections, client links) reports, so that any
//! exporter (Prometheus, StatsD, OpenTelemetry...) reads the same names.
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `enchufe_open_connections` | gauge | `role` | connections open now |
//! | `enchufe_opened_connections_total` | counter | `role` | connections opened (accepted or dialed) |
//! | `enchufe_closed_connections_total` | counter | `role`, `reason` | connections ended, by [`Ended`] reason: `peer_closed`, `closed`, `idle_timeout`, `shutdown`, `error` |
//! | `enchufe_errors_total` | counter | `role`, `kind` | connections ended by an error, by kind (`io`, `frame_too_large`, `not_frames`, `unexpected_eof`, `handler`, `write_stalled`...) |
//! | `enchufe_received_frames_total` | counter | `role` | frames read (a streamed frame counts once), hellos included |
//! | `enchufe_sent_frames_total` | counter | `role` | frames queued for writing, hellos included |
//! | `enchufe_received_bytes_total` | counter | `role` | bytes read from the socket, length prefixes included |
//! | `enchufe_sent_bytes_total` | counter | `role` | bytes written to the socket, length prefixes included |
//! | `enchufe_dropped_pushes_total` | counter | `role` | pushes dropped by the server's slow-consumer policy |
//!
//! Frames and bytes are counted alike at both ends: on a multiplexed
//! connection the hello each end sends is a frame sent, and the other's
//! hello a frame received, so what one end counts as sent the other counts
//! as received (a client's hello exchange happens before its driver starts;
//! [`Meter::received_before`] adds the hello it read).
//!
//! `role` is `server` (a server's connections over TCP, Unix sockets, TLS or
//! WebSocket, and the links it dials: a peer's) or `client` (a `Client`'s
//! connection, so a `MultiClient`'s too; each redial is a connection). UDP
//! is not counted.
//!
//! # Cost
//!
//! Nothing per frame is sent to the recorder. The [`Wire`](enchufe_framing::Wire)
//! counts frames and bytes in plain integer fields (an add per frame
//! written and per read; frames read were already counted for the idle
//! timeout); the [`Driver`](crate::driver::Driver) adds what moved to the
//! counters when it is about to wait, when its timer fires, and when it is
//! dropped: once per batch. The handles are looked up once per connection.
//! Without the feature, none of this is compiled.
//!
//! # Recorder
//!
//! Handles are taken from the recorder installed when the connection
//! opens, and every series is registered at zero ([`register`]) when a
//! server is built or a client dials: install yours (say
//! `metrics_exporter_prometheus::PrometheusBuilder::install`) before that,
//! and `/metrics` lists every series before the first connection.

use metrics::{counter, describe_counter, describe_gauge, gauge, Counter, Gauge, Unit};

use enchufe_framing::Error;

use crate::Ended;

/// The `reason` label of `enchufe_closed_connections_total`: how a
/// connection ended ([`Ended`]).
pub const CLOSE_REASONS: &[&str] = &["peer_closed", "closed", "idle_timeout", "shutdown", "error"];

/// The `kind` labels [`error_kind`] gives a framing error.
pub const ERROR_KINDS: &[&str] = &[
    "io",
    "frame_too_large",
    "too_large_to_send",
    "not_frames",
    "unexpected_eof",
    "decode",
    "encode",
    "bad_hello",
    "version_mismatch",
    "malformed",
    "other",
];

/// Registers every series of `role` with the installed recorder at zero,
/// described (unit and `# HELP`): a server calls it when built and a client
/// before it dials, so an exporter lists every series, and a counter that
/// never moves (`enchufe_errors_total`) reads 0 rather than missing.
/// `own_error_kinds` are the `kind` labels that role's own errors take,
/// beside a framing error's ([`ERROR_KINDS`]). Registering a series that
/// exists changes nothing.
pub fn register(role: &'static str, own_error_kinds: &[&'static str]) {
    describe();
    gauge!("enchufe_open_connections", "role" => role).increment(0.0);
    for name in [
        "enchufe_opened_connections_total",
        "enchufe_received_frames_total",
        "enchufe_sent_frames_total",
        "enchufe_received_bytes_total",
        "enchufe_sent_bytes_total",
    ] {
        counter!(name, "role" => role).increment(0);
    }
    for &reason in CLOSE_REASONS {
        counter!("enchufe_closed_connections_total", "role" => role, "reason" => reason)
            .increment(0);
    }
    for &kind in ERROR_KINDS.iter().chain(own_error_kinds) {
        counter!("enchufe_errors_total", "role" => role, "kind" => kind).increment(0);
    }
    if role == "server" {
        counter!("enchufe_dropped_pushes_total", "role" => role).increment(0);
    }
}

/// Gives the recorder each metric's unit and a line of help (Prometheus's
/// `# HELP`); [`register`] calls it.
pub fn describe() {
    describe_gauge!(
        "enchufe_open_connections",
        Unit::Count,
        "Connections open now."
    );
    describe_counter!(
        "enchufe_opened_connections_total",
        Unit::Count,
        "Connections opened (accepted or dialed)."
    );
    describe_counter!(
        "enchufe_closed_connections_total",
        Unit::Count,
        "Connections ended, by reason."
    );
    describe_counter!(
        "enchufe_errors_total",
        Unit::Count,
        "Connections ended by an error, by kind."
    );
    describe_counter!("enchufe_received_frames_total", Unit::Count, "Frames read.");
    describe_counter!(
        "enchufe_sent_frames_total",
        Unit::Count,
        "Frames queued for writing."
    );
    describe_counter!(
        "enchufe_received_bytes_total",
        Unit::Bytes,
        "Bytes read from sockets, length prefixes included."
    );
    describe_counter!(
        "enchufe_sent_bytes_total",
        Unit::Bytes,
        "Bytes written to sockets, length prefixes included."
    );
    describe_counter!(
        "enchufe_dropped_pushes_total",
        Unit::Count,
        "Pushes dropped by the slow-consumer policy."
    );
}

/// Frames and bytes each way, as counted so far on one connection.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Traffic {
    /// Frames read.
    pub frames_in: u64,
    /// Frames queued for writing.
    pub frames_out: u64,
    /// Bytes read.
    pub bytes_in: u64,
    /// Bytes written.
    pub bytes_out: u64,
}

/// One connection's traffic counters: the handles, and what was reported.
#[derive(Debug)]
pub struct Meter {
    frames_in: Counter,
    frames_out: Counter,
    bytes_in: Counter,
    bytes_out: Counter,
    reported: Traffic,
}

impl Meter {
    /// Counters for one connection of `role` (`"server"`, `"client"`).
    pub fn new(role: &'static str) -> Meter {
        Meter {
            frames_in: counter!("enchufe_received_frames_total", "role" => role),
            frames_out: counter!("enchufe_sent_frames_total", "role" => role),
            bytes_in: counter!("enchufe_received_bytes_total", "role" => role),
            bytes_out: counter!("enchufe_sent_bytes_total", "role" => role),
            reported: Traffic::default(),
        }
    }

    /// Counts `frames` read on the connection before its driver began
    /// counting: a client's hello exchange runs on the wire before the
    /// driver starts, so the server's hello would be missing from
    /// `enchufe_received_frames_total` (its bytes are counted by the wire
    /// already). Once per connection.
    pub fn received_before(&self, frames: u64) {
        self.frames_in.increment(frames);
    }

    /// Adds what moved since the last report (`now` is cumulative).
    pub fn report(&mut self, now: Traffic) {
        let last = std::mem::replace(&mut self.reported, now);
        add(&self.frames_in, now.frames_in, last.frames_in);
        add(&self.frames_out, now.frames_out, last.frames_out);
        add(&self.bytes_in, now.bytes_in, last.bytes_in);
        add(&self.bytes_out, now.bytes_out, last.bytes_out);
    }
}

fn add(counter: &Counter, now: u64, last: u64) {
    if now > last {
        counter.increment(now - last);
    }
}

/// One open connection in the gauge `enchufe_open_connections`, counted
/// as opened when made; [`Open::close`] counts how it ended. The gauge
/// goes down when this is dropped, however the connection ended.
#[derive(Debug)]
pub struct Open {
    role: &'static str,
    gauge: Gauge,
}

impl Open {
    /// A connection of `role` opened.
    pub fn new(role: &'static str) -> Open {
        counter!("enchufe_opened_connections_total", "role" => role).increment(1);
        let gauge = gauge!("enchufe_open_connections", "role" => role);
        gauge.increment(1.0);
        Open { role, gauge }
    }

    /// The connection ended `how`; an error is also counted by its
    /// `kind` (a short snake_case name, see [`error_kind`]).
    pub fn close<E>(self, how: &Ended<E>, kind: impl FnOnce(&E) -> &'static str) {
        let reason = match how {
            Ended::PeerClosed => "peer_closed",
            Ended::Closed => "closed",
            Ended::IdleTimeout => "idle_timeout",
            Ended::Shutdown => "shutdown",
            Ended::Error(_) => "error",
        };
        let role = self.role;
        counter!("enchufe_closed_connections_total", "role" => role, "reason" => reason)
            .increment(1);
        if let Ended::Error(e) = how {
            counter!("enchufe_errors_total", "role" => role, "kind" => kind(e)).increment(1);
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.gauge.decrement(1.0);
    }
}

/// The `kind` label of a framing error.
pub fn error_kind(error: &Error) -> &'static str {
    match error {
        Error::Io(_) => "io",
        Error::FrameTooLarge { .. } => "frame_too_large",
        Error::TooLargeToSend { .. } => "too_large_to_send",
        Error::NotFrames { .. } => "not_frames",
        Error::UnexpectedEof { .. } => "unexpected_eof",
        Error::Decode(_) => "decode",
        Error::Encode(_) => "encode",
        Error::BadHello => "bad_hello",
        Error::VersionMismatch { .. } => "version_mismatch",
        Error::Malformed(_) => "malformed",
        _ => "other",
    }
}

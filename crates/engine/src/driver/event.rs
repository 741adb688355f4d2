//! What the driver reports to the role's loop.

use bytes::BytesMut;

use crate::role::Failure;

/// What needs the role's loop: the driver's one event, for every role.
/// What the driver cannot go on with reaches the role's
/// [`on_failure`](crate::role::Role::on_failure) first and comes out as [`Event::End`]
/// with the role's reason (`E`, [`Role::End`](crate::role::Role::End)).
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<E = Failure> {
    /// A complete frame arrived.
    Frame(BytesMut),
    /// The other end closed its writing side between frames.
    Eof,
    /// A streamed frame of this many body bytes began (a wire with
    /// [`Config::max_stream_length`](enchufe_framing::Config::max_stream_length) on):
    /// take its body with [`Driver::poll_chunk`](super::Driver::poll_chunk) before reading again.
    Stream(u64),
    /// Frames wait in the role's queue and its [`Role::on_queued`](crate::role::Role::on_queued) left
    /// them to its loop: take them with [`Driver::take_queued`](super::Driver::take_queued) and
    /// [`Driver::write`](super::Driver::write).
    Queued,
    /// These role bits of the signal were raised (each reported once), or
    /// (`0`) the role's state changed: look at it.
    Signal(u8),
    /// The role's own deadline ([`Driver::set_deadline`](super::Driver::set_deadline)) passed.
    Deadline,
    /// The connection (or its output) cannot go on: why, in the role's
    /// words.
    End(E),
}

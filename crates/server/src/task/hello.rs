//! Telling the profile of an accepted connection and exchanging hellos.

use bytes::BytesMut;
use enchufe_framing::mux::{self, Hello};
use enchufe_framing::OutFrame;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::debug;

use crate::role::{Driver, Event, Serving};
use crate::{Connection, Disconnect, Handler, PeerLinks};

use super::shared::{closed, not_streamed, Ctx};

/// What a connection's first frame said ([`Profile::Auto`]).
pub(super) enum Detected {
    /// A multiplexed hello (this frame).
    Hello(BytesMut),
    /// A plain client: its first event (a frame that is not a hello, the
    /// start of a streamed one), or nothing yet: it said nothing within
    /// [`Config::detect_timeout`] (it waits for a greeting, say).
    Plain(Option<Event>),
}

/// [`Profile::Auto`]: waits for the first frame, at most
/// [`Config::detect_timeout`], and tells the profile from it (see
/// [`mux::is_hello`]). Only the first frame is looked at; the loops that
/// follow pay nothing.
pub(super) async fn detect<H: Handler, Io: AsyncRead + AsyncWrite + Unpin>(
    ctx: &Ctx<H>,
    conn: &Connection,
    driver: &mut Driver<'_, Io>,
) -> Result<Detected, Disconnect> {
    let first = async {
        loop {
            match driver.event(true).await {
                Event::Frame(frame) if mux::is_hello(&frame) => return Ok(Detected::Hello(frame)),
                Event::Frame(frame) => {
                    driver.hello_done();
                    return Ok(Detected::Plain(Some(Event::Frame(frame))));
                }
                // Only a plain frame can be over the frame limit.
                Event::Stream(len) => return Ok(Detected::Plain(Some(Event::Stream(len)))),
                Event::Eof => return Err(Disconnect::PeerClosed),
                Event::End(reason) => return Err(reason),
                _ if driver.role().stopping => return Err(Disconnect::Shutdown),
                _ if driver.role().closing => return Err(closed(conn)),
                _ => {}
            }
        }
    };
    // `event` keeps its state in the driver, so giving up on it at the
    // window's end loses nothing: the frame still on its way is read next.
    match ctx.config.detect_timeout {
        Some(window) => tokio::time::timeout(window, first)
            .await
            .unwrap_or(Ok(Detected::Plain(None))),
        None => first.await,
    }
}

/// The plain profile's first event, with its first frame checked: a
/// multiplexed hello there is a client of the other profile, closed at once
/// (with [`Mismatch::GotHello`](mux::Mismatch::GotHello)) so that it learns
/// at connect, before any message of it is taken for a request.
pub(super) async fn first_plain_event<Io: AsyncRead + AsyncWrite + Unpin>(
    driver: &mut Driver<'_, Io>,
) -> Event {
    loop {
        match driver.event(true).await {
            Event::Frame(frame) if mux::is_hello(&frame) => {
                let mismatch = enchufe_framing::Error::ProfileMismatch(mux::Mismatch::GotHello);
                return Event::End(Disconnect::Error(mismatch.into()));
            }
            Event::Signal(_) if !(driver.role().closing || driver.role().stopping) => {}
            event => return event,
        }
    }
}

/// Sends our hello (first, before any push) and reads theirs (or takes
/// `theirs`, already read to tell the profile), within the handshake
/// timeout. Our hello answers theirs on a connection we accepted
/// ([`mux::FLAG_ACCEPTOR`]); on one we dialed, theirs must not be ours sent
/// back.
pub(super) async fn handshake<H: Handler, Io: AsyncRead + AsyncWrite + Unpin>(
    ctx: &Ctx<H>,
    conn: &Connection,
    driver: &mut Driver<'_, Io>,
    mut theirs: Option<BytesMut>,
) -> Result<(), Disconnect> {
    let hello = if ctx.config.peer.is_some() {
        Hello::peer(ctx.config.node_id.clone())
    } else {
        Hello::new(ctx.config.node_id.clone())
    };
    let dialed = conn.is_outbound();
    let hello = if dialed { hello } else { hello.answering() };
    let hello = hello.encode().map_err(|e| Disconnect::Error(e.into()))?;
    // Written even before a hello of another version is refused, so that
    // its sender learns ours.
    driver
        .send(&OutFrame::plain(hello.clone()))
        .map_err(Disconnect::Error)?;
    loop {
        let event = match theirs.take() {
            Some(frame) => Event::Frame(frame),
            None => driver.event(true).await,
        };
        match event {
            Event::Frame(frame) => {
                let mismatch = |how| {
                    let e = enchufe_framing::Error::ProfileMismatch(how);
                    Disconnect::Error(e.into())
                };
                if dialed && frame[..] == hello[..] {
                    return Err(mismatch(mux::Mismatch::Echoed));
                }
                if dialed && !mux::is_hello(&frame) {
                    return Err(mismatch(mux::Mismatch::NotAHello));
                }
                let hello = Hello::decode(&frame).map_err(|e| Disconnect::Error(e.into()))?;
                debug!(node = %hello.node_id, peer = hello.peer, "hello");
                let config = &ctx.config;
                let timeout = config
                    .peer
                    .as_ref()
                    .map_or(PeerLinks::default().request_timeout, |p| p.request_timeout);
                conn.set_remote(hello, config.max_in_flight, timeout);
                driver.hello_done();
                if conn.is_peer() {
                    driver.start_keepalive();
                }
                return Ok(());
            }
            // Closed at our hello: what a server pinned to the plain
            // profile does with it.
            Event::Eof if dialed => {
                let e = enchufe_framing::Error::ProfileMismatch(mux::Mismatch::ClosedOnHello);
                return Err(Disconnect::Error(e.into()));
            }
            Event::Eof => return Err(Disconnect::PeerClosed),
            Event::Stream(_) => return Err(not_streamed()),
            Event::End(reason) => return Err(reason),
            _ if driver.role().stopping => return Err(Disconnect::Shutdown),
            _ if driver.role().closing => return Err(closed(conn)),
            _ => {}
        }
    }
}

//! One connection's task: its layer (TLS, WebSocket), its door, then the
//! serving loop, registered with the server while it lives.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::FutureExt;
use tokio::sync::oneshot;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::connection::Parts;
use crate::door::Route;
use crate::layer::Layered;
use crate::outbox::flag;
use crate::stats::Counters;
use crate::task::{serve, Ctx};
use crate::{Connection, ConnectionId, Disconnect, Error, Handler, PeerLinks, Profile, Result};

use super::listener::{Stream, UNIX_ADDR};
use super::shared::{NewConnection, Shared, Spawner};

impl Spawner {
    pub(super) fn new<H: Handler>(ctx: Arc<Ctx<H>>) -> Spawner {
        Spawner(Box::new(move |shared, new| {
            let id = ConnectionId(shared.next_id.fetch_add(1, Ordering::Relaxed));
            let outbound = new.ready.is_some();
            if !outbound {
                Counters::add(&shared.counters.connections_accepted, 1);
            }
            let span = info_span!("conn", id = id.0, peer = %new.peer_addr, outbound);
            let ctx = ctx.clone();
            let shared_for_task = shared.clone();
            shared.tracker.spawn(
                async move {
                    let NewConnection {
                        stream,
                        layer,
                        peer_addr,
                        permit,
                        address_slot,
                        ready,
                        doors,
                    } = new;
                    let shared = &*shared_for_task;
                    match stream {
                        Stream::Tcp(stream) => {
                            // Small request/reply frames must not wait for
                            // Nagle; batching is ours.
                            if let Err(e) = stream.set_nodelay(true) {
                                warn!(error = %e, "cannot set TCP_NODELAY");
                            }
                            let local_addr = stream.local_addr().unwrap_or(shared.local_addr);
                            let cx = shared.layer_cx(&ctx);
                            let layer = layer.sniff(&stream, cx.detect).await;
                            let layered = match layer.handshake(stream, cx).await {
                                Layered::Plain(stream) => match &doors {
                                    // Boxed, as every door's routing: its
                                    // future is large and over once routed.
                                    Some(doors) => match Box::pin(
                                        shared.routing(&ctx, doors, peer_addr).tcp(stream),
                                    )
                                    .await
                                    {
                                        Route::Frames(stream) => Layered::Plain(stream),
                                        Route::FramesBoxed(io) => Layered::Boxed(io),
                                        Route::Gone => Layered::Gone,
                                    },
                                    None => Layered::Plain(stream),
                                },
                                Layered::Boxed(io) => match &doors {
                                    Some(doors) => {
                                        route_boxed(io, doors, peer_addr, &ctx, shared).await
                                    }
                                    None => Layered::Boxed(io),
                                },
                                Layered::Gone => Layered::Gone,
                            };
                            serve_layered(layered, peer_addr, local_addr, id, ready, &ctx, shared)
                                .await;
                        }
                        #[cfg(unix)]
                        Stream::Unix(stream) => {
                            let cx = shared.layer_cx(&ctx);
                            let layered = match (layer.handshake(stream, cx).await, &doors) {
                                // A Unix socket cannot be peeked: routed boxed,
                                // its first byte read and given back.
                                (Layered::Plain(stream), Some(doors)) => {
                                    let io: crate::layer::BoxIo = Box::pin(stream);
                                    route_boxed(io, doors, peer_addr, &ctx, shared).await
                                }
                                (Layered::Boxed(io), Some(doors)) => {
                                    route_boxed(io, doors, peer_addr, &ctx, shared).await
                                }
                                (layered, _) => layered,
                            };
                            serve_layered(layered, peer_addr, UNIX_ADDR, id, ready, &ctx, shared)
                                .await;
                        }
                        Stream::Boxed(io) => {
                            let layered = layer.handshake(io, shared.layer_cx(&ctx)).await;
                            let local_addr = shared.local_addr;
                            serve_layered(layered, peer_addr, local_addr, id, ready, &ctx, shared)
                                .await;
                        }
                    }
                    drop((permit, address_slot));
                }
                .instrument(span),
            );
        }))
    }
}
/// Routes a boxed stream (TLS, a Unix socket) through the front door:
/// frames come back to be served, a door serves the rest. Boxed, as the
/// routing's future is large and over once routed.
async fn route_boxed<H: Handler, S>(
    io: crate::layer::BoxIo,
    doors: &crate::door::Doors,
    peer_addr: SocketAddr,
    ctx: &Ctx<H>,
    shared: &Shared,
) -> Layered<S> {
    match Box::pin(shared.routing(ctx, doors, peer_addr).boxed(io)).await {
        Route::Frames(io) | Route::FramesBoxed(io) => Layered::Boxed(io),
        Route::Gone => Layered::Gone,
    }
}

/// Serves as frames what the layers and the doors left: the stream as
/// accepted (`Plain`: not boxed, the fast path) or wrapped (TLS, a door's
/// rewound bytes), or nothing (`Gone`).
async fn serve_layered<H: Handler, S>(
    layered: Layered<S>,
    peer_addr: SocketAddr,
    local_addr: SocketAddr,
    id: ConnectionId,
    ready: Option<oneshot::Sender<Result<Connection>>>,
    ctx: &Ctx<H>,
    shared: &Shared,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + crate::role::Socket,
{
    match layered {
        Layered::Plain(stream) => {
            serve_connection(stream, peer_addr, local_addr, id, ready, ctx, shared).await;
        }
        Layered::Boxed(io) => {
            serve_connection(io, peer_addr, local_addr, id, ready, ctx, shared).await;
        }
        Layered::Gone => {}
    }
}

async fn serve_connection<H: Handler, Io>(
    io: Io,
    peer_addr: SocketAddr,
    local_addr: SocketAddr,
    id: ConnectionId,
    mut ready: Option<oneshot::Sender<Result<Connection>>>,
    ctx: &Ctx<H>,
    shared: &Shared,
) where
    Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + crate::role::Socket,
{
    let config = &ctx.config;
    let conn = Connection::new(Parts {
        id,
        peer_addr,
        local_addr,
        max_frame_length: config.max_frame_length,
        write_timeout: config.write_timeout,
        queue: config.outbound_queue,
        queue_bytes: config.max_queued_bytes,
        budget: shared.budget.clone(),
        // What this end dials speaks multiplexed: only an accepted
        // connection can wait for the other end's first frame.
        profile: match config.profile {
            Profile::Auto if ready.is_some() => Profile::Multiplexed,
            profile => profile,
        },
        policy: config.slow_consumer,
        counters: shared.counters.clone(),
        local_peer: config.peer.is_some(),
        outbound: ready.is_some(),
        server: shared.me.clone(),
        max_in_flight: config.max_in_flight,
        request_timeout: config
            .peer
            .as_ref()
            .map_or(PeerLinks::default().request_timeout, |p| p.request_timeout),
    });
    // Debug, not info: a line per accepted connection lets whoever can
    // connect write the log (20,000 bad connections were 20,000 lines) and
    // costs the accept path under a flood (RELIABILITY.md). The end of a
    // connection is still logged: at info when it ends normally, thinned
    // when it ends for bad input.
    debug!(outbound = ready.is_some(), "connected");
    {
        let mut registry = shared.registry();
        registry.insert(id, conn.clone());
        // Shutdown may have begun before this connection was registered.
        if shared.shutdown.is_cancelled() {
            conn.signal().raise(flag::SHUTDOWN);
        }
        if shared.abort.is_cancelled() {
            conn.signal().raise(flag::ABORT);
        }
    }
    #[cfg(feature = "metrics")]
    let open = enchufe_engine::meter::Open::new("server");
    let (reason, silent) = serve(ctx, &conn, io, &mut ready).await;
    #[cfg(feature = "metrics")]
    open.close(&reason, crate::stats::error_kind);
    // Out of the registry as soon as it is over, so that a client that has
    // seen its connection end never still counts.
    shared.registry().remove(&id);
    conn.close();
    conn.end_requests();
    conn.outbox().clear();
    if let Some(ready) = ready {
        // The dialer is still waiting: the hello exchange never completed.
        let _ = ready.send(Err(match reason {
            Disconnect::Error(e) => e,
            Disconnect::IdleTimeout => Error::HandshakeTimeout(config.handshake_timeout),
            Disconnect::PeerClosed => Error::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed by the other end during the hello",
            )),
            _ => Error::Closed,
        }));
        return;
    }
    match &reason {
        Disconnect::Error(e) => {
            if e.is_not_frames() {
                Counters::add(&shared.counters.not_frames, 1);
            }
            if e.is_profile_mismatch() {
                Counters::add(&shared.counters.profile_mismatches, 1);
            }
            if e.is_bad_input() {
                // Counted, and warned about at the 1st, 2nd, 4th, 8th...:
                // 20,000 bad connections write 15 warnings, not 20,000.
                // A reset or a cut is no malformed byte: say which it was.
                let what = if e.is_closed() {
                    "closed: reset or cut by the client"
                } else {
                    "closed: bad input"
                };
                crate::layer::rare_warn(&shared.counters.closed_for_bad_input, e, what);
            } else {
                warn!(error = %e, "closed");
            }
        }
        // Closed without a byte: counted, and logged as rarely as bad
        // input, since whoever can connect can make any number of them
        // (20,000 were 20,000 lines, 3.5 MB of log).
        Disconnect::PeerClosed if silent => {
            let (n, loud) = crate::layer::rarely(&shared.counters.empty_connections);
            if loud {
                info!(count = n, "closed before sending anything");
            } else {
                debug!(count = n, "closed before sending anything");
            }
        }
        other => info!(reason = %other, "closed"),
    }
    if AssertUnwindSafe(ctx.handler.on_disconnect(&conn, &reason))
        .catch_unwind()
        .await
        .is_err()
    {
        warn!("on_disconnect panicked");
    }
}

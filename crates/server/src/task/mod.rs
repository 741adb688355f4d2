//! The server's side of one connection, on the engine's driver with the
//! server's role ([`Driver`]): the hello, then the plain or the multiplexed
//! loop. Handlers run on the connection's own
//! task (no spawn per request), and the task that read a request writes its
//! reply.
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | `serve`: one connection from hello to goodbye |
//! | `hello.rs` | telling the profile (`Auto`), the first plain frame's check, the hello exchange |
//! | `plain.rs` | the plain loop: one request at a time |
//! | `multiplexed.rs` | the multiplexed loop: handlers concurrently, ids, cancels, shutdown answers |
//! | `beside.rs` | work run beside the driver: a handler, a hook, a deadline |
//! | `shared.rs` | what the loops share: the server's context, a handler's call settled into a reply or an end |

mod beside;
mod hello;
mod multiplexed;
mod plain;
mod shared;

use std::panic::AssertUnwindSafe;

use enchufe_engine::driver::Deadlines;
use enchufe_framing::mux::Profile;
use enchufe_framing::Wire;
use futures::FutureExt;
use tokio::io::{AsyncRead, AsyncWrite};

use beside::run_beside;
use hello::{detect, first_plain_event, handshake, Detected};
use multiplexed::multiplexed;
use plain::plain;
use shared::panic_message;
pub(crate) use shared::Ctx;

use crate::role::{Driver, Serving};
use crate::{Connection, Disconnect, Error, Handler};

/// Serves one connection until it ends: hello (multiplexed), `on_connect`,
/// the profile's loop, then the goodbye (queued frames flushed and the
/// writing side shut down, within the write timeout). `ready` is answered
/// once the connection is up (dialed connections wait on it). Returns why
/// it ended, and whether the other end never completed a frame (`true`
/// with [`Disconnect::PeerClosed`]: it closed without sending a byte).
pub(crate) async fn serve<H: Handler, Io>(
    ctx: &Ctx<H>,
    conn: &Connection,
    io: Io,
    ready: &mut Option<tokio::sync::oneshot::Sender<crate::Result<Connection>>>,
) -> (Disconnect, bool)
where
    Io: AsyncRead + AsyncWrite + Unpin + crate::role::Socket,
{
    let config = &ctx.config;
    let mux = conn.profile() == Some(Profile::Multiplexed);
    // The wire in a scope of its own: moved into the driver, it would
    // otherwise keep a slot of its own in this future for the connection's
    // whole life.
    let wire = || {
        let mut wire = Wire::new(io, &ctx.framing);
        wire.set_memory_budget(Some(ctx.memory.clone()));
        wire
    };
    let mut driver = crate::role::driver(
        wire(),
        conn,
        config.max_queued_bytes,
        Deadlines {
            idle: config.idle_timeout,
            keepalive: config.peer.as_ref().and_then(|p| p.keepalive),
            write_timeout: Some(config.write_timeout),
            // The multiplexed hello is the first frame; in the plain profile
            // the first request is (`hello_done` once it is read), and under
            // `Auto` whichever comes.
            hello: if mux {
                Some(config.handshake_timeout)
            } else {
                config.first_frame_timeout
            },
            frame: config.frame_timeout,
        },
        config.eof_keepalive,
    );
    let reason = run(ctx, conn, &mut driver, ready).await;
    if !driver.role().aborted {
        // A failure is not a goodbye: the client is told so with a reset
        // (which errors do is `Error::ends_with_reset`).
        let failed = matches!(&reason, Disconnect::Error(e) if e.ends_with_reset());
        crate::role::finish(&mut driver, failed).await;
    }
    (reason, driver.frames_read() == 0)
}

async fn run<H: Handler, Io: AsyncRead + AsyncWrite + Unpin>(
    ctx: &Ctx<H>,
    conn: &Connection,
    driver: &mut Driver<'_, Io>,
    ready: &mut Option<tokio::sync::oneshot::Sender<crate::Result<Connection>>>,
) -> Disconnect {
    // What was read to tell the profile (`Auto`): the plain loop's first event.
    let mut first = None;
    match conn.profile() {
        Some(Profile::Multiplexed) => {
            if let Err(reason) = handshake(ctx, conn, driver, None).await {
                return reason;
            }
        }
        Some(_) => {}
        None => match detect(ctx, conn, driver).await {
            Ok(Detected::Hello(hello)) => {
                conn.set_profile(Profile::Multiplexed);
                driver.no_streams();
                if let Err(reason) = handshake(ctx, conn, driver, Some(hello)).await {
                    return reason;
                }
            }
            Ok(Detected::Plain(event)) => {
                conn.set_profile(Profile::Plain);
                first = event;
            }
            Err(reason) => return reason,
        },
    }
    let greeting = AssertUnwindSafe(ctx.handler.on_connect(conn)).catch_unwind();
    match run_beside::<false, _, _>(driver, greeting, None).await {
        Ok(Ok(())) => {}
        Ok(Err(panic)) => return Disconnect::Error(Error::HandlerPanic(panic_message(&*panic))),
        Err(end) => return end,
    }
    driver.fill();
    if let Some(ready) = ready.take() {
        let _ = ready.send(Ok(conn.clone()));
    }
    match conn.profile() {
        Some(Profile::Multiplexed) => multiplexed(ctx, conn, driver).await,
        _ => {
            let first = match first {
                Some(event) => event,
                None => first_plain_event(driver).await,
            };
            plain(ctx, conn, driver, Some(first)).await
        }
    }
}

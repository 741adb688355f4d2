//! enchufe's TCP client.
//!
//! A [`Client`] is a cheap, cloneable handle to one framed connection (TCP,
//! or a Unix socket with [`Client::connect_unix`]). Behind it runs one task,
//! the connection's driver: it writes queued frames in batches (flushing
//! once no further reply is buffered) and routes each arriving frame either
//! to the request waiting for it or, when none is, to the
//! unsolicited-message queue read by [`Client::recv`] and
//! [`Client::pushes`] (the course client's listening thread). Request
//! deadlines are kept by the driver in one timer. To pipeline many
//! requests from one task, [`Client::pipeline`] returns their replies in
//! order as a stream, with no task wakeup and no channel per reply.
//!
//! ```text
//!  send / request --> [bounded queue] --Signal--> driver --> socket
//!                 reply slots (FIFO, or by id)      |
//!  request <----------------------------------------+<--- socket
//!  recv    <-- [bounded queue] <--+ (unsolicited: no request waiting / push)
//! ```
//!
//! # Two profiles
//!
//! [`Config::profile`] picks what goes inside each frame (`docs/PROTOCOL.md`
//! has the byte diagrams):
//!
//! ```text
//! Plain:                 [len u32 BE][ message ... ]
//!   replies pair with requests by order; a push looks like a reply
//!
//! Multiplexed (default): [len][ 'E' 'N' 'C' 'H' | 1 | flags | id len | node id ]  hello, each way
//!                        [len][ kind | request id u64 BE | message ... ]           every frame after
//!   kind: 1 request, 2 response, 3 error, 4 notify, 5 push, 6 cancel
//! ```
//!
//! The multiplexed profile, the default, talks to enchufe servers (their
//! default profile, `Auto`, answers both): many requests in flight from many
//! tasks with replies matched by id, pushes kept apart from replies, server
//! errors as [`Error::Remote`], and requests the caller gives up on cancelled
//! on the server. The plain profile is the course's protocol and talks to
//! any server of it (the course's Python `Server`); its limits are spelled
//! out [below](#the-plain-profiles-promise). A server of the other profile is
//! a profile mismatch ([`Error::is_profile_mismatch`]), at connect or at the first reply, never a
//! message taken for another.
//!
//! # The plain profile's promise
//!
//! On the plain wire (the course's protocol) a frame carries no id and no
//! kind. So `request` takes **the next frame that arrives after the earlier
//! requests got theirs** as its reply. This is exact when the server answers
//! every request exactly once, in order, and pushes nothing while requests
//! are outstanding, which is how enchufe's plain server and the course's
//! `Server` behave for request/reply protocols. A server that pushes while a
//! request is outstanding, or answers some requests with nothing, shifts the
//! pairing; such protocols should use `send` + `recv` and match replies
//! themselves (or the multiplexed profile, which tags every frame).
//!
//!
//! # The multiplexed profile in detail
//!
//! With [`Profile::Multiplexed`] (the default) every frame carries a kind
//! and a request id (`docs/PROTOCOL.md`), and the client uses them:
//!
//! - Connecting exchanges hellos before the client is returned, within
//!   [`Config::connect_timeout`]: a framing `VersionMismatch` says the
//!   server speaks another version, and a server of the plain profile (it
//!   answers the hello with a message, sends it back, closes, or sends
//!   nothing in time) is a profile mismatch ([`Error::mismatch`] says how). [`Client::connect_with`] does this;
//!   for a stream you opened yourself use [`Client::handshake`] or
//!   [`Client::handshake_io`] (the sync [`Client::from_stream`] and
//!   [`Client::from_io`] cannot wait for a hello).
//! - Each request gets the next id (1, 2, 3, ...) and a reply slot keyed by
//!   it, registered before the request can be written. Replies are matched
//!   by id, so they may come in any order, and any number of tasks may have
//!   requests in flight through clones of one `Client` (up to
//!   [`Config::max_in_flight`]).
//! - An error frame for a request fails that request alone with
//!   [`Error::Remote`].
//! - A request that times out, or whose future is dropped before its reply,
//!   gives its slot back at once and sends the server a `cancel` frame with
//!   its id. The cancel is queued without waiting (it is sent from `Drop`,
//!   past the outbound queue's bound; once the connection is closing it is
//!   skipped), and the server's reply, should one come, is dropped on
//!   arrival like any reply for an id the client no longer knows.
//! - [`Client::send`] sends a `notify` frame; [`Client::recv`] and
//!   [`Client::pushes`] yield push frames only, never a reply.
//! - A server that breaks the protocol (a frame shorter than its 9-byte
//!   header, an unknown kind, a kind only clients send) is hung up on:
//!   pending and later calls fail with [`Error::Framing`] holding the
//!   framing `Malformed`.
//!
//! ```no_run
//! use enchufe::client::Client;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> enchufe::client::Result<()> {
//! let client = Client::connect("127.0.0.1:8080").await?;
//! // Two requests in flight at once on one connection; replies by id.
//! let (a, b) = tokio::join!(
//!     client.request::<_, String>("slow"),
//!     client.request::<_, String>("fast"),
//! );
//! println!("{} {}", a?, b?);
//! # Ok(())
//! # }
//! ```
//!
//!
//! # Reconnecting
//!
//! With [`Config::reconnect`] set, [`Client::connect_with`] returns a client
//! that keeps itself connected: when the connection drops, a supervisor task
//! redials with backoff (exchanging hellos again in the multiplexed
//! profile), and the same handles go on working on the new connection.
//! Requests in flight when the connection drops fail at once with its error
//! and are **never retried**; calls made while there is no connection wait
//! or fail per [`WhileDown`]; [`Client::recv`] and
//! [`Client::pushes`] deliver across connections; [`Client::events`]
//! reports each drop and reconnection. When the backoff gives up, every call
//! fails with [`Error::GaveUp`]. [`Client::close`] stops the supervisor, and
//! so does dropping the last handle.
//!
//! ```no_run
//! use enchufe::client::{Client, Config, Event, Reconnect};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> enchufe::client::Result<()> {
//! let config = Config::default().reconnect(Reconnect::default());
//! let client = Client::connect_with("127.0.0.1:8080", config).await?;
//! let mut events = client.events();
//! tokio::spawn(async move {
//!     while let Ok(event) = events.recv().await {
//!         if let Event::Reconnected { addr, attempts } = event {
//!             println!("back on {addr} after {attempts} attempts");
//!         }
//!     }
//! });
//! let reply: String = client.request("hola").await?; // waits out a restart
//! # Ok(())
//! # }
//! ```
//!
//! # Map of the crate
//!
//! - [`Client`]: connecting ([`Client::connect`], [`Client::connect_with`],
//!   and for streams you opened, [`Client::handshake`],
//!   [`Client::handshake_io`], [`Client::from_stream`], [`Client::from_io`]),
//!   then `send`/`notify`, `request`, `recv`/`pushes`, `close`.
//! - [`Config`]: profile, timeouts, limits and queue sizes, each with its
//!   default and trade-off; [`Config::reconnect`] with a [`Reconnect`]
//!   policy ([`Backoff`], [`WhileDown`]) makes a client keep itself
//!   connected, reporting [`Event`]s.
//! - [`MultiClient`]: named reconnecting clients to several servers, with
//!   [`Routing`] for "any of them" and pushes tagged by key.
//! - [`Error`]: every way to fail is a typed variant: refused, connect
//!   timeout, request timeout, closed by peer, oversize frame, EOF mid-frame,
//!   decode; and in the multiplexed profile version mismatch, not an enchufe
//!   peer, protocol violation, and the server's error for a request;
//!   disconnected, gave up, unknown server, no server.
//! - [`Profile`] and [`ErrorCode`], re-exported from `enchufe_framing::mux`.
//! - Feature `tower`: `Client::service` and `MultiClient::service`, the
//!   client as a `tower::Service` (the `tower` module); feature `metrics`:
//!   each connection's traffic and end through the `metrics` facade (names
//!   in `enchufe_engine::meter`).
//!
//! # Examples
//!
//! ```
//! use std::convert::Infallible;
//! use enchufe::client::Client;
//! use enchufe::server::{handler_fn, Server};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = Server::bind("127.0.0.1:0").await?.serve(handler_fn(
//!     |req: String, _conn| async move { Ok::<_, Infallible>(Some(req.len().to_string())) },
//! ));
//! let client = Client::connect(server.local_addr()).await?;
//! let reply: String = client.request("ñandú").await?;
//! assert_eq!(reply, "7"); // bytes, not characters
//! # server.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! The multiplexed profile. (The server here is a few scripted lines that
//! speak `docs/PROTOCOL.md`: they answer requests in reverse order and push
//! a message between the replies.)
//!
//! ```
//! use enchufe::client::Client;
//! # use enchufe::framing::mux::{Header, Hello, Kind};
//! # use enchufe::framing::Transport;
//! # fn frame(kind: Kind, id: u64, body: &[u8]) -> bytes::Bytes {
//! #     [&Header { kind, id }.to_bytes()[..], body].concat().into()
//! # }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! # let addr = listener.local_addr()?;
//! # let server = tokio::spawn(async move {
//! #     let mut t = Transport::new(listener.accept().await.unwrap().0);
//! #     t.send(Hello::new("").answering().encode().unwrap()).await.unwrap();
//! #     Hello::decode(&t.recv().await.unwrap().unwrap()).unwrap();
//! #     let mut requests = Vec::new();
//! #     for _ in 0..2 {
//! #         let (header, body) = Header::split(t.recv().await.unwrap().unwrap()).unwrap();
//! #         requests.push((header.id, body.len()));
//! #     }
//! #     for (i, (id, len)) in requests.into_iter().rev().enumerate() {
//! #         if i == 1 {
//! #             t.feed(frame(Kind::Push, 0, b"news")).await.unwrap();
//! #         }
//! #         t.feed(frame(Kind::Response, id, len.to_string().as_bytes())).await.unwrap();
//! #     }
//! #     t.flush().await.unwrap();
//! #     while t.recv().await.unwrap().is_some() {}
//! # });
//! let client = Client::connect(addr).await?; // hellos exchanged
//! // Both requests are in flight at once; the replies come back in reverse
//! // order, each to its own request.
//! let (a, b) = tokio::join!(
//!     client.request::<_, String>("ñandú"),
//!     client.request::<_, String>("hola"),
//! );
//! assert_eq!((a?.as_str(), b?.as_str()), ("7", "4")); // bytes, not characters
//! // The push that came between them was never taken for a reply.
//! assert_eq!(client.recv::<String>().await?.as_deref(), Some("news"));
//! client.close().await?;
//! # server.await?;
//! # Ok(())
//! # }
//! ```

mod client;
mod config;
mod dial;
mod error;
mod link;
mod multi;
mod pipeline;
mod pushes;
mod reconnect;
mod region;
mod supervisor;
#[cfg(feature = "tower")]
pub mod tower;

pub use client::Client;
pub use config::Config;
pub use dial::UNIX_PREFIX;
pub use enchufe_framing::mux::{ErrorCode, Profile};
pub use error::{Error, Result, Unsupported};
pub use multi::{MultiClient, Routing};
pub use pipeline::Pipeline;
pub use pushes::Pushes;
pub use reconnect::{Backoff, Event, Reconnect, WhileDown};
pub use region::FileRegion;

/// TLS for [`Config::tls`] (feature `tls`).
#[cfg(feature = "tls")]
pub use enchufe_transports::tls;

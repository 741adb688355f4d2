//! enchufe's TCP server.
//!
//! A [`Server`] accepts connections (TCP, or a Unix socket with
//! [`Server::bind_unix`]) and runs one task per connection, the driver: it
//! reads each request frame, decodes it and hands it to your [`Handler`], and
//! writes the reply itself, flushing once no further frame is buffered.
//! Networking stays here; business logic stays in the handler (the course's
//! `handle_command` split).
//!
//! ```text
//!              accept loop (permit, then accept; backs off on errors)
//!                   |
//!        +----------+-----------+  one task per connection
//!        v                      v
//!   driver: frame -> Request -> Handler::handle -> reply (same task)
//!      ^  pushes, broadcasts: byte-budgeted outbox + Signal
//!      +- deadlines: one Sleep (idle, keepalive, write stall, hello)
//! ```
//!
//! Profiles ([`Config::profile`]): by default ([`Profile::Auto`]) each
//! connection's first frame decides. A multiplexed hello (enchufe's
//! clients, by default) makes it multiplexed: requests run concurrently and
//! replies, pushes and errors are told apart by a header. Anything else
//! makes it plain: one frame is one message, nothing added, so any client
//! that speaks the 4-byte length prefix (the course's Python `Client`)
//! works; requests on one connection are handled in order, replies leave in
//! request order, and a push and a reply look alike on the wire. A client
//! of the other profile than a pinned server's is an error at connect,
//! never a wrong reply.
//!
//! Limits: [`Config`] bounds connections, frame length, the bytes queued
//! for each connection and for all of them, idle time and stalled writes. Shutdown ([`ServerHandle::shutdown`]) stops
//! accepting, lets running handlers finish within a grace period, sends their
//! replies and closes.
//!
//! Features: `tower` adds the `tower` module (a [`Handler`] from a
//! `tower::Service`, so tower middleware wraps handlers); `metrics` reports
//! connections, frames, bytes, dropped pushes and errors through the
//! `metrics` facade (names in `enchufe_engine::meter`); `tls` and `ws` add
//! those listeners.
//!
//! # Examples
//!
//! ```
//! use std::convert::Infallible;
//! use enchufe::server::{Connection, Handler, Server};
//!
//! struct Greeter;
//!
//! impl Handler for Greeter {
//!     type Request = String;
//!     type Response = String;
//!     type Error = Infallible;
//!
//!     async fn on_connect(&self, conn: &Connection) {
//!         let _ = conn.push(format!("welcome, {}", conn.peer_addr())).await;
//!     }
//!
//!     async fn handle(&self, req: String, _conn: &Connection) -> Result<Option<String>, Infallible> {
//!         Ok(Some(format!("Acción asociada a {req}")))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let handle = Server::bind("127.0.0.1:0").await?.serve(Greeter);
//! # handle.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod config;
mod connection;
mod door;
mod error;
mod handler;
mod layer;
mod limits;
mod outbox;
mod requests;
mod rewind;
mod role;
mod server;
mod stats;
mod stream;
mod task;
#[cfg(feature = "tower")]
pub mod tower;

pub use config::{BusyPolicy, Config, PeerLinks, Profile, SlowConsumer};
pub use connection::{Connection, ConnectionId, Disconnect};
pub use door::{Door, HEAD_LIMIT};
pub use enchufe_framing::mux::ErrorCode;
pub use enchufe_framing::{AddrError, Body, BoxError};
pub use error::{Error, HandlerError, Result, Unsupported};
pub use handler::{handler_fn, Handler, HandlerFn};
pub use server::{Server, ServerHandle};
pub use stats::{ShutdownReport, Stats};

/// TLS for [`Server::tls`] and [`Server::dial_tls`] (feature `tls`).
#[cfg(feature = "tls")]
pub use enchufe_transports::tls;
/// WebSocket for [`Server::ws`] (feature `ws`).
#[cfg(feature = "ws")]
pub use enchufe_transports::ws;

//! enchufe over UDP: the same handler idea and the same [`Encode`] /
//! [`Decode`] messages as the TCP server and client, over datagrams.
//!
//! UDP has no stream, so there is no framing and no connection: one datagram
//! is one message, nothing added, as in the course's `sendto` / `recvfrom`
//! examples, so enchufe talks to a plain Python UDP client or server. What
//! enchufe adds is what those examples leave out: a size limit with
//! truncation detected, handlers that run concurrently under a limit,
//! requests that are retried when a datagram is lost, typed errors, and a
//! graceful shutdown.
//!
//! ```text
//!  one datagram = one message (IP and UDP headers added by the OS):
//!  +----------------+--------------+-----------------------------------+
//!  | IP header      | UDP header   | payload: the encoded message      |
//!  | 20 B (v4)      | 8 B          | 0 ..= max_datagram (65,507) bytes |
//!  +----------------+--------------+-----------------------------------+
//!
//!  UdpServer:  recvmmsg (up to `batch` datagrams) --> each: [too large? busy? -> dropped, counted]
//!                  |
//!                  +--> decode -> Handler::handle(req, Context) -> reply
//!                       (polled once in the receive loop; a task of its own if it waits)
//!              replies of the batch --> sendmmsg, one call (elsewhere than Linux:
//!              recv_from and send_to, one datagram at a time)
//!
//!  UdpClient:  request = send, wait `timeout` for the next datagram from the
//!              server, send again up to `retries` times
//! ```
//!
//! # Map of the crate
//!
//! - [`UdpServer`] binds a socket and serves a [`Handler`]; its
//!   [`UdpServerHandle`] gives the address, [`server::Stats`] and
//!   `shutdown`. Limits in [`server::Config`].
//! - [`UdpClient`]: a connected socket with `send`, `recv` and `request`
//!   (timeout and retries in [`client::Config`]).
//! - [`Handler`], [`Context`] (the sender's address), [`handler_fn`].
//! - [`Error`]: one enum for both roles, with predicates
//!   ([`Error::is_timeout`], [`Error::is_refused`], [`Error::is_frame_too_large`]).
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use enchufe::udp::{handler_fn, UdpClient, UdpServer};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), enchufe::udp::Error> {
//! let server = UdpServer::bind("127.0.0.1:0").await?.serve(handler_fn(|req: String, ctx| async move {
//!     Ok::<_, Infallible>(Some(format!("Aquí va mi respuesta para {}: {req}", ctx.peer_addr().ip())))
//! }));
//!
//! let client = UdpClient::connect(server.local_addr()).await?;
//! let reply: String = client.request("hola").await?;
//! assert_eq!(reply, "Aquí va mi respuesta para 127.0.0.1: hola");
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod batch;
pub mod client;
mod datagram;
mod error;
mod handler;
pub mod server;

pub use client::UdpClient;
pub use datagram::MAX_DATAGRAM;
pub use enchufe_framing::{AddrError, Decode, Encode};
pub use error::{Error, Result};
pub use handler::{handler_fn, Context, Handler, HandlerFn};
pub use server::{UdpServer, UdpServerHandle};

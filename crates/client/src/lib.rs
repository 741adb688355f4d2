//! enchufe's TCP client.
//!
//! A [`Client`] is a cheap, cloneable handle to one framed connection. Behind
//! it run two tasks: a writer that sends queued frames in batches (feed while
//! more is queued, flush when the queue is empty) and a reader that routes
//! each arriving frame either to the request waiting for it or, when none is,
//! to the unsolicited-message queue read by [`Client::recv`] (the course
//! client's listening thread).
//!
//! ```text
//!  send / request --> [bounded queue] --> writer task --> socket
//!                         request slots (FIFO)   |
//!  request <---------------- reader task <-------+---- socket
//!  recv    <-- [bounded queue] <--+ (no request waiting)
//! ```
//!
//! Every way to fail is a typed [`Error`] variant: refused, connect timeout,
//! request timeout, closed by peer, oversize frame, EOF mid-frame, decode.
//!
//! # Examples
//!
//! ```
//! use std::convert::Infallible;
//! use enchufe_client::Client;
//! use enchufe_server::{handler_fn, Server};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = Server::bind("127.0.0.1:0").await?.serve(handler_fn(
//!     |req: String, _conn| async move { Ok::<_, Infallible>(Some(req.len().to_string())) },
//! ));
//! let client = Client::connect(server.local_addr()).await?;
//! let reply: String = client.request("ñandú").await?;
//! assert_eq!(reply, "6"); // bytes, not characters
//! # server.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod client;
mod config;
mod error;

pub use client::Client;
pub use config::Config;
pub use error::{Error, Result};

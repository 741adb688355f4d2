//! HTTP/1.1 over enchufe's machinery: HTTP is one more agreement about the
//! bytes on a socket, so it runs on the same connection
//! [`Driver`](enchufe_framing::driver::Driver) as the length-prefixed
//! profiles, with another codec in the [`Wire`](enchufe_framing::Wire).
//!
//! ```text
//!   client bytes:  GET /hola HTTP/1.1\r\nHost: x\r\n\r\n  (a head: up to the blank line)
//!   Wire<TcpStream, RequestHead> --split--> head --Request::parse--> Handler
//!   Handler -> Response --encode--> HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhola\n
//! ```
//!
//! # Map of the crate
//!
//! - [`RequestHead`]: the [`Split`](enchufe_framing::Split) that cuts
//!   request heads out of the read buffer, within [`Limits`] (16 KiB, 64
//!   headers by default); a head over them is a [`Refusal`] (`431`), as is
//!   one that is not HTTP (`400`).
//! - [`Request`] and [`Response`]: what a [`Handler`] takes and gives.
//! - [`Server`]: the accept loop and the connection loop on the driver:
//!   keep-alive (HTTP/1.1 by default, HTTP/1.0 on request), pipelined
//!   requests answered in one write, a deadline for a whole head (`408`),
//!   an idle timeout between requests, graceful shutdown.
//!
//! Only `GET` and `HEAD` are meant: requests with a body are refused (see
//! [`Server`]). The `http_hello` and `http_get` examples show both ends,
//! the client written by hand over a `TcpStream`.

mod head;
mod message;
mod server;

pub use head::{Limits, Refusal, RequestHead, MAX_HEADERS};
pub use message::{Request, Response};
pub use server::{Config, Handler, Server};

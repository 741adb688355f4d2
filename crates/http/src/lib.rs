//! HTTP/1.1 over enchufe's machinery: HTTP is one more agreement about the
//! bytes on a socket, so it runs on the same connection
//! [`Driver`](enchufe_engine::driver::Driver) as the length-prefixed
//! profiles, with another codec in the [`Wire`](enchufe_framing::Wire).
//!
//! ```text
//!   client bytes:  GET /hola HTTP/1.1\r\nHost: x\r\n\r\n  (a head: up to the blank line)
//!                  [body: Content-Length bytes, or chunks]
//!   Wire<TcpStream, RequestHead> --split: httparse + rules, once--> head + its
//!                                  offsets --> Request (one Bytes, borrowed parts)
//!                                --split--> body bytes, end --> Request::body
//!   Handler::handle(Request).await -> Response (the driver flushes and keeps
//!                                     deadlines meanwhile, reading nothing)
//!   Response --encode (bytes appended, Date of the batch)-->
//!                  HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhola\n
//! ```
//!
//! # Example
//!
//! An async handler that awaits before answering:
//!
//! ```no_run
//! use std::time::Duration;
//! use enchufe::http::{handler_fn, Config, Request, Response, Server};
//!
//! # #[tokio::main] async fn main() -> std::io::Result<()> {
//! let hello = handler_fn(|request: Request| async move {
//!     // Stands for a file read, a query, a call to another service: the
//!     // connection's task waits here, the runtime's worker does not.
//!     tokio::time::sleep(Duration::from_millis(10)).await;
//!     match request.path().strip_prefix("/hola/") {
//!         Some(name) => Response::text(200, format!("hola, {name}\n")),
//!         None => Response::text(404, "no\n"),
//!     }
//! });
//! let config = Config::default().handler_timeout(Some(Duration::from_secs(5)));
//! let server = Server::bind("127.0.0.1:8080").await?.with_config(config);
//! // Any future stops it: a Ctrl-C one in a real server (`http_hello`).
//! server.run(hello, std::future::pending()).await;
//! # Ok(()) }
//! ```
//!
//! # Map of the crate
//!
//! - [`RequestHead`]: the [`Split`](enchufe_framing::Split) that cuts
//!   request heads out of the read buffer, within [`Limits`] (16 KiB, 64
//!   headers by default), parsing each once (httparse, then the rules
//!   table) and keeping where its parts are.
//! - [`Refusal`]: the rules table (RFC 9112's framing rules among them):
//!   each variant a rule and its status; every refusal closes the
//!   connection.
//! - [`Request`] and [`Response`]: what a [`Handler`] takes and gives. A
//!   request is its head as it arrived (one `Bytes`) with the offsets of
//!   its parts: [`Request::path`], [`Request::headers`] and the rest
//!   borrow from it, nothing is allocated per header. A reply's body is in
//!   memory or streamed ([`Response::stream`], [`Response::reader`]:
//!   chunked, within the output budget).
//! - [`Handler`]: `async fn handle(&self, Request) -> Response`, its future
//!   `Send`; [`handler_fn`] makes one from a closure. One request at a time
//!   per connection (replies in request order); a panic is `500` and closes
//!   that connection; [`Config::handler_timeout`] answers `503`.
//! - [`Server`]: the accept loop and the connection loop on the driver:
//!   keep-alive (HTTP/1.1 by default, HTTP/1.0 on request), pipelined
//!   requests answered in order, a deadline for a whole head (`408`),
//!   an idle timeout between requests, graceful shutdown (running handlers
//!   get [`Config::shutdown_grace`], then are dropped); HTTPS with
//!   `Server::tls` (feature `tls`: the frame server's TLS acceptor).
//!
//! - [`Body`]: a request's body (`Content-Length` or chunked), streamed to
//!   the handler as it arrives, within [`Config::max_body`]; one left
//!   unread is drained (up to [`Config::drain_bytes`]) or the connection
//!   closed.
//!
//! The `http_hello` and `http_get` examples show both ends, the client
//! written by hand over a `TcpStream`.

mod body;
mod date;
mod handler;
mod head;
mod message;
mod request;
mod rules;
mod server;

pub use body::Body;
pub use handler::{handler_fn, Handler, HandlerFn};
pub use head::{Limits, RequestHead};
pub use message::Response;
pub use request::{Headers, Request, MAX_HEADERS};
pub use rules::Refusal;
pub use server::{door, Config, Door, Server};

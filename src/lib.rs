//! # enchufe
//!
//! An async networking framework for your own protocol over TCP, on Tokio:
//! as easy as the classic Python socket classes, as fast as hand-written
//! Tokio, hardened like a production server.
//!
//! Messages travel as frames: a 4-byte big-endian length, then the payload.
//! This is the wire format of the course's Python `Server` and `Client`
//! classes, byte for byte, so enchufe talks to them both ways.
//!
//! ```text
//!  "hola"  ->  00 00 00 04 68 6f 6c 61
//!              '--length-' '-payload-'
//! ```
//!
//! # Map
//!
//! ```text
//!  your code:    Handler (server side)      Client / MultiClient / Peer
//!  ---------------------------------------------------------------
//!  server        accept loop, a task per connection, limits, shutdown
//!  client        cloneable handle + a task per connection, half-close
//!  peer          an endpoint that serves and dials, whatever starts first
//!  ---------------------------------------------------------------
//!  framing       the connection driver of every role; frames of bytes;
//!                Text, Json<T>, Raw
//! ```
//!
//! | crate | re-exported as | what it holds |
//! |---|---|---|
//! | `enchufe-framing` | [`framing`] | [`Transport`], the codec, [`Encode`]/[`Decode`], [`Json`] |
//! | `enchufe-server` | [`server`] | [`Server`], [`Handler`], [`Connection`], [`ServerHandle`] |
//! | `enchufe-client` | [`client`] | [`Client`], [`MultiClient`] |
//! | `enchufe-peer` | [`peer`] | [`Peer`] |
//! | `enchufe-udp` | [`udp`] | [`UdpServer`], [`UdpClient`], `udp::Handler` (datagrams) |
//! | `enchufe-transfer` | [`transfer`] | `transfer::Upload`, `transfer::Receiver` (files and streams: chunks, BLAKE3, progress, resume), `transfer::course` |
//!
//! # Example: a server and a client in one program
//!
//! ```
//! use std::convert::Infallible;
//! use enchufe::{handler_fn, Client, Server};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = Server::bind("127.0.0.1:0").await?.serve(handler_fn(
//!     |cmd: String, _conn| async move { Ok::<_, Infallible>(Some(format!("Acción asociada a {cmd}"))) },
//! ));
//!
//! let client = Client::connect(server.local_addr()).await?;
//! let reply: String = client.request("saltar").await?;
//! assert_eq!(reply, "Acción asociada a saltar");
//!
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```

pub use enchufe_client as client;
pub use enchufe_framing as framing;
pub use enchufe_peer as peer;
pub use enchufe_server as server;
pub use enchufe_transfer as transfer;
pub use enchufe_udp as udp;

pub use enchufe_client::{Client, MultiClient};
pub use enchufe_framing::mux::Profile;
pub use enchufe_framing::{Decode, Encode, Json, Raw, Text, Transport};
pub use enchufe_peer::Peer;
pub use enchufe_server::{handler_fn, Connection, Handler, Server, ServerHandle};
pub use enchufe_udp::{UdpClient, UdpServer};

/// The README's code blocks, compiled as doc tests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

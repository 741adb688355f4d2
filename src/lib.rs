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
//!                Text, Raw, Json<T>, MsgPack<T>, Postcard<T>
//! ```
//!
//! # Messages
//!
//! A handler's `Request` and `Response`, and what a client sends and reads,
//! can be any of these (or a type of your own that implements [`Encode`] /
//! [`Decode`] over [`Bytes`] / [`BytesMut`]):
//!
//! | type | on the wire | reads it too |
//! |---|---|---|
//! | [`Text`] (`String`, `&str`) | UTF-8, nothing added | the course's Python classes |
//! | [`Raw`] ([`Bytes`], `Vec<u8>`) | the bytes as they are | anything |
//! | [`Json<T>`] | JSON text, floats exact; NaN refused | any language |
//! | `MsgPack<T>` | MessagePack, structs as maps by field name | Python's `msgpack`, most languages |
//! | `Postcard<T>` | postcard: the most compact, no field names | Rust with the same type |
//!
//! `MsgPack` and `Postcard` are behind the cargo features `msgpack` and
//! `postcard`, both on by default.
//!
//! | crate | re-exported as | what it holds |
//! |---|---|---|
//! | `enchufe-framing` | [`framing`] (a chosen list) | [`Transport`], the codec, [`Encode`]/[`Decode`], [`Json`] |
//! | `enchufe-engine` | not re-exported (private engine), but [`net`] and [`Ended`] | the connection driver every role runs on |
//! | `enchufe-server` | [`server`] | [`Server`], [`Handler`], [`Connection`], [`ServerHandle`] |
//! | `enchufe-client` | [`client`] | [`Client`], [`MultiClient`] |
//! | `enchufe-peer` | [`peer`] | [`Peer`] |
//! | `enchufe-udp` | [`udp`] | [`UdpServer`], [`UdpClient`], `udp::Handler` (datagrams) |
//! | `enchufe-transfer` | [`transfer`] | `transfer::Upload`, `transfer::Receiver` (files and streams: chunks, XXH3-128, progress, resume), `transfer::course` |
//! | `enchufe-http` | [`http`] | `http::Server`, `http::Handler`, `http::RequestHead` (HTTP/1.1 GET on the same driver) |
//! | `enchufe-bus` | `bus` (feature `bus`) | `bus::Cluster` (broadcasts, rooms and presence across servers), the `bus::Bus` trait, `bus::MemoryBus`, `bus::RedisBus` (feature `redis`) |
//! | `enchufe-transports` | `tls`, `ws` (features) | TLS `Acceptor` / `Connector` (rustls); the WebSocket upgrade and `WsIo` |
//!
//! # Features
//!
//! All off by default (the reasons are in `docs/ARCHITECTURE.md`):
//! - `tls`: `Server::tls`, `Server::dial_tls`, `client::Config::tls` (so
//!   `MultiClient` too), `peer::Config::tls`, `http::Server::tls`; the `tls` module.
//! - `ws`: `Server::ws`, a WebSocket listener for browsers; the `ws` module.
//! - `bus`: the `bus` module: broadcasts and rooms that reach every server
//!   attached to one bus; `redis` adds the bus on Redis pub/sub.
//! - `tower`: the tower bridge: `server::tower::ServiceHandler` (a
//!   [`Handler`] from a `tower::Service`, so tower's timeouts, limits and
//!   load shedding wrap handlers) and `Client::service` /
//!   `MultiClient::service` (a client as a `Service`).
//! - `metrics`: connections, frames and bytes each way, dropped pushes and
//!   errors by kind, reported through the `metrics` facade for any exporter;
//!   the names are listed in the [`metrics`] module and the README, and
//!   `examples/metrics.rs` serves them to Prometheus.
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

/// Broadcasts, rooms and presence across servers on a shared bus, in
/// process or on Redis (features `bus`, `redis`).
#[cfg(feature = "bus")]
pub use enchufe_bus as bus;
pub use enchufe_client as client;
pub use enchufe_http as http;
pub use enchufe_peer as peer;
pub use enchufe_server as server;
pub use enchufe_transfer as transfer;
pub use enchufe_udp as udp;

/// Frames and messages: the bytes on the wire (a 4-byte big-endian length,
/// then the payload), the codecs that make them, and the message formats.
///
/// This is a deliberate list: the connection engine that moves frames
/// (drivers, wires, session rules) is private to enchufe and may change in
/// any release.
pub mod framing {
    #[cfg(feature = "msgpack")]
    pub use enchufe_framing::MsgPack;
    #[cfg(feature = "postcard")]
    pub use enchufe_framing::Postcard;
    pub use enchufe_framing::{
        mux, recycle, AddrError, Body, BoxError, Bytes, BytesMut, Config, Decode, Encode, Error,
        Foreign, FrameCodec, FrameReader, FrameWriter, Json, Malformed, OutFrame, Raw, Result,
        Text, Transport, HEADER_LEN, MAX_BATCH, STREAM_CHUNK,
    };
}

/// Transports beyond TCP and Unix sockets: [`Accept`](net::Accept) (where
/// a server gets its connections, `Server::from_accept`) and
/// [`Connect`](net::Connect) (how a client, a `MultiClient` or a peer opens
/// one, `client::Config::connector`). A simulated network (`sim`) and
/// in-memory pipes in tests use them.
pub mod net {
    pub use enchufe_engine::net::{Accept, BoxFuture, BoxIo, Connect, Connected, Io};
}

/// Why a connection ended, the same for every role: a server's
/// `Disconnect`, a client's link.
pub use enchufe_engine::Ended;

/// Connection metrics through the `metrics` facade (feature `metrics`):
/// the names, labels and units every role reports.
#[cfg(feature = "metrics")]
pub mod metrics {
    #[doc(inline)]
    pub use enchufe_engine::meter::describe;
}

pub use enchufe_client::{Client, MultiClient};
pub use enchufe_framing::mux::{ErrorCode, Profile};
#[cfg(feature = "msgpack")]
pub use enchufe_framing::MsgPack;
#[cfg(feature = "postcard")]
pub use enchufe_framing::Postcard;
pub use enchufe_framing::{Bytes, BytesMut, Decode, Encode, Json, Raw, Text, Transport};
pub use enchufe_peer::Peer;
pub use enchufe_server::{handler_fn, Connection, Handler, Server, ServerHandle};
pub use enchufe_udp::{UdpClient, UdpServer};

// Every role has a `Config`; at the root they are told apart by name.
// `enchufe::server::Config` and the others still work.
/// [`server::Config`]: limits, timeouts and profile of a [`Server`].
///
/// ```
/// use enchufe::{Profile, ServerConfig};
/// let config = ServerConfig::default().profile(Profile::Multiplexed);
/// # let _ = config;
/// ```
pub use enchufe_server::Config as ServerConfig;

/// [`client::Config`]: timeouts, profile and reconnection of a [`Client`].
///
/// ```
/// use std::time::Duration;
/// let config = enchufe::ClientConfig::default().request_timeout(Duration::from_secs(5));
/// # let _ = config;
/// ```
pub use enchufe_client::Config as ClientConfig;

/// [`peer::Config`]: the id, dialing and keepalive of a [`Peer`].
///
/// ```
/// let config = enchufe::PeerConfig::new("nodo-1");
/// # let _ = config;
/// ```
pub use enchufe_peer::Config as PeerConfig;

/// [`framing::Config`]: the frame length limit of a [`Transport`].
///
/// ```
/// let config = enchufe::FramingConfig::default().max_frame_length(64 * 1024);
/// # let _ = config;
/// ```
pub use enchufe_framing::Config as FramingConfig;
/// TLS (feature `tls`): [`tls::Acceptor`] for `Server::tls` and
/// [`tls::Connector`] for `client::Config::tls`, `Server::dial_tls` and
/// `peer::Config::tls`, loaded from PEM files.
#[cfg(feature = "tls")]
pub use enchufe_server::tls;
/// WebSocket (feature `ws`): [`ws::Options`] for `Server::ws`, and
/// [`ws::WsIo`], a WebSocket as a byte stream of frames.
#[cfg(feature = "ws")]
pub use enchufe_server::ws;

/// The deterministic test kit (feature `sim`): servers, clients,
/// `MultiClient`s and peers on turmoil's simulated network. See the
/// module's page.
#[cfg(feature = "sim")]
pub use enchufe_sim as sim;

/// The README's code blocks, compiled as doc tests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

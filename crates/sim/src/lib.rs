//! enchufe on [turmoil]'s simulated network: a deterministic test kit for
//! your own servers, clients and peers.
//!
//! turmoil runs every host of a test in one thread, on simulated time,
//! over a simulated network that the test can partition, repair, slow
//! down, and whose hosts it can crash and restart. Given the same seed, a
//! run repeats itself: a failure found once is found again. Nothing here
//! sleeps on the wall clock: an hour of timeouts and backoff passes in
//! milliseconds.
//!
//! enchufe's roles take the simulated network through the same seams as
//! any other transport ([`enchufe_engine::net`]): a server accepts from a
//! [`Listener`] ([`Server::from_accept`]), and clients, `MultiClient`s and
//! peers dial with a [`Connector`] (`client::Config::connector`,
//! [`Server::connector`]). The driver, the profiles, the limits, reconnect
//! and the peer mesh are the real ones, unchanged.
//!
//! ```text
//!  turmoil::Sim ── host "server": sim::serve(port, config, handler)   (a real enchufe Server)
//!       │                 ▲ simulated TCP: partition, repair, hold, latency, crash, bounce
//!       └──── client "test": Client::connect_with("server:9000", sim::client_config(config))
//! ```
//!
//! | helper | what it gives |
//! |---|---|
//! | [`serve`] | serves a handler on a host until the host is crashed |
//! | [`server`] | a [`Server`] on a simulated port, to configure yourself |
//! | [`client_config`] | a client configuration that dials the simulated network |
//! | [`peer`] | a [`Peer`] listening on a simulated port and dialing through it |
//! | [`Listener`], [`Connector`] | the two seams, for anything else |
//!
//! Addresses are `"host:port"` with a turmoil host name (`"server:9000"`)
//! or an IP address. An unknown host name is turmoil's panic, not an
//! error: declare every host before dialing it.
//!
//! # Determinism
//! The seed (turmoil's `Builder::rng_seed`; without one, turmoil seeds from
//! the OS) fixes turmoil's choices (message latencies, random drops,
//! which ready host runs first). Two things in a process are random
//! beyond its reach, and the helpers turn them off: reconnect backoff
//! jitter ([`client_config`] and [`peer`] set
//! `Backoff::jitter(false)`), and a peer's default node id (give each peer
//! one, as the example below does). What is left (tokio's fair choice
//! among ready `select!` branches, the order of a `HashMap`) can reorder
//! work inside one simulated instant, not move it in time.
//!
//! # Example
//! A server, a reconnecting client, and a partition between them healed a
//! simulated second later:
//!
//! ```
//! use std::time::Duration;
//! use enchufe::client::{Backoff, Client, Config, Reconnect};
//! use enchufe::server::{handler_fn, Profile};
//! use enchufe::sim;
//!
//! let mut world = sim::turmoil::Builder::new().rng_seed(7).build();
//! world.host("server", || {
//!     let config = enchufe::server::Config::default().profile(Profile::Multiplexed);
//!     sim::serve(9000, config, handler_fn(|n: String, _conn| async move {
//!         Ok::<_, std::convert::Infallible>(Some(n))
//!     }))
//! });
//! world.client("test", async {
//!     let config = Config::default()
//!         .profile(Profile::Multiplexed)
//!         .request_timeout(Duration::from_millis(500))
//!         .silence_timeout(Duration::from_millis(200))
//!         .reconnect(Reconnect::default().backoff(Backoff::default().forever()));
//!     let client = Client::connect_with("server:9000", sim::client_config(config)).await?;
//!     let echoed: String = client.request("one").await?;
//!     assert_eq!(echoed, "one");
//!
//!     sim::turmoil::partition("test", "server");
//!     let lost = client.request::<_, String>("two").await.unwrap_err();
//!     assert!(lost.is_timeout()); // no reply, no FIN, no RST: only time tells
//!
//!     tokio::time::sleep(Duration::from_secs(1)).await; // simulated
//!     sim::turmoil::repair("test", "server");
//!     let mut answered = None;
//!     for _ in 0..50 {
//!         if let Ok(reply) = client.request::<_, String>("three").await {
//!             answered = Some(reply);
//!             break;
//!         }
//!         tokio::time::sleep(Duration::from_millis(100)).await;
//!     }
//!     assert_eq!(answered.as_deref(), Some("three"));
//!     Ok(())
//! });
//! world.run().unwrap();
//! ```
//!
//! [turmoil]: https://docs.rs/turmoil/0.6

use std::io;
use std::net::{Ipv4Addr, SocketAddr};

use enchufe_engine::net::{Accept, BoxFuture, BoxIo, Connect, Connected};
use enchufe_peer::Peer;
use enchufe_server::{Handler, Server};

/// The turmoil this kit is built on, so that a test uses the same version.
pub use turmoil;

/// A server's listener on the simulated network: [`Server::from_accept`]
/// serves what it accepts. Bound on the current host.
pub struct Listener(turmoil::net::TcpListener);

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Listener")
            .field(&self.0.local_addr().ok())
            .finish()
    }
}

impl Listener {
    /// Listens on `port` of the current host (every address it has).
    ///
    /// # Errors
    /// The port is taken on this host.
    ///
    /// # Panics
    /// Outside a turmoil host (turmoil's rule).
    pub async fn bind(port: u16) -> io::Result<Listener> {
        let listener = turmoil::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).await?;
        Ok(Listener(listener))
    }
}

impl Accept for Listener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxIo, SocketAddr)>> {
        Box::pin(async move {
            let (stream, from) = self.0.accept().await?;
            Ok((Box::pin(stream) as BoxIo, from))
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// Dials the simulated network: `"host:port"`, with a turmoil host name or
/// an IP address.
#[derive(Debug, Clone, Copy, Default)]
pub struct Connector;

impl Connect for Connector {
    fn connect<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<Connected>> {
        Box::pin(async move {
            let (host, port) = split(addr)?;
            let stream = turmoil::net::TcpStream::connect((host, port)).await?;
            let (peer, local) = (stream.peer_addr().ok(), stream.local_addr().ok());
            Ok(Connected::new(stream, peer, local))
        })
    }
}

/// `"host:port"` (or `"[v6]:port"`) into its parts.
fn split(addr: &str) -> io::Result<(&str, u16)> {
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not HOST:PORT: {addr:?}"),
        )
    };
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    let port = port.parse().map_err(|_| bad())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host, port))
}

/// A [`Server`] listening on `port` of the current host, whose
/// [`ServerHandle::connect`](enchufe_server::ServerHandle::connect) dials
/// the simulated network too. Configure it and serve as usual.
///
/// # Errors
/// The port is taken on this host.
pub async fn server(port: u16) -> io::Result<Server> {
    Ok(Server::from_accept(Listener::bind(port).await?).connector(Connector))
}

/// Serves `handler` on `port` of the current host with `config`, until the
/// host is crashed: the body of a `turmoil::Sim::host`, which calls it
/// again when the host is restarted (`bounce`).
///
/// # Errors
/// The port is taken on this host.
pub async fn serve<H: Handler>(
    port: u16,
    config: enchufe_server::Config,
    handler: H,
) -> turmoil::Result {
    let handle = server(port).await?.with_config(config).serve(handler);
    // Only a shutdown ends it, and nothing here asks for one: the host runs
    // until the simulation crashes it or ends.
    handle.stopped().await;
    Ok(())
}

/// `config` made to dial the simulated network
/// ([`Config::connector`](enchufe_client::Config::connector)), with
/// reconnect jitter off so that redials repeat with the seed. For a
/// `Client` and a `MultiClient` alike.
pub fn client_config(config: enchufe_client::Config) -> enchufe_client::Config {
    let mut config = config.connector(Connector);
    if let Some(reconnect) = config.reconnect.take() {
        let backoff = reconnect.backoff.clone().jitter(false);
        config = config.reconnect(reconnect.backoff(backoff));
    }
    config
}

/// A [`Peer`] listening on `port` of the current host and dialing other
/// peers over the simulated network (`peer.add_peer("b:9000")`), with
/// dial jitter off. Give it a node id of your own
/// ([`Config::id`](enchufe_peer::Config::id)): the default one is random.
///
/// # Errors
/// The port is taken on this host.
pub async fn peer<H: Handler>(
    port: u16,
    handler: H,
    config: enchufe_peer::Config,
) -> io::Result<Peer> {
    let backoff = config.backoff.clone().jitter(false);
    let config = config.backoff(backoff);
    Ok(Peer::from_server(server(port).await?, handler, config))
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn addresses_split_or_are_refused() {
        assert_eq!(split("server:9000").unwrap(), ("server", 9000));
        assert_eq!(split("[::1]:80").unwrap(), ("::1", 80));
        for bad in ["server", "server:", ":80", "server:99999", "server:x"] {
            let err = split(bad).unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{bad}");
        }
    }
}

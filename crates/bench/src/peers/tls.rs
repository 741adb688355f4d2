//! TLS: enchufe's frame server with `Server::tls` and tokio-rustls with
//! tokio-util `Framed` by hand, driven by tokio-rustls clients: pipelined
//! frames, and handshakes (new connection, one frame, close).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use enchufe::{Profile, Server, ServerConfig};
use futures::{SinkExt, StreamExt, TryStreamExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::client::TlsStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_util::codec::{Framed, FramedRead, FramedWrite};

use super::{pipeline, Kind, Served, Spec};
use crate::error::{Error, Result};
use crate::floor::{self, codec};
use crate::payload::{check, Payloads};

fn tls_err(e: impl std::fmt::Display) -> Error {
    Error::harness(format!("tls: {e}"))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Writes a fresh self-signed certificate for 127.0.0.1 and its key (PEM)
/// into `dir`; returns their paths.
pub(crate) fn make_cert(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).map_err(tls_err)?;
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&c, cert.cert.pem())?;
    std::fs::write(&k, cert.key_pair.serialize_pem())?;
    Ok((c, k))
}

/// enchufe's frame server (plain profile) behind `Server::tls`, echoing.
pub(crate) async fn enchufe(addr: SocketAddr, (cert, key): (PathBuf, PathBuf)) -> Result<Served> {
    let acceptor = enchufe::tls::Acceptor::from_pem_files(cert, key).map_err(tls_err)?;
    let server = Server::bind(addr)
        .await
        .map_err(|e| Error::harness(e.to_string()))?
        .with_config(ServerConfig::default().profile(Profile::Plain))
        .tls(acceptor);
    super::echo(server)
}

/// The hand-written rival: tokio-rustls's acceptor (same ring provider,
/// safe default versions), then the floor's `Framed` echo on the stream.
pub(crate) async fn floor(addr: SocketAddr, (cert, key): (PathBuf, PathBuf)) -> Result<Served> {
    let chain = CertificateDer::pem_file_iter(&cert)
        .map_err(tls_err)?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(tls_err)?;
    let key = PrivateKeyDer::from_pem_file(&key).map_err(tls_err)?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(tls_err)?;
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((
        local,
        tokio::spawn(floor::accept_each(listener, move |stream| {
            let acceptor = acceptor.clone();
            async move {
                if let Ok(Ok(tls)) =
                    tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await
                {
                    floor::connection(tls).await;
                }
            }
        })),
    ))
}

/// A client trusting only the certificate at `spec.cert`, without session
/// resumption: every handshake is a full one.
fn connector(spec: &Spec) -> Result<TlsConnector> {
    let path = spec.cert.as_ref().ok_or_else(|| tls_err("--cert needed"))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(tls_err)? {
        roots.add(cert.map_err(tls_err)?).map_err(tls_err)?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    Ok(TlsConnector::from(Arc::new(config)))
}

async fn connect(tls: &TlsConnector, addr: SocketAddr) -> Result<TlsStream<TcpStream>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    tls.connect(ServerName::from(addr.ip()), stream)
        .await
        .map_err(tls_err)
}

/// [`Kind::Handshake`]: [`handshakes`]. [`Kind::Tls`]: opens `conns` TLS
/// connections, then pipelines frames on each.
pub(crate) async fn load(
    spec: &Spec,
    stop: &Arc<AtomicBool>,
    tasks: &mut JoinSet<Result<(u64, u64)>>,
) -> Result<()> {
    let tls = connector(spec)?;
    let payloads = Payloads::new(spec.size);
    if spec.kind == Kind::Handshake {
        handshakes(tls, payloads, spec, stop, tasks);
        return Ok(());
    }
    let mut conns = Vec::with_capacity(spec.conns);
    for _ in 0..spec.conns {
        conns.push(connect(&tls, spec.addr).await?);
    }
    for (conn, stream) in conns.into_iter().enumerate() {
        let (payloads, stop, depth) = (payloads.clone(), stop.clone(), spec.depth);
        tasks.spawn(async move {
            let (read, write) = tokio::io::split(stream);
            let sink =
                SinkExt::<Bytes>::sink_map_err(FramedWrite::new(write, codec()), Error::from);
            let echoes = FramedRead::new(read, codec())
                .map_ok(bytes::BytesMut::freeze)
                .map_err(Error::from);
            let n = pipeline::run(conn, sink, echoes, payloads, depth, &stop).await?;
            Ok((n, 0))
        });
    }
    Ok(())
}

/// `depth` loops, each: connect, full handshake, one frame echoed and
/// checked, close; until `stop`.
fn handshakes(
    tls: TlsConnector,
    payloads: Payloads,
    spec: &Spec,
    stop: &Arc<AtomicBool>,
    tasks: &mut JoinSet<Result<(u64, u64)>>,
) {
    for conn in 0..spec.depth {
        let (tls, payloads, stop, addr) = (tls.clone(), payloads.clone(), stop.clone(), spec.addr);
        tasks.spawn(async move {
            let mut n = 0u64;
            while !stop.load(Relaxed) {
                let mut framed = Framed::new(connect(&tls, addr).await?, codec());
                let payload = payloads.get(n);
                framed.send(payload.clone()).await?;
                let echo = framed.next().await.ok_or(Error::Closed {
                    conn,
                    received: n,
                    owed: 1,
                })??;
                check(conn, n, &echo, payload)?;
                n += 1;
            }
            Ok((n, 0))
        });
    }
}

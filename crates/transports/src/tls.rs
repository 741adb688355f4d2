//! TLS with rustls: an [`Acceptor`] for servers, a [`Connector`] for
//! clients (and for a peer's dialing side), certificates and keys from PEM.
//!
//! Both sides turn a connected byte stream (a `TcpStream`, or any
//! `AsyncRead + AsyncWrite`) into a TLS stream within a deadline, so a peer
//! that never finishes its handshake (a plain client at a TLS server, a
//! stalled connection) costs one connection for at most that long. What
//! comes out is served by the same connection driver as a TCP stream: TLS is
//! a layer under the frames, not a different protocol.
//!
//! ```text
//!  TcpStream --Acceptor::accept / Connector::connect (deadline)--> TLS stream
//!            --> framing::driver: [len u32 BE][payload] ... as over TCP
//! ```
//!
//! # Examples
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use enchufe_transports::tls::{Acceptor, Connector};
//! // Files made by `cargo run --features tls --example make_cert -- --out DIR --name localhost`:
//! # let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()])?;
//! # let (cert_pem, key_pem) = (cert.cert.pem(), cert.key_pair.serialize_pem());
//! let acceptor = Acceptor::from_pem(cert_pem.as_bytes(), key_pem.as_bytes())?;
//! // The client trusts that certificate (or the CA that signed it).
//! let connector = Connector::from_ca_pem(cert_pem.as_bytes())?;
//! # drop((acceptor, connector));
//! # Ok(())
//! # }
//! ```

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};

/// The rustls crate, for [`Acceptor::from_rustls`] and
/// [`Connector::from_rustls`] (client certificates, ALPN, other roots).
pub use rustls;
/// A client's TLS stream over `Io`.
pub use tokio_rustls::client::TlsStream as ClientStream;
/// A server's TLS stream over `Io`.
pub use tokio_rustls::server::TlsStream as ServerStream;

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why TLS could not be set up or a handshake failed.
///
/// Ask [`Error::is_certificate`] (the certificate was rejected: untrusted,
/// issued for another name, expired) or [`Error::is_timeout`] rather than
/// matching message text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A PEM file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },

    /// The PEM text holds no item of the kind needed (`"certificate"`,
    /// `"private key"`), or one that does not parse.
    #[error("no valid {what} in the PEM text")]
    Pem {
        /// What was looked for.
        what: &'static str,
    },

    /// rustls refused the configuration (a key that does not match the
    /// certificate, a CA that is not a valid certificate, ...).
    #[error("invalid TLS configuration: {0}")]
    Config(#[source] rustls::Error),

    /// The name to check the server's certificate against is neither a DNS
    /// name nor an IP address.
    #[error("invalid TLS server name {0:?}")]
    ServerName(String),

    /// Our end rejected the other end's certificate: not signed by a
    /// trusted CA ([`rustls::CertificateError::UnknownIssuer`]), issued for
    /// another name (`NotValidForName`), expired, ... The connection is
    /// closed.
    #[error("certificate rejected: {0:?}")]
    Certificate(rustls::CertificateError),

    /// The handshake failed otherwise: the other end is not speaking TLS
    /// (it closed, or sent something that is not a TLS record), it refused
    /// our certificate (an alert), or the socket failed.
    #[error("TLS handshake failed: {0}")]
    Handshake(#[source] io::Error),

    /// The handshake did not complete within the deadline (a plain client
    /// at a TLS server that waits for its reply, or a stalled peer).
    #[error("no TLS handshake within {0:?}")]
    Timeout(Duration),
}

impl Error {
    /// Whether the handshake ran out of time.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout(_))
    }

    /// Whether a certificate was rejected, by us ([`Error::Certificate`])
    /// or by the other end (its alert says so).
    pub fn is_certificate(&self) -> bool {
        match self {
            Error::Certificate(_) => true,
            Error::Handshake(e) => matches!(
                rustls_error(e),
                Some(rustls::Error::AlertReceived(
                    rustls::AlertDescription::BadCertificate
                        | rustls::AlertDescription::UnknownCA
                        | rustls::AlertDescription::CertificateExpired
                        | rustls::AlertDescription::CertificateUnknown
                ))
            ),
            _ => false,
        }
    }

    /// Whether the server's certificate is not signed by a CA we trust.
    pub fn is_unknown_issuer(&self) -> bool {
        matches!(
            self,
            Error::Certificate(rustls::CertificateError::UnknownIssuer)
        )
    }

    /// Whether the server's certificate was issued for another name than
    /// the one we checked it against.
    pub fn is_wrong_name(&self) -> bool {
        matches!(
            self,
            Error::Certificate(
                rustls::CertificateError::NotValidForName
                    | rustls::CertificateError::NotValidForNameContext { .. }
            )
        )
    }

    /// The handshake's error: a rejected certificate gets its own variant.
    fn handshake(e: io::Error) -> Error {
        match rustls_error(&e) {
            Some(rustls::Error::InvalidCertificate(cert)) => Error::Certificate(cert.clone()),
            _ => Error::Handshake(e),
        }
    }
}

/// The rustls error inside an I/O error from tokio-rustls, if it is one.
fn rustls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}

/// The crypto provider every config is built with: ring, so that building
/// needs only a C compiler (aws-lc-rs, rustls' default, also needs cmake).
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })
}

fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| Error::Pem {
            what: "certificate",
        })?;
    if certs.is_empty() {
        return Err(Error::Pem {
            what: "certificate",
        });
    }
    Ok(certs)
}

/// The server side: holds the certificate chain and key, and accepts TLS on
/// accepted connections. Cheap to clone (the configuration is shared).
#[derive(Clone)]
pub struct Acceptor {
    inner: tokio_rustls::TlsAcceptor,
}

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("tls::Acceptor")
    }
}

impl Acceptor {
    /// From a PEM certificate chain (the server's certificate first, then
    /// any intermediates) and its PEM private key (PKCS#8, PKCS#1 or SEC1).
    ///
    /// # Errors
    /// [`Error::Pem`] when either holds nothing usable; [`Error::Config`]
    /// when the key does not fit the certificate.
    pub fn from_pem(cert_chain: &[u8], key: &[u8]) -> Result<Acceptor> {
        let chain = certificates(cert_chain)?;
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|_| Error::Pem {
            what: "private key",
        })?;
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(Error::Config)?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(Error::Config)?;
        Ok(Self::from_rustls(Arc::new(config)))
    }

    /// [`Acceptor::from_pem`] with the PEM text read from two files.
    ///
    /// # Errors
    /// [`Error::Read`], then as [`Acceptor::from_pem`].
    pub fn from_pem_files(cert_chain: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<Acceptor> {
        Self::from_pem(&read(cert_chain.as_ref())?, &read(key.as_ref())?)
    }

    /// From a rustls configuration built by hand (client certificates,
    /// ALPN, ...).
    pub fn from_rustls(config: Arc<rustls::ServerConfig>) -> Acceptor {
        Acceptor {
            inner: tokio_rustls::TlsAcceptor::from(config),
        }
    }

    /// Runs the server's side of the handshake on `io`, within `deadline`.
    ///
    /// # Errors
    /// [`Error::Timeout`]; [`Error::Handshake`] (not TLS, our certificate
    /// refused, socket failed).
    pub async fn accept<Io>(&self, io: Io, deadline: Duration) -> Result<ServerStream<Io>>
    where
        Io: AsyncRead + AsyncWrite + Unpin,
    {
        match tokio::time::timeout(deadline, self.inner.accept(io)).await {
            Ok(done) => done.map_err(Error::handshake),
            Err(_) => Err(Error::Timeout(deadline)),
        }
    }
}

/// The client side: the CAs it trusts and, optionally, the name to check
/// the server's certificate against. Cheap to clone.
#[derive(Clone)]
pub struct Connector {
    inner: tokio_rustls::TlsConnector,
    server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("tls::Connector")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl Connector {
    /// Trusting the CA certificates in `ca` (PEM; a self-signed server
    /// certificate is its own CA).
    ///
    /// # Errors
    /// [`Error::Pem`] when it holds no certificate; [`Error::Config`] when
    /// one is not a usable CA certificate.
    pub fn from_ca_pem(ca: &[u8]) -> Result<Connector> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in certificates(ca)? {
            roots.add(cert).map_err(Error::Config)?;
        }
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(Error::Config)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self::from_rustls(Arc::new(config)))
    }

    /// [`Connector::from_ca_pem`] with the PEM text read from a file.
    ///
    /// # Errors
    /// [`Error::Read`], then as [`Connector::from_ca_pem`].
    pub fn from_ca_pem_file(ca: impl AsRef<Path>) -> Result<Connector> {
        Self::from_ca_pem(&read(ca.as_ref())?)
    }

    /// From a rustls configuration built by hand (the system's roots,
    /// client certificates, ...).
    pub fn from_rustls(config: Arc<rustls::ClientConfig>) -> Connector {
        Connector {
            inner: tokio_rustls::TlsConnector::from(config),
            server_name: None,
        }
    }

    /// Checks the server's certificate against `name` (a DNS name or an IP
    /// address) instead of the host of the address dialed. Needed when
    /// dialing an IP address whose certificate names a host.
    ///
    /// # Errors
    /// [`Error::ServerName`] when `name` is neither.
    pub fn server_name(mut self, name: &str) -> Result<Connector> {
        self.server_name = Some(parse_name(name)?);
        Ok(self)
    }

    /// Runs the client's side of the handshake on `io`, within `deadline`,
    /// checking the server's certificate against the name given to
    /// [`Connector::server_name`], or else the host of `addr` (`HOST:PORT`,
    /// `[IPv6]:PORT`, or a bare host).
    ///
    /// # Errors
    /// [`Error::ServerName`]; [`Error::Certificate`] when the server's
    /// certificate is not trusted or names another host;
    /// [`Error::Handshake`] when the server is not speaking TLS (it closes,
    /// or answers with something else); [`Error::Timeout`].
    pub async fn connect<Io>(
        &self,
        addr: &str,
        io: Io,
        deadline: Duration,
    ) -> Result<ClientStream<Io>>
    where
        Io: AsyncRead + AsyncWrite + Unpin,
    {
        let name = match &self.server_name {
            Some(name) => name.clone(),
            None => parse_name(host_of(addr))?,
        };
        match tokio::time::timeout(deadline, self.inner.connect(name, io)).await {
            Ok(done) => done.map_err(Error::handshake),
            Err(_) => Err(Error::Timeout(deadline)),
        }
    }
}

fn parse_name(name: &str) -> Result<ServerName<'static>> {
    ServerName::try_from(name.to_owned()).map_err(|_| Error::ServerName(name.to_owned()))
}

/// The host of `HOST:PORT` or `[IPv6]:PORT`; a string without a port is a
/// host already.
pub fn host_of(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(host, _)| host);
    }
    match addr.rsplit_once(':') {
        // One colon: HOST:PORT. More: a bare IPv6 address.
        Some((host, _)) if !host.contains(':') => host,
        _ => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn host_of_addresses() {
        assert_eq!(host_of("localhost:8080"), "localhost");
        assert_eq!(host_of("127.0.0.1:1"), "127.0.0.1");
        assert_eq!(host_of("[::1]:8080"), "::1");
        assert_eq!(host_of("::1"), "::1");
        assert_eq!(host_of("example.org"), "example.org");
    }
}

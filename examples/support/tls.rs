//! TLS flags of the examples (`--tls-cert`, `--tls-key`, `--tls-ca`,
//! `--tls-name`), shared by `echo_server`, `echo_client` and `http_hello`. Built without
//! the `tls` feature, asking for TLS is an error that says how to build
//! with it.
#![allow(dead_code)]

use std::path::Path;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The server with TLS on its listener when `cert` and `key` are given.
#[cfg(feature = "tls")]
pub(crate) fn server(
    server: enchufe::Server,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<enchufe::Server> {
    Ok(match (cert, key) {
        (Some(cert), Some(key)) => server.tls(enchufe::tls::Acceptor::from_pem_files(cert, key)?),
        (None, None) => server,
        _ => return Err("--tls-cert and --tls-key go together".into()),
    })
}

/// The HTTP server with TLS (HTTPS) when `cert` and `key` are given: the
/// same acceptor as the frame server's.
#[cfg(feature = "tls")]
pub(crate) fn http_server(
    server: enchufe::http::Server,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<enchufe::http::Server> {
    Ok(match (cert, key) {
        (Some(cert), Some(key)) => server.tls(enchufe::tls::Acceptor::from_pem_files(cert, key)?),
        (None, None) => server,
        _ => return Err("--tls-cert and --tls-key go together".into()),
    })
}

/// The client's config with TLS when `ca` is given, checking the server's
/// certificate against `name`, or else the host of the address dialed.
#[cfg(feature = "tls")]
pub(crate) fn client(
    config: enchufe::client::Config,
    ca: Option<&Path>,
    name: Option<&str>,
) -> Result<enchufe::client::Config> {
    let Some(ca) = ca else { return Ok(config) };
    let mut connector = enchufe::tls::Connector::from_ca_pem_file(ca)?;
    if let Some(name) = name {
        connector = connector.server_name(name)?;
    }
    Ok(config.tls(connector))
}

#[cfg(not(feature = "tls"))]
pub(crate) fn server(
    server: enchufe::Server,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<enchufe::Server> {
    refuse(cert.or(key)).map(|()| server)
}

#[cfg(not(feature = "tls"))]
pub(crate) fn http_server(
    server: enchufe::http::Server,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<enchufe::http::Server> {
    refuse(cert.or(key)).map(|()| server)
}

#[cfg(not(feature = "tls"))]
pub(crate) fn client(
    config: enchufe::client::Config,
    ca: Option<&Path>,
    _name: Option<&str>,
) -> Result<enchufe::client::Config> {
    refuse(ca).map(|()| config)
}

#[cfg(not(feature = "tls"))]
fn refuse(asked: Option<&Path>) -> Result<()> {
    match asked {
        Some(_) => {
            Err("built without TLS: run with `cargo run --features tls --example ...`".into())
        }
        None => Ok(()),
    }
}

//! Binding a listener the way the examples report it: `listening on
//! HOST:PORT` on stdout once bound (what scripts and tests wait for), or an
//! error that names the address.

use tokio::net::TcpListener;

/// A listener on `addr`, its address printed.
pub(crate) async fn bind(addr: &str) -> Result<TcpListener, String> {
    let listener = TcpListener::bind(addr).await;
    let listener = listener.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| format!("{addr}: {e}"))?;
    println!("listening on {local}");
    Ok(listener)
}

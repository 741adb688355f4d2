//! The chat example's `--web HOST:PORT`: a WebSocket listener on the same
//! server that also answers `GET /` with `support/chat.html`. Without the
//! `ws` feature, asking for it is an error that says how to build with it.

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The chat page (`GET /`), which joins over a WebSocket on the same port.
#[allow(dead_code)]
pub(crate) const PAGE: &str = include_str!("chat.html");

/// Adds the WebSocket listener (and the page) at `addr`, if given.
#[cfg(feature = "ws")]
pub(crate) async fn listen(server: enchufe::Server, addr: Option<&str>) -> Result<enchufe::Server> {
    Ok(match addr {
        Some(addr) => {
            server
                .ws(addr, enchufe::ws::Options::default().page(PAGE))
                .await?
        }
        None => server,
    })
}

#[cfg(not(feature = "ws"))]
pub(crate) async fn listen(server: enchufe::Server, addr: Option<&str>) -> Result<enchufe::Server> {
    match addr {
        Some(_) => Err(
            "built without WebSocket: run with `cargo run --features ws --example chat ...`".into(),
        ),
        None => Ok(server),
    }
}

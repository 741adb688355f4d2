//! The chat example's `--web`: the server's own port also answers `GET /`
//! with `support/chat.html` and takes its WebSocket. Without the
//! `ws` feature, asking for it is an error that says how to build with it.

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The chat page (`GET /`), which joins over a WebSocket on the same port.
#[allow(dead_code)]
pub(crate) const PAGE: &str = include_str!("chat.html");

/// Serves the page and the WebSocket on the server's own port, if asked.
#[cfg(feature = "ws")]
pub(crate) fn listen(server: enchufe::Server, web: bool) -> Result<enchufe::Server> {
    Ok(match web {
        true => server.web(enchufe::ws::Options::default().page(PAGE)),
        false => server,
    })
}

#[cfg(not(feature = "ws"))]
pub(crate) fn listen(server: enchufe::Server, web: bool) -> Result<enchufe::Server> {
    match web {
        true => Err(
            "built without WebSocket: run with `cargo run --features ws --example chat ...`".into(),
        ),
        false => Ok(server),
    }
}

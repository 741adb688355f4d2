//! An echo server in the plain profile: every frame goes back unchanged, as
//! raw bytes (no UTF-8 check, no copy), so any client that speaks the 4-byte
//! length prefix can use it as a test or benchmark target, the course's
//! Python `Client` included. Runs until Ctrl-C, then shuts down gracefully.
//!
//! ```text
//! cargo run --example echo_server -- --addr 127.0.0.1:8080
//! RUST_LOG=debug cargo run --example echo_server      # more detail per connection
//! ```
//!
//! Then, in another terminal: `cargo run --example echo_client`.

use std::convert::Infallible;
use std::io::IsTerminal;

use bytes::Bytes;
use clap::Parser;
use enchufe::{handler_fn, Server};
use tracing_subscriber::EnvFilter;

/// Sends every frame back unchanged.
#[derive(Parser)]
struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8080")]
    addr: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let args = Args::parse();

    let server = Server::bind(args.addr.as_str()).await?;
    tracing::info!(addr = %server.local_addr()?, "echo server ready; Ctrl-C to stop");

    // Request = Response = Bytes: the payload is handed back as it arrived.
    let echo = handler_fn(|frame: Bytes, _conn| async move { Ok::<_, Infallible>(Some(frame)) });

    // `run` wants a future of `()`; a failure to install the Ctrl-C handler
    // would otherwise stop the server at once, so it is logged instead.
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C; stopping");
        }
    };
    server.run(echo, ctrl_c).await;
    tracing::info!("echo server stopped");
    Ok(())
}

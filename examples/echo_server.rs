//! An echo server: every frame goes back unchanged, as raw bytes (no UTF-8
//! check, no copy), so any client of the 4-byte length prefix can use it as a
//! test or benchmark target. By default it serves both profiles on one port
//! (`Profile::Auto`: each connection's first frame tells), so the course's
//! Python `Client`, `echo_client` and enchufe's default (multiplexed) `Client`
//! all work with no flag; `--plain` or `--mux` serves only one (the
//! benchmarks, `cargo run --release -p enchufe-bench -- compare`, pin them).
//! It prints `listening on HOST:PORT` on stdout once bound (for scripts that
//! ask for port 0) and runs until Ctrl-C or SIGTERM, then stops gracefully.
//!
//! ```text
//! cargo run --example echo_server -- --addr 127.0.0.1:8080
//! cargo run --example echo_server -- --addr 127.0.0.1:0 --plain --max-connections 20000
//! cargo run --example echo_server -- --unix /tmp/echo.sock   # a Unix socket instead
//! RUST_LOG=debug cargo run --example echo_server      # more detail per connection
//! ```
//!
//! Over TLS (feature `tls`), with a dev certificate made by `make_cert`:
//!
//! ```text
//! cargo run --features tls --example make_cert -- --out target/dev-cert --name localhost
//! cargo run --features tls --example echo_server -- --tls-cert target/dev-cert/cert.pem --tls-key target/dev-cert/key.pem
//! cargo run --features tls --example echo_client -- --addr localhost:8080 --tls-ca target/dev-cert/ca.pem
//! ```

use std::convert::Infallible;

use bytes::Bytes;
use clap::Parser;
use enchufe::server::{Config, Profile};
use enchufe::{handler_fn, Server};

mod support;

/// Sends every frame back unchanged.
#[derive(Parser)]
struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8080")]
    addr: String,
    /// Most connections served at once (`server::Config::max_connections`).
    /// The server raises its open-file limit to match: soft to hard, and
    /// the hard limit too where it may (as root), up to `fs.nr_open`.
    #[arg(long, value_name = "N", default_value_t = Config::default().max_connections)]
    max_connections: usize,
    /// Serve only the multiplexed profile (hello, then request ids).
    #[arg(long, conflicts_with = "plain")]
    mux: bool,
    /// Serve only the plain profile (the course's: one frame, one message).
    #[arg(long)]
    plain: bool,
    /// Listen on a Unix domain socket at this path instead of `--addr`.
    #[arg(long, value_name = "PATH", conflicts_with = "addr")]
    unix: Option<std::path::PathBuf>,
    /// Serve TLS with this PEM certificate chain (with `--tls-key`; feature `tls`).
    #[arg(long, value_name = "PATH", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key of `--tls-cert`.
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> Result<(), support::report::Report> {
    support::log::init();
    let args = Args::parse();

    let profile = match (args.mux, args.plain) {
        (true, _) => Profile::Multiplexed,
        (_, true) => Profile::Plain,
        _ => Profile::Auto,
    };
    let config = Config::default()
        .max_connections(args.max_connections)
        .profile(profile);
    let (server, addr) = match &args.unix {
        Some(path) => (Server::bind_unix(path)?, path.display().to_string()),
        None => {
            let server = Server::bind(args.addr.as_str()).await?;
            let addr = server.local_addr()?.to_string();
            (server, addr)
        }
    };
    let server = support::tls::server(server, args.tls_cert.as_deref(), args.tls_key.as_deref())?;
    let server = server.with_config(config);
    // Stdout carries only this line (flushed: Rust's stdout is line-buffered).
    println!("listening on {addr}");
    // A descriptor per connection, and a few for the listener and logs.
    let open_files = support::nofile::raise(args.max_connections as u64 + 64);
    tracing::info!(%addr, ?profile, ?open_files, "echo server ready; Ctrl-C or SIGTERM to stop");

    // Request = Response = Bytes: the payload is handed back as it arrived.
    let echo = handler_fn(|frame: Bytes, _conn| async move { Ok::<_, Infallible>(Some(frame)) });
    server.run(echo, support::stop::signal()).await;
    if let Some(path) = &args.unix {
        let _ = std::fs::remove_file(path);
    }
    tracing::info!("echo server stopped");
    Ok(())
}

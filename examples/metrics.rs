//! An echo server whose counters and gauges Prometheus can scrape: the
//! `metrics` feature reports connections, frames and bytes each way,
//! dropped pushes and errors through the `metrics` facade, and
//! metrics-exporter-prometheus serves what was recorded at `/metrics`.
//!
//! ```text
//! cargo run --features metrics --example metrics -- --addr 127.0.0.1:8080 --metrics-addr 127.0.0.1:9000
//! printf 'hola\n' | cargo run --example echo_client -- --addr 127.0.0.1:8080   # some traffic
//! curl http://127.0.0.1:9000/metrics            # enchufe_received_frames_total{role="server"} 1 ...
//! ```
//!
//! Any other exporter works the same way: install it as the global recorder
//! before the server is built. Ctrl-C or SIGTERM stops it gracefully.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use clap::Parser;
use enchufe::{handler_fn, Server};
use metrics_exporter_prometheus::PrometheusBuilder;

mod support;

/// Echoes every frame; serves its metrics to Prometheus.
#[derive(Parser)]
struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8080")]
    addr: String,
    /// Address of the Prometheus endpoint (`GET /metrics`).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:9000")]
    metrics_addr: SocketAddr,
}

#[tokio::main]
async fn main() -> Result<(), support::report::Report> {
    support::log::init();
    let args = Args::parse();

    // The recorder first: the server takes its metric handles when built.
    // `install` starts the HTTP listener on this runtime.
    PrometheusBuilder::new()
        .with_http_listener(args.metrics_addr)
        .install()?;
    // Building the server registers its series, with their `# HELP` lines,
    // at zero: /metrics lists them before the first connection.
    let server = Server::bind(args.addr.as_str()).await?;
    tracing::info!(
        addr = %server.local_addr()?,
        metrics = %format!("http://{}/metrics", args.metrics_addr),
        "echo server ready; Ctrl-C or SIGTERM to stop"
    );
    let echo = handler_fn(|frame: Bytes, _conn| async move { Ok::<_, Infallible>(Some(frame)) });
    server.run(echo, support::stop::signal()).await;
    tracing::info!("stopped");
    Ok(())
}

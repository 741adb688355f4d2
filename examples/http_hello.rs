//! HTTP/1.1 over the same machinery: the course's web server, on enchufe's
//! connection driver with an HTTP codec in place of the length prefix. It
//! answers `GET` (and `HEAD`) with keep-alive, and `POST /eco` (or `PUT`,
//! as `curl -T` sends) with the request's body (`Content-Length` or
//! chunked, up to `--max-body`), over HTTPS with `--tls-cert`; a head over
//! 16 KiB or 64 headers gets `431`, one that is not HTTP `400`, one that
//! does not arrive whole within `--head-timeout` `408`, and then the
//! connection is closed. The handler is async:
//! `/lento/NAME` awaits a second before its reply, and one over
//! `--handler-timeout` is `503`. Prints `listening on HOST:PORT` on stdout
//! once bound; runs until Ctrl-C or SIGTERM.
//!
//! ```text
//! cargo run --example http_hello -- --addr 127.0.0.1:8080
//! curl -i http://127.0.0.1:8080/hola/mundo
//! curl -v http://127.0.0.1:8080/ http://127.0.0.1:8080/hola/otra   # one connection, two requests
//! curl http://127.0.0.1:8080/lento/ana & curl http://127.0.0.1:8080/hola/eva   # eva first
//! curl --data-binary @Cargo.toml http://127.0.0.1:8080/eco            # the file back
//! echo hola | curl -H 'Transfer-Encoding: chunked' -T - http://127.0.0.1:8080/eco
//! cargo run --example http_hello -- --handler-timeout 0.5   # then /lento/ana is 503
//! cargo run --example http_get -- --url http://127.0.0.1:8080/hola/mundo
//! # HTTPS (feature `tls`), with a dev certificate made by `make_cert`:
//! cargo run --features tls --example make_cert -- --out target/dev-cert --name localhost
//! cargo run --features tls --example http_hello -- --tls-cert target/dev-cert/cert.pem --tls-key target/dev-cert/key.pem
//! curl --cacert target/dev-cert/ca.pem https://localhost:8080/hola/mundo
//! ```

use std::io::Write;
use std::time::Duration;

use clap::Parser;
use enchufe::http::{handler_fn, Config, Request, Response, Server};

mod support;

/// Serves "hola" over HTTP/1.1.
#[derive(Parser)]
struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8080")]
    addr: String,
    /// Seconds a request head may take to arrive whole.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    head_timeout: f64,
    /// Seconds an idle keep-alive connection stays open.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    idle_timeout: f64,
    /// Seconds a request may take to answer (then `503`).
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    handler_timeout: f64,
    /// The longest request body `/eco` takes (then `413`).
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 30)]
    max_body: u64,
    /// Serve HTTPS with this PEM certificate chain (with `--tls-key`; feature `tls`).
    #[arg(long, value_name = "PATH", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key of `--tls-cert`.
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
}

/// The handler: what the course's `handle_command` is for HTTP, async.
/// `/lento/NAME` waits a second first (as a database query would): other
/// connections are served meanwhile, and past `--handler-timeout` it is `503`.
async fn hello(request: Request) -> Response {
    if matches!(request.method(), "POST" | "PUT") && request.path() == "/eco" {
        // Streamed back as it arrives: memory stays a few chunks whatever
        // the length (the server refuses a body over `--max-body`, 413).
        return Response::stream(200, request.body);
    }
    if request.method() != "GET" && request.method() != "HEAD" {
        return Response::text(405, "only GET and HEAD\n").header("Allow", "GET, HEAD");
    }
    let path = request.path();
    if path == "/" {
        return Response::text(200, "hola\n");
    }
    if let Some(name) = path.strip_prefix("/lento/") {
        tokio::time::sleep(Duration::from_secs(1)).await;
        return Response::text(200, format!("hola, {name}, sin prisa\n"));
    }
    match path.strip_prefix("/hola/") {
        Some(name) if !name.is_empty() => Response::text(200, format!("hola, {name}\n")),
        _ => Response::text(404, format!("no hay nada en {path}\n")),
    }
}

#[tokio::main]
async fn main() -> Result<(), support::report::Report> {
    support::log::init();
    let args = Args::parse();
    let config = Config::default()
        .head_timeout(Duration::try_from_secs_f64(args.head_timeout)?)
        .idle_timeout(Duration::try_from_secs_f64(args.idle_timeout)?)
        .handler_timeout(Some(Duration::try_from_secs_f64(args.handler_timeout)?))
        .max_body(args.max_body);
    let server = Server::bind(args.addr.as_str()).await?.with_config(config);
    let (cert, key) = (args.tls_cert.as_deref(), args.tls_key.as_deref());
    let server = support::tls::http_server(server, cert, key)?;
    let addr = server.local_addr()?;
    // Stdout carries only this line, for scripts and tests that bind port 0.
    println!("listening on {addr}");
    std::io::stdout().flush()?;
    tracing::info!(%addr, "http_hello ready: curl http://{addr}/hola/mundo; Ctrl-C to stop");
    server.run(handler_fn(hello), support::stop::signal()).await;
    tracing::info!("http_hello stopped");
    Ok(())
}

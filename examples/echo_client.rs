//! A line client like the course's `Client`: each stdin line goes out as one
//! text frame (a one-way `send`) while a task prints every message that
//! arrives (replies, greetings, pushes). At end of input (Ctrl-D, the end of a
//! pipe, Ctrl-C or SIGTERM) it half-closes and exits once the server has sent
//! all and closed. It speaks the plain profile, set in code, because it is the
//! course's client: it talks to the course's Python `Server` as well as to
//! `echo_server` (whose default serves both profiles). Its lines are one-way
//! messages, so nothing is paired with a request.
//!
//! ```text
//! cargo run --example echo_server                       # terminal 1
//! cargo run --example echo_client -- --addr 127.0.0.1:8080   # terminal 2
//! printf 'hola\nñandú\n' | cargo run --example echo_client   # non-interactive
//! cargo run --example echo_client -- --unix /tmp/echo.sock  # echo_server --unix
//! ```
//!
//! Over TLS (feature `tls`; see `echo_server`'s header for the server and
//! the certificate), trusting `ca.pem` and checking the host of `--addr`,
//! or `--tls-name`:
//!
//! ```text
//! cargo run --features tls --example echo_client -- --addr localhost:8080 --tls-ca target/dev-cert/ca.pem
//! cargo run --features tls --example echo_client -- --addr 127.0.0.1:8080 --tls-ca target/dev-cert/ca.pem --tls-name localhost
//! ```

use clap::Parser;
use enchufe::client::{Config, Error};
use enchufe::framing::Foreign;
use enchufe::{Client, Profile};

mod support;

use support::report::Report;

/// Sends stdin lines to a server and prints what it sends back.
#[derive(Parser)]
struct Args {
    /// Server to connect to.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8080")]
    addr: String,
    /// Connect to a Unix domain socket at this path instead of `--addr`.
    #[arg(long, value_name = "PATH", conflicts_with = "addr")]
    unix: Option<std::path::PathBuf>,
    /// Use TLS, trusting the CA certificate(s) in this PEM file (feature `tls`).
    #[arg(long, value_name = "PATH")]
    tls_ca: Option<std::path::PathBuf>,
    /// The name the server's certificate must carry (default: the host of `--addr`).
    #[arg(long, value_name = "NAME", requires = "tls_ca")]
    tls_name: Option<String>,
}

#[tokio::main]
async fn main() -> Result<(), Report> {
    support::log::init();
    let args = Args::parse();

    let config = support::tls::client(
        Config::default().profile(Profile::Plain),
        args.tls_ca.as_deref(),
        args.tls_name.as_deref(),
    )?;
    let client = match &args.unix {
        Some(path) => Client::connect_unix(path, config).await?,
        None => Client::connect_with(args.addr.as_str(), config).await?,
    };
    tracing::info!("connected; type lines, Ctrl-D to finish");

    // The course client's listening thread: it runs until the server closes.
    let listener = client.clone();
    let mut printer = tokio::spawn(async move {
        loop {
            match listener.recv::<String>().await {
                Ok(Some(msg)) => println!("{msg}"),
                Ok(None) => return Ok(()),
                // One message that is not text does not end the session.
                Err(enchufe::client::Error::Decode(e)) => tracing::warn!(error = %e, "skipped"),
                Err(e) => return Err(e),
            }
        }
    });

    let mut lines = support::stdin::lines();
    loop {
        tokio::select! {
            line = lines.next() => match line {
                Some(line) => client.send(line).await?,
                None => break, // end of input, Ctrl-C or SIGTERM
            },
            ended = &mut printer => return ended?.map_err(|e| explain(&args.addr, e)), // the server closed first
        }
    }

    // "I'm done sending": the server still answers what it has read, then
    // closes, and that close is what ends the printer.
    client.close().await?;
    tokio::select! {
        ended = printer => ended?.map_err(|e| explain(&args.addr, e))?,
        () = support::stop::signal() => {} // a second Ctrl-C: stop waiting
    }
    Ok(())
}

/// The error, with this program's flag for a server that speaks TLS.
fn explain(addr: &str, e: Error) -> Report {
    match e.looks_like() {
        Some(Foreign::Tls) => Report::context(format!("{addr} speaks TLS: add --tls-ca CA.pem"), e),
        _ => Report::context(addr, e),
    }
}

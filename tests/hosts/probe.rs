//! The two ends of `tests/hosts/partition.sh`: numbered servers and a
//! `MultiClient` that sends a numbered request to each of them every round
//! and prints one line per outcome, so a script can check, across real
//! network stacks, that nothing is lost or answered twice.
//!
//! ```text
//! cargo run --example partition_probe -- serve --addr 127.0.0.1:7100 --name s1
//! cargo run --example partition_probe -- client --server s1=127.0.0.1:7100 --silence-ms 500
//! ```
//! The server prints `got N` per request; the client prints `reply NAME N
//! BODY`, `error NAME N KIND` and `event NAME down|up`; both stop on
//! Ctrl-C or SIGTERM.

#[path = "../../examples/support/log.rs"]
mod log;
#[path = "../../examples/support/stop.rs"]
mod stop;

use std::convert::Infallible;
use std::time::Duration;

use clap::Parser;
use enchufe::client::{Backoff, Config, Error, Event, Reconnect};
use enchufe::{handler_fn, MultiClient, Profile, Server, ServerConfig};

#[derive(Parser)]
enum Args {
    /// Answers `NAME:N` to the request `N`, printing `got N`.
    Serve {
        #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8080")]
        addr: String,
        #[arg(long, default_value = "s1")]
        name: String,
    },
    /// Sends `0`, `1`, `2`... to each server, until stopped.
    Client {
        /// NAME=HOST:PORT; repeat for more.
        #[arg(long = "server", value_parser = parse_server, required = true)]
        servers: Vec<(String, String)>,
        #[arg(long, default_value_t = 50)]
        round_ms: u64,
        /// `Config::silence_timeout`: the deadline for reporting a cut server down.
        #[arg(long, default_value_t = 500)]
        silence_ms: u64,
    },
}

fn parse_server(s: &str) -> Result<(String, String), String> {
    let (name, addr) = s.split_once('=').ok_or("expected NAME=HOST:PORT")?;
    Ok((name.to_owned(), addr.to_owned()))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    log::init();
    match Args::parse() {
        Args::Serve { addr, name } => {
            let config = ServerConfig::default().profile(Profile::Multiplexed);
            let server = Server::bind(addr.as_str()).await?.with_config(config);
            let handler = handler_fn(move |n: String, _conn| {
                println!("got {n}");
                let reply = format!("{name}:{n}");
                async move { Ok::<_, Infallible>(Some(reply)) }
            });
            server.run(handler, stop::signal()).await;
        }
        Args::Client {
            servers,
            round_ms,
            silence_ms,
        } => {
            let backoff = Backoff::default()
                .max_delay(Duration::from_millis(300))
                .forever();
            let config = Config::default()
                .profile(Profile::Multiplexed)
                .connect_timeout(Duration::from_secs(1))
                .request_timeout(Duration::from_secs(2))
                .silence_timeout(Duration::from_millis(silence_ms))
                .reconnect(Reconnect::default().backoff(backoff));
            let multi = MultiClient::new(config);
            for (name, addr) in &servers {
                multi.add(name.clone(), addr.as_str()).await?;
            }
            let mut events = multi.events();
            tokio::spawn(async move {
                while let Ok((name, event)) = events.recv().await {
                    match event {
                        Event::Disconnected { .. } => println!("event {name} down"),
                        Event::Reconnected { .. } => println!("event {name} up"),
                        _ => {}
                    }
                }
            });
            // One numbered stream per server, so a server that is down
            // holds up only its own.
            let streams = servers.iter().map(|(name, _)| {
                let multi = &multi;
                async move {
                    for n in 0u64.. {
                        match multi.request::<_, String>(name, n.to_string()).await {
                            Ok(body) => println!("reply {name} {n} {body}"),
                            Err(e) => println!("error {name} {n} {}", kind(&e)),
                        }
                        tokio::time::sleep(Duration::from_millis(round_ms)).await;
                    }
                }
            });
            let rounds = futures::future::join_all(streams);
            tokio::select! {
                _ = rounds => {}
                () = stop::signal() => {}
            }
            multi.close().await;
        }
    }
    Ok(())
}

fn kind(e: &Error) -> &'static str {
    match e {
        Error::Timeout(_) => "timeout",
        Error::Silent => "silent",
        Error::Disconnected => "disconnected",
        e if e.is_connect() => "connect",
        e if e.is_closed() => "closed",
        _ => "other",
    }
}

//! The course's two-server example: run two named servers, then a client
//! that picks the target per line and prints who answered. `a: hola` goes to
//! `a`, `any: hola` to whichever the round robin picks, `*: hola` to every
//! connected server (one-way; each server logs it). Stop a server and start
//! it again: the client says so and finds it again on its own.
//!
//! ```text
//! cargo run --example multi_server -- serve --addr 127.0.0.1:8081 --name a   # terminal 1
//! cargo run --example multi_server -- serve --addr 127.0.0.1:8082 --name b   # terminal 2
//! printf 'a: hola\nb: hola\nany: hola\n*: hola\n' | cargo run --example multi_server -- \
//!     client --server a=127.0.0.1:8081 --server b=127.0.0.1:8082
//! ```

#[path = "support/log.rs"]
mod log;
#[path = "support/stdin.rs"]
mod stdin;
#[path = "support/stop.rs"]
mod stop;

use std::convert::Infallible;

use clap::Parser;
use enchufe::client::{Config, Event};
use enchufe::{handler_fn, MultiClient, Profile, Server};

#[derive(Parser)]
enum Args {
    /// Runs a named server until Ctrl-C or SIGTERM.
    Serve {
        /// Address to listen on.
        #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8080")]
        addr: String,
        /// The name it answers with.
        #[arg(long, default_value = "a")]
        name: String,
    },
    /// Reads `TARGET: text` lines from stdin (until its end, Ctrl-C or
    /// SIGTERM); TARGET is a name, `any` or `*`.
    Client {
        /// A server as NAME=HOST:PORT; repeat for more.
        #[arg(
            long = "server",
            value_name = "NAME=HOST:PORT",
            default_value = "a=127.0.0.1:8080"
        )]
        servers: Vec<String>,
    },
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    log::init();
    match Args::parse() {
        Args::Serve { addr, name } => {
            let server = Server::bind(addr.as_str()).await?;
            let config = enchufe::server::Config::default().profile(Profile::Multiplexed);
            let server = server
                .with_config(config)
                .serve(handler_fn(move |msg: String, _conn| {
                    tracing::info!("got {msg:?}");
                    let reply = format!("{name} got {msg}");
                    async move { Ok::<_, Infallible>(Some(reply)) }
                }));
            tracing::info!(addr = %server.local_addr(), "serving; Ctrl-C or SIGTERM to stop");
            stop::signal().await;
            server.shutdown().await;
        }
        Args::Client { servers } => {
            let multi = MultiClient::new(Config::default().profile(Profile::Multiplexed));
            let mut events = multi.events();
            tokio::spawn(async move {
                while let Ok((who, event)) = events.recv().await {
                    if let Event::Disconnected { error } = event {
                        println!("[{who}] down: {error}");
                    } else if let Event::Reconnected { .. } = event {
                        println!("[{who}] back");
                    }
                }
            });
            for server in servers {
                let (name, addr) = server.split_once('=').ok_or("expected NAME=HOST:PORT")?;
                multi.add(name.to_owned(), addr).await?;
            }
            let mut lines = stdin::lines();
            loop {
                let line = tokio::select! {
                    line = lines.recv() => match line { Some(line) => line, None => break },
                    () = stop::signal() => break,
                };
                let Some((target, text)) = line.split_once(':') else {
                    println!("expected TARGET: text");
                    continue;
                };
                let (target, text) = (target.trim(), text.trim());
                let answer = match target {
                    "*" => multi
                        .broadcast(text)
                        .await
                        .map(|n| format!("[*] sent to {n}")),
                    "any" => multi
                        .request_any::<_, String>(text)
                        .await
                        .map(|(who, r)| format!("[{who}] {r}")),
                    key => multi
                        .request::<_, String>(&key.to_owned(), text)
                        .await
                        .map(|r| format!("[{key}] {r}")),
                };
                match answer {
                    Ok(line) => println!("{line}"),
                    Err(e) => println!("[{target}] error: {e}"),
                }
            }
            multi.close().await;
        }
    }
    Ok(())
}

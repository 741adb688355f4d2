//! The course's two-server example: two named servers, and a client that
//! sends each line where it says and prints who answered: `a: hola` to `a`,
//! `any: hola` to the next in turn, `*: hola` to all (one-way; each logs it).
//! Stop a server and start it again: the client says so and finds it again.
//!
//! ```text
//! cargo run --example multi_server -- serve --addr 127.0.0.1:8081 --name a   # terminal 1
//! cargo run --example multi_server -- serve --addr 127.0.0.1:8082 --name b   # terminal 2
//! printf 'a: hola\nb: hola\nany: hola\n*: hola\n' | cargo run --example multi_server -- \
//!     client --server a=127.0.0.1:8081 --server b=127.0.0.1:8082
//! ```

mod support;

use std::convert::Infallible;

use clap::Parser;
use enchufe::client::{Error, Event};
use enchufe::{handler_fn, MultiClient, Server};

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
    /// Sends stdin's `TARGET: text` lines; TARGET is a name, `any` or `*`.
    Client {
        /// A server as NAME=HOST:PORT; repeat for more.
        #[arg(long, value_name = "NAME=ADDR", default_value = "a=127.0.0.1:8080")]
        server: Vec<String>,
    },
}

#[tokio::main]
async fn main() -> Result<(), support::report::Report> {
    support::log::init();
    match Args::parse() {
        Args::Serve { addr, name } => {
            let server = Server::bind(addr.as_str()).await?;
            tracing::info!(addr = %server.local_addr()?, "serving; Ctrl-C or SIGTERM to stop");
            let handler = handler_fn(move |msg: String, _conn| {
                tracing::info!("got {msg:?}");
                let reply = format!("{name} got {msg}");
                async move { Ok::<_, Infallible>(Some(reply)) }
            });
            server.run(handler, support::stop::signal()).await;
        }
        Args::Client { server } => client(server).await?,
    }
    Ok(())
}

async fn client(servers: Vec<String>) -> Result<(), Box<dyn std::error::Error>> {
    let multi = MultiClient::new(Default::default());
    let mut events = multi.events();
    tokio::spawn(async move {
        while let Ok((who, event)) = events.recv().await {
            match event {
                Event::Disconnected { error } => println!("[{who}] down: {error}"),
                Event::Reconnected { .. } => println!("[{who}] back"),
                _ => {}
            }
        }
    });
    for server in servers {
        let (name, addr) = server.split_once('=').ok_or("expected NAME=HOST:PORT")?;
        multi.add(name.to_owned(), addr).await?;
    }
    let mut lines = support::stdin::lines();
    while let Some(line) = lines.next().await {
        let Some((target, text)) = line.split_once(':') else {
            println!("expected TARGET: text");
            continue;
        };
        match ask(&multi, target.trim(), text.trim()).await {
            Ok((who, reply)) => println!("[{who}] {reply}"),
            Err(e) => println!("[{}] error: {e}", target.trim()),
        }
    }
    multi.close().await;
    Ok(())
}

/// Sends `text` to `to` (a name, `any` or `*`); says who answered, and what.
async fn ask(multi: &MultiClient<String>, to: &str, text: &str) -> Result<(String, String), Error> {
    let reply = match to {
        "*" => format!("sent to {}", multi.broadcast(text).await?),
        "any" => return multi.request_any(text).await,
        name => multi.request(&name.to_owned(), text).await?,
    };
    Ok((to.to_owned(), reply))
}

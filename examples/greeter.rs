//! The course's greeting server: it greets each client by its address as it
//! connects (a push from `Handler::on_connect`), answers every line with the
//! action it triggers, and stops once `--clients N` clients have come and gone.
//!
//! ```text
//! cargo run --example greeter -- --addr 127.0.0.1:8080 --clients 2   # terminal 1
//! printf 'saltar\ncorrer\n' | cargo run --example echo_client        # twice
//! ```

mod support;

use std::convert::Infallible;

use clap::Parser;
use enchufe::server::Disconnect;
use enchufe::{Connection, Handler, Server};
use tokio::sync::watch;

/// Greets clients and answers their commands; stops after N clients.
#[derive(Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8080")]
    addr: String,
    /// Stop after this many clients have connected and left (or on Ctrl-C).
    #[arg(long, default_value_t = 3)]
    clients: usize,
}

struct Greeter {
    /// How many clients have left; the main task waits on it.
    left: watch::Sender<usize>,
}

impl Handler for Greeter {
    type Request = String;
    type Response = String;
    type Error = Infallible;

    async fn on_connect(&self, conn: &Connection) {
        let hello = format!("¡Bienvenido, {}! ({})", conn.peer_addr(), conn.id());
        if let Err(e) = conn.push(hello).await {
            tracing::warn!(error = %e, "greeting not sent");
        }
    }

    async fn handle(&self, cmd: String, _conn: &Connection) -> Result<Option<String>, Infallible> {
        Ok(Some(format!("Ejecutando la acción de «{}»", cmd.trim())))
    }

    // The server has already logged the reason (the `closed` event).
    async fn on_disconnect(&self, _conn: &Connection, _reason: &Disconnect) {
        self.left.send_modify(|left| *left += 1);
    }
}

#[tokio::main]
async fn main() -> Result<(), support::report::Report> {
    support::log::init();
    let args = Args::parse();

    let (left, mut left_rx) = watch::channel(0);
    let greeter = Greeter { left };
    let server = Server::bind(args.addr.as_str()).await?.serve(greeter);
    tracing::info!(addr = %server.local_addr(), clients = args.clients, "greeter ready");

    tokio::select! {
        Ok(_) = left_rx.wait_for(|&n| n >= args.clients) => tracing::info!("all clients left"),
        () = support::stop::signal() => {}
    }
    server.shutdown().await;
    Ok(())
}

//! Requests in flight at once on one connection (the multiplexed profile,
//! the clients' default), answered out of order yet each matched to its
//! request, with pushes kept apart from replies. One program that exits by
//! itself (CI runs it, after `demo`); `--addr` defaults to `127.0.0.1:0` (a
//! free port).
//!
//! ```text
//! cargo run --example multiplexed
//! cargo run --example multiplexed -- --addr 127.0.0.1:9000
//! ```

mod support;

use std::time::Duration;

use clap::Parser;
use enchufe::server::Profile;
use enchufe::{handler_fn, Client, Connection, Server};
use futures::future::try_join_all;
use futures::TryStreamExt;

#[derive(Parser)]
struct Args {
    /// Address for the server (port 0 picks a free one).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:0")]
    addr: String,
}

/// Requests in flight at once on the one connection.
const TASKS: u64 = 4;

#[tokio::main]
async fn main() -> Result<(), support::report::Report> {
    support::log::init();
    let args = Args::parse();
    // A bug must fail CI quickly instead of hanging it.
    tokio::time::timeout(Duration::from_secs(5), run(&args.addr)).await??;
    Ok(())
}

async fn run(addr: &str) -> Result<(), Box<dyn std::error::Error>> {
    let config = enchufe::server::Config::default().profile(Profile::Multiplexed);
    let server = Server::bind(addr).await?.with_config(config);
    let server = server.serve(handler_fn(|task: String, conn: Connection| {
        let nth = conn.with_state(|n: &mut u64| {
            *n += 1;
            *n
        });
        async move {
            // Handlers run concurrently; the first to arrive answers last,
            // each after a push that the server sends 10 ms before the reply.
            tokio::time::sleep(Duration::from_millis(30 * (TASKS - nth))).await;
            let pushed = conn.push(format!("aviso: «{task}» casi lista")).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
            pushed.map(|()| Some(format!("«{task}» hecha (llegó {nth}ª)")))
        }
    }));
    let config = enchufe::client::Config::default().profile(Profile::Multiplexed);
    let client = Client::connect_with(server.local_addr(), config).await?;
    println!("server on {}", server.local_addr());

    // Clones of one client: one connection, requests in flight at once, by id.
    let asking = async {
        try_join_all((1..=TASKS).map(|i| {
            let client = client.clone();
            async move {
                let reply: String = client.request(format!("tarea {i}")).await?;
                println!("reply to tarea {i}: {reply}");
                assert!(reply.starts_with(&format!("«tarea {i}»")), "not its reply");
                Ok::<_, enchufe::client::Error>(())
            }
        }))
        .await?;
        client.close().await // everything answered: the server may close
    };
    // Push frames only: a reply never passes for a push, nor a push for a reply.
    let listening = client
        .pushes::<String>()
        .try_fold(0, |pushes, push| async move {
            println!("push: {push}");
            Ok(pushes + 1)
        });
    let (_, pushes) = tokio::try_join!(asking, listening)?;
    assert_eq!(pushes, TASKS);
    server.shutdown().await;
    println!("multiplexed: {TASKS} replies out of order, each to its request; {pushes} pushes");
    Ok(())
}

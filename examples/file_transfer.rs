//! Sends a file to a receiver: verified with XXH3-128, resumable, with a
//! progress bar on both ends (hidden when stderr is not a terminal).
//!
//! ```sh
//! cargo run --example file_transfer -- recv --addr 127.0.0.1:8080 --out /tmp/in
//! cargo run --example file_transfer -- send --addr 127.0.0.1:8080 --file informe.pdf
//! ```
//!
//! `recv` serves until Ctrl-C or SIGTERM, or exits 0 after `--count N`
//! transfers; `send` exits 0 once the receiver confirmed the file (run it
//! again after a cut and it resumes). With `--course` on both, they speak
//! the course's improved protocol instead: a 4-byte big-endian size, the
//! raw body, and `Gracias.` back (`--max-size` bounds what `recv` accepts).
//! The course's Python sender and receiver are the other end as well.

mod support;

use std::path::PathBuf;

use clap::Parser;
use enchufe::transfer::{course, Event, Receiver, Upload};
use enchufe::{Client, Server};
use support::progress;
use tokio::net::{TcpListener, TcpStream};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

#[derive(Parser)]
enum Cli {
    /// Receives files into a directory.
    Recv(RecvArgs),
    /// Sends one file.
    Send(SendArgs),
}

#[derive(clap::Args)]
struct RecvArgs {
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8080")]
    addr: String,
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Exit 0 after this many files.
    #[arg(long, value_name = "N")]
    count: Option<usize>,
    #[arg(long)]
    course: bool,
    /// `--course`: the largest size accepted, in bytes.
    #[arg(long, default_value_t = 1 << 30)]
    max_size: u64,
}

#[derive(clap::Args)]
struct SendArgs {
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8080")]
    addr: String,
    #[arg(long, value_name = "PATH")]
    file: PathBuf,
    #[arg(long)]
    course: bool,
}

#[tokio::main]
async fn main() -> Result<()> {
    support::log::init();
    match Cli::parse() {
        Cli::Recv(args) if args.course => recv_course(args).await,
        Cli::Recv(args) => recv(args).await,
        Cli::Send(args) if args.course => send_course(args).await,
        Cli::Send(args) => send(args).await,
    }
}

/// A `Receiver` is the server's handler; its events tell how each file goes.
async fn recv(args: RecvArgs) -> Result<()> {
    let receiver = Receiver::new(&args.out, Default::default());
    let mut events = receiver.events();
    let server = Server::bind(&args.addr).await?.serve(receiver.clone());
    println!("listening on {}", server.local_addr());
    let received = async {
        let mut done = 0;
        while args.count != Some(done) {
            match events.recv().await {
                Ok(Event::Started { name, progress, .. }) => drop(progress::show(name, progress)),
                Ok(Event::Finished {
                    path, size, hash, ..
                }) => {
                    println!(
                        "received {} ({size} bytes, xxh3-128 {hash})",
                        path.display()
                    );
                    done += 1;
                }
                Ok(Event::Failed { name, error, .. }) => eprintln!("{name}: {error}"),
                _ => {}
            }
        }
    };
    tokio::select! { () = received => {}, () = support::stop::signal() => {} }
    server.shutdown().await;
    receiver.shutdown().await;
    Ok(())
}

/// An `Upload` resumes where the receiver's copy ends.
async fn send(args: SendArgs) -> Result<()> {
    let client = Client::connect(&args.addr).await?;
    let upload = Upload::file(&args.file).await?;
    progress::show(progress::name_of(&args.file), upload.progress());
    tokio::select! {
        r = upload.send(&client) => {
            let r = r?;
            println!("sent {} ({} bytes, xxh3-128 {}, resumed from {})", r.name, r.size, r.hash, r.resumed_from);
        }
        () = support::stop::signal() => return Err("interrupted: send again to resume".into()),
    }
    Ok(())
}

/// The course's receiver: one sender at a time, each body into `recibido-N.bin`.
async fn recv_course(args: RecvArgs) -> Result<()> {
    let listener = TcpListener::bind(&args.addr).await?;
    println!("listening on {}", listener.local_addr()?);
    let config = course::Config::default().max_size(args.max_size);
    let received = async {
        let mut done = 0;
        for n in 1.. {
            if args.count == Some(done) {
                break;
            }
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let name = format!("recibido-{n}.bin");
            let bar = progress::Bar::new(name.clone());
            let progress = Some(bar.sender());
            match course::receive(&mut stream, &args.out, &name, &config, progress).await {
                Ok((path, size)) => {
                    println!("received {} ({size} bytes)", path.display());
                    done += 1;
                }
                Err(e) => eprintln!("transfer {n}: {e}"),
            }
            bar.finish().await;
        }
    };
    tokio::select! { () = received => {}, () = support::stop::signal() => {} }
    Ok(())
}

/// The course's sender: the size, the body, then the receiver's thanks.
async fn send_course(args: SendArgs) -> Result<()> {
    let mut stream = TcpStream::connect(&args.addr).await?;
    let file = tokio::fs::File::open(&args.file).await?;
    let size = file.metadata().await?.len();
    let bar = progress::Bar::new(progress::name_of(&args.file));
    let config = course::Config::default();
    let reply = course::send(&mut stream, file, size, &config, Some(bar.sender())).await?;
    bar.finish().await;
    println!("Respuesta: {}", String::from_utf8_lossy(&reply));
    if reply != course::THANKS {
        return Err("the receiver did not confirm".into());
    }
    Ok(())
}

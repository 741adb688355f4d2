//! Structured messages with serde: a client sends a student record as
//! `Json<Student>`, the server fills in the average and the verdict, the
//! client checks the reply. Both run in one process, which exits when done.
//!
//! ```text
//! cargo run --example json -- --addr 127.0.0.1:0    # port 0: any free port
//! cargo run --example json                          # 127.0.0.1:8080
//! ```

mod support;

use std::convert::Infallible;

use clap::Parser;
use enchufe::{handler_fn, Client, Json, Server};
use serde::{Deserialize, Serialize};

/// Runs a JSON server and one client against it.
#[derive(Parser)]
struct Args {
    /// Address for the server (port 0 picks a free one).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8080")]
    addr: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Student {
    name: String,
    grades: Vec<u8>,
    /// Filled in by the server.
    average: Option<f64>,
    passed: bool,
}

#[tokio::main]
async fn main() -> Result<(), support::report::Report> {
    support::log::init();
    let args = Args::parse();

    // A frame that is not a valid Student closes that connection (see Handler).
    let server = Server::bind(args.addr.as_str()).await?.serve(handler_fn(
        |Json(mut student): Json<Student>, _conn| async move {
            let sum: f64 = student.grades.iter().map(|&g| f64::from(g)).sum();
            let average = sum / student.grades.len().max(1) as f64;
            student.average = Some(average);
            student.passed = average >= 5.0;
            Ok::<_, Infallible>(Some(Json(student)))
        },
    ));
    println!("server listening on {}", server.local_addr());

    let client = Client::connect(server.local_addr()).await?;
    let record = Student {
        name: "Ana Núñez".into(),
        grades: vec![7, 9, 8],
        average: None,
        passed: false,
    };
    println!("sent:     {}", serde_json::to_string(&record)?);
    let Json(graded): Json<Student> = client.request(Json(record.clone())).await?;
    println!("received: {}", serde_json::to_string(&graded)?);
    assert_eq!(graded.average, Some(8.0));
    assert!(graded.passed);
    assert_eq!(
        (&graded.name, &graded.grades),
        (&record.name, &record.grades)
    );

    // Half-close, let the server finish and close its side, then stop it.
    client.close().await?;
    while client.recv::<Json<Student>>().await?.is_some() {}
    server.shutdown().await;
    Ok(())
}

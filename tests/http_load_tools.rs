//! The HTTP load tools people point at a server, against the `http_hello`
//! example: ApacheBench (`ab -k`, keep-alive) and h2load (`--h1`), 2,000
//! requests over 16 connections each, with 0 failures. `scripts/setup`
//! installs them; without them the test says SKIPPED and passes.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::bounded;
use common::examples::built_examples;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Whether `tool` runs here; a test without it says so loudly.
async fn has(tool: &str, version_flag: &str) -> bool {
    let found = Command::new(tool)
        .arg(version_flag)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok();
    if !found {
        eprintln!("SKIPPED: {tool} is not installed (scripts/setup installs it)");
    }
    found
}

/// The repository's root, where the examples are built.
fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `http_hello` on 127.0.0.1:0, and its address.
async fn start() -> (Child, String) {
    let bin = tokio::task::spawn_blocking(|| built_examples(root()).join("http_hello"))
        .await
        .unwrap();
    let mut child = Command::new(bin)
        .args(["--addr", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next_line().await.unwrap().expect("listening line");
    let addr = line.strip_prefix("listening on ").expect("listening line");
    (child, addr.to_owned())
}

/// Runs `tool args` to its end (at most a minute); its stdout.
async fn run(tool: &str, args: &[&str]) -> String {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new(tool).args(args).kill_on_drop(true).output(),
    )
    .await
    .unwrap_or_else(|_| panic!("{tool} ran over a minute"))
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{tool}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The number after `label` on the line that starts with it (`ab`'s
/// report: `Failed requests:        0`).
fn field(report: &str, label: &str) -> u64 {
    let line = report
        .lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label:?} in:\n{report}"));
    let number = line.split_whitespace().next().unwrap_or_default();
    number
        .parse()
        .unwrap_or_else(|_| panic!("{label:?} {line:?}"))
}

#[tokio::test]
async fn apache_bench_keep_alive_has_no_failures() {
    if !has("ab", "-V").await {
        return;
    }
    let (_server, addr) = start().await;
    bounded(async {
        let url = format!("http://{addr}/hola/ab");
        let report = run("ab", &["-n", "2000", "-c", "16", "-k", "-q", &url]).await;
        assert_eq!(field(&report, "Complete requests:"), 2000, "{report}");
        assert_eq!(field(&report, "Failed requests:"), 0, "{report}");
        assert_eq!(field(&report, "Keep-Alive requests:"), 2000, "{report}");
        assert!(!report.contains("Non-2xx responses"), "{report}");
        // Each reply is `hola, ab\n`.
        assert_eq!(field(&report, "Document Length:"), 9, "{report}");
    })
    .await;
}

#[tokio::test]
async fn h2load_over_http1_has_no_failures() {
    if !has("h2load", "--version").await {
        return;
    }
    let (_server, addr) = start().await;
    bounded(async {
        let url = format!("http://{addr}/hola/h2load");
        let report = run("h2load", &["--h1", "-n", "2000", "-c", "16", &url]).await;
        // `requests: 2000 total, 2000 started, 2000 done, 2000 succeeded,
        // 0 failed, 0 errored, 0 timeout`
        let requests = report
            .lines()
            .find(|l| l.starts_with("requests:"))
            .unwrap_or_else(|| panic!("no requests line in:\n{report}"));
        for want in ["2000 succeeded", " 0 failed", " 0 errored", " 0 timeout"] {
            assert!(requests.contains(want), "{requests}\n{report}");
        }
        let codes = report
            .lines()
            .find(|l| l.starts_with("status codes:"))
            .unwrap_or_else(|| panic!("no status codes line in:\n{report}"));
        assert!(codes.contains("2000 2xx"), "{codes}");
    })
    .await;
}

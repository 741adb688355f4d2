//! Helpers shared by the interop tests, which drive Python scripts under
//! `tests/interop/` against enchufe.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

/// Upper bound for every interop test, start to finish.
pub const TEST_LIMIT: Duration = Duration::from_secs(60);
/// Passed to the Python scripts as `--timeout` when a run should succeed.
pub const SCRIPT_TIMEOUT: &str = "30";
/// Bound for polling a condition on the enchufe server.
pub const POLL_LIMIT: Duration = Duration::from_secs(20);

/// Runs a test body under [`TEST_LIMIT`], naming the test if it overruns.
pub async fn bounded(name: &str, body: impl Future<Output = ()>) {
    if tokio::time::timeout(TEST_LIMIT, body).await.is_err() {
        panic!("{name}: did not finish within {TEST_LIMIT:?}");
    }
}

/// The path of a script under `tests/interop/`, which must exist.
pub fn script(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("interop")
        .join(name);
    assert!(path.is_file(), "missing interop script {}", path.display());
    path
}

/// At least `bytes` bytes of repeated non-ASCII text (2- and 4-byte UTF-8
/// sequences mixed with ASCII), tagged so different callers differ.
pub fn big_text(tag: &str, bytes: usize) -> String {
    let unit = format!("ñandú 🦀 añoranza {tag} ");
    let text = unit.repeat(bytes.div_ceil(unit.len()));
    assert!(text.len() >= bytes);
    text
}

/// Equality for strings that may be megabytes long: on failure, says where
/// they first differ instead of printing both.
pub fn assert_same_text(actual: &str, expected: &str, what: &str) {
    if actual == expected {
        return;
    }
    let at = actual
        .bytes()
        .zip(expected.bytes())
        .position(|(a, b)| a != b)
        .unwrap_or_else(|| actual.len().min(expected.len()));
    let show = |s: &str| {
        let bytes = &s.as_bytes()[at.min(s.len())..(at + 40).min(s.len())];
        String::from_utf8_lossy(bytes).into_owned()
    };
    panic!(
        "{what}: texts differ (actual {} bytes, expected {} bytes); first \
         difference at byte {at}: actual {:?}..., expected {:?}...",
        actual.len(),
        expected.len(),
        show(actual),
        show(expected),
    );
}

/// Polls `cond` until it holds, bounded by [`POLL_LIMIT`].
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let poll = async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    if tokio::time::timeout(POLL_LIMIT, poll).await.is_err() {
        panic!("gave up waiting for {what}");
    }
}

/// Spawns `python3 <script> <args>` with stdout and stderr piped, killed if
/// the test drops it. Fails loudly if `python3` is not available.
pub fn spawn_python(script_name: &str, args: &[&str]) -> Child {
    let path = script(script_name);
    Command::new("python3")
        .arg(&path)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                panic!(
                    "python3 was not found on PATH ({e}); the interop tests need \
                     Python 3 to run {}",
                    path.display()
                );
            }
            panic!("cannot start python3 {}: {e}", path.display());
        })
}

//! Examples run as their own processes by tests: built (or found fresh)
//! with the features the test was built with, so cargo reuses the library
//! the test already built. Included with `#[path]` by the tests that need
//! it.

use std::path::PathBuf;

/// The example `name`, built (or found fresh) with the features this test
/// was built with. Blocking: call it outside the test's time limit (a
/// cold build takes minutes).
pub(crate) fn example(name: &str) -> PathBuf {
    let features: Vec<&str> = [
        ("msgpack", cfg!(feature = "msgpack")),
        ("postcard", cfg!(feature = "postcard")),
        ("tls", cfg!(feature = "tls")),
        ("ws", cfg!(feature = "ws")),
        ("sim", cfg!(feature = "sim")),
        ("tower", cfg!(feature = "tower")),
        ("metrics", cfg!(feature = "metrics")),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["build", "--quiet", "--example", name])
        .args(["--no-default-features", "--features", &features.join(",")])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cannot run cargo");
    assert!(status.success(), "cargo build --example {name} failed");
    // Beside this test's binary: target/<profile>/deps/../examples.
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap();
    let bin = bin.join("examples").join(name);
    assert!(bin.is_file(), "no {}", bin.display());
    bin
}

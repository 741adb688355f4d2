//! The examples' binaries, for tests that run them as a user would.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};

/// Builds every example of the workspace with every feature and returns the
/// directory holding their binaries (`target/<profile>/examples`).
///
/// This is the build `cargo test --workspace --all-features` (scripts/test)
/// has already made, so there cargo only checks it and links nothing new;
/// any other feature set would compile half the workspace again. The
/// command runs with the environment a shell has: `cargo test` gives a test
/// its package's variables, and ring's build script (and with it half the
/// workspace) reruns when they change.
pub fn built_examples(root: &Path) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = std::process::Command::new(cargo);
    let all = ["--workspace", "--all-features", "--examples"];
    build.args(["build", "--quiet"]).args(all).current_dir(root);
    let package = [
        "CARGO_PKG_",
        "CARGO_MANIFEST_",
        "CARGO_CRATE_",
        "CARGO_PRIMARY_",
    ];
    for (name, _) in std::env::vars() {
        if package.iter().any(|p| name.starts_with(p)) || name == "CARGO_TARGET_TMPDIR" {
            build.env_remove(name);
        }
    }
    let status = build.status().expect("cannot run cargo");
    assert!(
        status.success(),
        "cargo build --workspace --all-features --examples failed"
    );
    // Beside the test's binary: target/<profile>/deps/../examples.
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("examples")
}

//! Makes a development CA and a server certificate signed by it (rcgen), as
//! PEM files, to try TLS by hand: `ca.pem` (what clients trust), `cert.pem`
//! and `key.pem` (what the server serves). The certificate names `--name`
//! (repeatable; DNS names or IP addresses). Not for production: the CA's
//! key is thrown away and nothing expires soon.
//!
//! ```text
//! cargo run --features tls --example make_cert -- --out target/dev-cert --name localhost --name 127.0.0.1
//! cargo run --features tls --example echo_server -- --tls-cert target/dev-cert/cert.pem --tls-key target/dev-cert/key.pem
//! cargo run --features tls --example echo_client -- --addr localhost:8080 --tls-ca target/dev-cert/ca.pem
//! ```

use std::path::PathBuf;

use clap::Parser;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

mod support;

use support::report::Report;

/// Writes ca.pem, cert.pem and key.pem into a directory.
#[derive(Parser)]
struct Args {
    /// Directory to write into (created if missing).
    #[arg(long, value_name = "DIR", default_value = "target/dev-cert")]
    out: PathBuf,
    /// A name the certificate is valid for (DNS name or IP address).
    #[arg(long, value_name = "NAME", default_value = "localhost")]
    name: Vec<String>,
}

fn main() -> Result<(), Report> {
    let args = Args::parse();
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "enchufe development CA");
    let ca_key = KeyPair::generate()?;
    let ca = ca_params.self_signed(&ca_key)?;

    let key = KeyPair::generate()?;
    let cert = CertificateParams::new(args.name.clone())?.signed_by(&key, &ca, &ca_key)?;

    std::fs::create_dir_all(&args.out)
        .map_err(|e| Report::context(format!("cannot create {}", args.out.display()), e))?;
    for (file, pem) in [
        ("ca.pem", ca.pem()),
        ("cert.pem", cert.pem()),
        ("key.pem", key.serialize_pem()),
    ] {
        let path = args.out.join(file);
        std::fs::write(&path, pem)
            .map_err(|e| Report::context(format!("cannot write {}", path.display()), e))?;
    }
    println!(
        "wrote ca.pem, cert.pem, key.pem to {} for {}",
        args.out.display(),
        args.name.join(", ")
    );
    Ok(())
}

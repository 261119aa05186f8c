//! `amqps://` end to end: RabbitMQ here listens for plain AMQP on
//! 127.0.0.1:5672 only, so the test puts a TLS terminator of its own (built
//! on chatctl's own TLS loading) in front of it and runs `rabbit-check`
//! through it, trusting the test's CA via SSL_CERT_FILE. Skipped when no
//! broker answers on 5672 (a failure when CHATCTL_TEST_AMQP_URL is set).

mod common;

use std::sync::Arc;

use chatctl::config::TlsFiles;
use chatctl::http::tls::Tls;
use common::certs::Ca;
use tokio::net::{TcpListener, TcpStream};

const BROKER: &str = "127.0.0.1:5672";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbit_check_connects_over_amqps() {
    if TcpStream::connect(BROKER).await.is_err() {
        // CI sets CHATCTL_TEST_AMQP_URL and starts the broker: there this is a failure.
        assert!(
            std::env::var_os("CHATCTL_TEST_AMQP_URL").is_none(),
            "CHATCTL_TEST_AMQP_URL is set but no RabbitMQ answers at {BROKER}"
        );
        eprintln!("SKIPPED rabbit_check_connects_over_amqps: no RabbitMQ at {BROKER}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("amqps test CA");
    let (cert, key) = ca.write_server_pair(dir.path());
    let files = TlsFiles { cert, key };
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca.pem()).unwrap();

    let acceptor = Arc::new(Tls::load(&files).unwrap()).acceptor();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let (Ok(mut tls), Ok(mut broker)) = (acceptor.accept(client).await, TcpStream::connect(BROKER).await)
                else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut broker).await;
            });
        }
    });

    let url = format!("amqps://guest:guest@127.0.0.1:{port}/%2f");
    let run = |trust: Option<std::path::PathBuf>| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_chatctl"));
            command.args(["rabbit-check", "--amqp-url", &url]);
            if let Some(ca) = trust {
                command.env("SSL_CERT_FILE", ca);
            }
            let output = command.output().unwrap();
            (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned())
        })
    };
    let (ok, output) = run(Some(ca_path)).await.unwrap();
    assert!(ok && output.contains("ok  connect"), "rabbit-check over amqps failed:\n{output}");
    let (ok, output) = run(None).await.unwrap();
    assert!(!ok && output.contains("TLS"), "rabbit-check trusted an unknown CA:\n{output}");
}

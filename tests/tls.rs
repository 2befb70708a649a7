//! TLS and mutual TLS on the gRPC port, with the plaintext health-only port for probes, and
//! `crossrank health` speaking TLS; certificates are generated per test (rcgen).

mod common;

use std::path::Path;
use std::process::Command;

use common::process::ServerProcess;
use crossrank::api::pb;
use crossrank::api::pb::cross_encoder_client::CrossEncoderClient;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

struct Pki {
    dir: tempfile::TempDir,
    ca: String,
    client_cert: String,
    client_key: String,
}

/// A CA, a server certificate for localhost signed by it (written to DIR/server.{pem,key}, the CA
/// to DIR/ca.pem) and a client certificate signed by it.
fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf = |names: Vec<String>| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(vec!["localhost".into()]);
    let (client_cert, client_key) = leaf(vec!["client".into()]);
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write("ca.pem", &ca.pem());
    write("server.pem", &server_cert);
    write("server.key", &server_key);
    write("client.pem", &client_cert);
    write("client.key", &client_key);
    Pki {
        ca: ca.pem(),
        client_cert,
        client_key,
        dir,
    }
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

/// Connects through `endpoint` and sends one Score.
async fn score_over(
    endpoint: tonic::transport::Endpoint,
) -> Result<(), Box<dyn std::error::Error>> {
    let channel = endpoint.connect().await?;
    CrossEncoderClient::new(channel).score(score()).await?;
    Ok(())
}

fn score() -> pb::ScoreRequest {
    pb::ScoreRequest {
        model: "ce".into(),
        pairs: vec![pb::Pair {
            text_a: "q".into(),
            text_b: "d".into(),
        }],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_with_a_plaintext_health_port() {
    let pki = pki();
    let d = pki.dir.path();
    let model = format!("ce={}", common::fixtures().join("bert").display());
    let (cert, key, ca) = (
        path(d, "server.pem"),
        path(d, "server.key"),
        path(d, "ca.pem"),
    );
    let args = [
        "--model",
        model.as_str(),
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--tls-client-ca",
        &ca,
        "--health-port",
        "0",
    ];
    let client_tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca))
        .identity(Identity::from_pem(&pki.client_cert, &pki.client_key))
        .domain_name("localhost");
    let server = ServerProcess::start_full(&args, &[], Some(client_tls)).await;

    // A client with a certificate from the CA is served.
    let mut c = CrossEncoderClient::new(server.channel.clone());
    assert_eq!(
        c.score(score()).await.unwrap().into_inner().results.len(),
        1
    );

    let port = server.addr.rsplit(':').next().unwrap();
    // Without a client certificate the handshake (or the first call) fails.
    let anonymous = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca))
        .domain_name("localhost");
    let tls = Channel::from_shared(format!("https://localhost:{port}"))
        .unwrap()
        .tls_config(anonymous)
        .unwrap();
    assert!(
        score_over(tls).await.is_err(),
        "served a client without a certificate"
    );
    // Plaintext on the TLS port is not served either.
    let plain = Channel::from_shared(format!("http://{}", server.addr)).unwrap();
    assert!(
        score_over(plain).await.is_err(),
        "served plaintext on the TLS port"
    );

    // The health port answers health in plaintext, and nothing else.
    let health_addr = server.health_addr.clone().unwrap();
    let ch = Channel::from_shared(format!("http://{health_addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let err = CrossEncoderClient::new(ch)
        .score(score())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented, "{err:?}");

    // `crossrank health` over mutual TLS, and refused without its client certificate (the
    // server is another process: blocking here is harmless).
    let health = |with_client_cert: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_crossrank"));
        cmd.args(["health", "--addr", &format!("https://127.0.0.1:{port}")])
            .args([
                "--tls-ca",
                &ca,
                "--tls-domain",
                "localhost",
                "--timeout-secs",
                "5",
            ]);
        if with_client_cert {
            cmd.args(["--tls-cert", &path(d, "client.pem")])
                .args(["--tls-key", &path(d, "client.key")]);
        }
        cmd.output().unwrap()
    };
    let ok = health(true);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(!health(false).status.success());
}

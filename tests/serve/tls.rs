//! TLS and mutual TLS on the gRPC port, with the plaintext health-only port for probes, and
//! `crossrank health` speaking TLS; certificates are generated per test (rcgen).

use crate::common;

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

/// reqwest's blocking client trusting the test CA; with `client_cert`, it presents the client
/// certificate.
fn https_client(pki: &Pki, client_cert: bool) -> reqwest::blocking::Client {
    let mut b = reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca.as_bytes()).unwrap())
        .timeout(std::time::Duration::from_secs(30));
    if client_cert {
        let pem = format!("{}{}", pki.client_cert, pki.client_key);
        b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    b.build().unwrap()
}

/// `crossrank serve` with TLS on both ports (mutual with `mutual`), the REST port and the
/// plaintext health port; returns the server and the REST port's number.
async fn tls_server(pki: &Pki, mutual: bool) -> (ServerProcess, String) {
    let d = pki.dir.path();
    let model = format!("ce={}", common::fixtures().join("bert").display());
    let (cert, key, ca) = (
        path(d, "server.pem"),
        path(d, "server.key"),
        path(d, "ca.pem"),
    );
    let mut args = vec!["--model", &model, "--tls-cert", &cert, "--tls-key", &key];
    args.extend(["--health-port", "0", "--http-port", "0"]);
    if mutual {
        args.extend(["--tls-client-ca", ca.as_str()]);
    }
    let mut client_tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca))
        .domain_name("localhost");
    if mutual {
        client_tls = client_tls.identity(Identity::from_pem(&pki.client_cert, &pki.client_key));
    }
    let server = ServerProcess::start_full(&args, &[], Some(client_tls)).await;
    let port = server.http_addr.clone().unwrap();
    let port = port.rsplit(':').next().unwrap().to_owned();
    (server, port)
}

/// Status of `GET url` (or of a one-document `POST /v2/rerank` when `rerank`), or the error.
fn call(
    client: &reqwest::blocking::Client,
    url: &str,
    rerank: bool,
) -> Result<u16, reqwest::Error> {
    let req = if rerank {
        let body = serde_json::json!({"model": "ce", "query": "q", "documents": ["d"]});
        client
            .post(format!("{url}/v2/rerank"))
            .header("content-type", "application/json")
            .body(body.to_string())
    } else {
        client.get(format!("{url}/health"))
    };
    req.send().map(|r| r.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_on_the_http_port_and_plain_http_refused() {
    let pki = pki();
    let (server, port) = tls_server(&pki, false).await;
    let https = format!("https://localhost:{port}");
    let plain = format!("http://127.0.0.1:{port}");
    let pki = tokio::task::spawn_blocking(move || {
        let client = https_client(&pki, false);
        assert_eq!(call(&client, &https, false).unwrap(), 200);
        assert_eq!(call(&client, &https, true).unwrap(), 200);
        // Plaintext on the TLS port fails at once (no hang until a timeout), and the port
        // serves TLS clients after it.
        let err = call(&reqwest::blocking::Client::new(), &plain, false).unwrap_err();
        assert!(!err.is_timeout(), "{err:?}");
        assert_eq!(call(&client, &https, true).unwrap(), 200);
        pki
    })
    .await
    .unwrap();
    // HTTP/2 is negotiated by ALPN and serves.
    assert_eq!(h2_health(&pki, &port, false).await, 200);
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_on_the_http_port_refuses_clients_without_a_certificate() {
    let pki = pki();
    let (server, port) = tls_server(&pki, true).await;
    let https = format!("https://localhost:{port}");
    let pki = tokio::task::spawn_blocking(move || {
        let anonymous = https_client(&pki, false);
        assert!(
            call(&anonymous, &https, false).is_err(),
            "served without a certificate"
        );
        assert!(
            call(&anonymous, &https, true).is_err(),
            "served without a certificate"
        );
        let client = https_client(&pki, true);
        assert_eq!(call(&client, &https, false).unwrap(), 200);
        assert_eq!(call(&client, &https, true).unwrap(), 200);
        pki
    })
    .await
    .unwrap();
    assert_eq!(h2_health(&pki, &port, true).await, 200);
    drop(server);
}

/// `GET /health` over TLS with ALPN `h2` (asserted negotiated), by the h2 crate; the status.
async fn h2_health(pki: &Pki, port: &str, client_cert: bool) -> u16 {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca.as_bytes()).unwrap())
        .unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = if client_cert {
        let cert = CertificateDer::from_pem_slice(pki.client_cert.as_bytes()).unwrap();
        let key = PrivateKeyDer::from_pem_slice(pki.client_key.as_bytes()).unwrap();
        builder.with_client_auth_cert(vec![cert], key).unwrap()
    } else {
        builder.with_no_client_auth()
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut client, connection) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(connection);
    let req = http::Request::get(format!("https://localhost:{port}/health"))
        .body(())
        .unwrap();
    let (response, _) = client.send_request(req, true).unwrap();
    response.await.unwrap().status().as_u16()
}

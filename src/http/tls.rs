//! TLS for the listener: reading the PEM pair given to `serve`, a
//! certificate resolver whose pair can be swapped while the server runs
//! (SIGHUP on renewal), and the acceptor the accept loop wraps sockets in.
//! Also the PEM reading the client needs for `--ca-cert`. One crypto stack:
//! rustls on ring, as lapin uses.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::TlsFiles;

/// Why a certificate, key or CA file was refused, with the fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read; `what` names the flag it came from.
    #[error("cannot read {what} {path}: {source}. Check the path and that chatctl may read the file")]
    Read {
        /// The flag that named the file.
        what: &'static str,
        /// The file, as given.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file has no certificate; `hint` suggests swapped flags when it holds a key.
    #[error("{path} holds no PEM certificate (-----BEGIN CERTIFICATE-----){hint}; give {what} as a PEM file")]
    NoCertificate {
        /// The flag that named the file.
        what: &'static str,
        /// The file, as given.
        path: PathBuf,
        /// Empty, or a likely cause (the key file given instead).
        hint: &'static str,
    },
    /// The file has no private key; `hint` suggests swapped flags when it holds a certificate.
    #[error("{path} holds no PEM private key (-----BEGIN PRIVATE KEY-----, or RSA/EC PRIVATE KEY){hint}; give --tls-key the key of --tls-cert as a PEM file")]
    NoKey {
        /// The `--tls-key` file.
        path: PathBuf,
        /// Empty, or a likely cause (the certificate given instead).
        hint: &'static str,
    },
    /// The file is not well-formed PEM.
    #[error("{path} is not valid PEM ({why}); write it out again from the original")]
    BadPem {
        /// The file, as given.
        path: PathBuf,
        /// The PEM parser's complaint.
        why: String,
    },
    /// rustls cannot sign with this key (an unsupported algorithm, say).
    #[error("the private key {path} cannot be used: {why}. Pass an RSA, ECDSA (P-256/P-384) or Ed25519 key")]
    BadKey {
        /// The `--tls-key` file.
        path: PathBuf,
        /// rustls's complaint.
        why: String,
    },
    /// The certificate does not parse or cannot serve TLS.
    #[error("the certificate {path} cannot be used: {why}. Pass a PEM X.509 server certificate")]
    BadCertificate {
        /// The `--tls-cert` file.
        path: PathBuf,
        /// rustls's complaint.
        why: String,
    },
    /// The key was not issued with this certificate, or the chain is in the wrong order.
    #[error("the private key {key} does not belong to the certificate {cert}: pass the key the certificate was issued for (the server certificate must come first in {cert})")]
    Mismatch {
        /// The `--tls-cert` file.
        cert: PathBuf,
        /// The `--tls-key` file.
        key: PathBuf,
    },
    /// A `--ca-cert` file that cannot be used as a trust root.
    #[error("the CA certificate {path} cannot be trusted: {why}. Pass a PEM X.509 CA certificate")]
    BadCa {
        /// The `--ca-cert` file.
        path: PathBuf,
        /// rustls's complaint.
        why: String,
    },
    /// rustls refused the configuration itself; not the files' fault.
    #[error("TLS setup failed: {0}")]
    Setup(String),
    /// A reload was asked for, but the server does not serve TLS.
    #[error("TLS is off, so there is no certificate to reload; start serve with --tls-cert and --tls-key")]
    Off,
}

/// The process's one crypto provider for chatctl's own TLS.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a whole PEM file; `what` names it in the error.
fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { what, path: path.to_owned(), source })
}

fn bad_pem(path: &Path, error: rustls::pki_types::pem::Error) -> TlsError {
    TlsError::BadPem { path: path.to_owned(), why: error.to_string() }
}

/// Every certificate in a PEM file, in order.
fn certificates(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>().map_err(|e| bad_pem(path, e))?;
    if certs.is_empty() {
        let hint = if PrivateKeyDer::from_pem_slice(&pem).is_ok() {
            ": it holds a private key; were --tls-cert and --tls-key swapped?"
        } else {
            ""
        };
        return Err(TlsError::NoCertificate { what, path: path.to_owned(), hint });
    }
    Ok(certs)
}

/// Reads the server's certificate chain and key and checks they belong together.
pub fn load_pair(files: &TlsFiles) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = certificates(&files.cert, "--tls-cert")?;
    let pem = read(&files.key, "--tls-key")?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|error| match error {
        rustls::pki_types::pem::Error::NoItemsFound => {
            let holds_certificate = CertificateDer::pem_slice_iter(&pem).next().is_some_and(|c| c.is_ok());
            let hint =
                if holds_certificate { ": it holds a certificate; were --tls-cert and --tls-key swapped?" } else { "" };
            TlsError::NoKey { path: files.key.clone(), hint }
        }
        other => bad_pem(&files.key, other),
    })?;
    let key = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|error| TlsError::BadKey { path: files.key.clone(), why: error.to_string() })?;
    let certified = CertifiedKey::new(chain, key);
    match certified.keys_match() {
        Ok(()) => Ok(Arc::new(certified)),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(TlsError::Mismatch { cert: files.cert.clone(), key: files.key.clone() })
        }
        // ring can always tell a key's public half, so Unknown is not expected;
        // anything else is a certificate that does not parse.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(Arc::new(certified)),
        Err(error) => Err(TlsError::BadCertificate { path: files.cert.clone(), why: error.to_string() }),
    }
}

/// CA certificates to trust (`--ca-cert`), each checked to be usable as a root.
pub fn load_ca_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = certificates(path, "--ca-cert")?;
    let mut store = rustls::RootCertStore::empty();
    for cert in &certs {
        store.add(cert.clone()).map_err(|error| TlsError::BadCa { path: path.to_owned(), why: error.to_string() })?;
    }
    Ok(certs)
}

/// Hands every handshake the current pair; `reload` swaps it. The lock is
/// held only to clone or replace an `Arc`.
struct CurrentPair(RwLock<Arc<CertifiedKey>>);

impl fmt::Debug for CurrentPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CurrentPair")
    }
}

impl ResolvesServerCert for CurrentPair {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(PoisonError::into_inner).clone())
    }
}

/// The listener's TLS: the files it came from, the pair in use, and the
/// acceptor built on them.
pub struct Tls {
    files: TlsFiles,
    current: Arc<CurrentPair>,
    acceptor: TlsAcceptor,
}

impl Tls {
    /// Reads the pair; refused with the file and the fix when unusable.
    pub fn load(files: &TlsFiles) -> Result<Tls, TlsError> {
        let current = Arc::new(CurrentPair(RwLock::new(load_pair(files)?)));
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|error| TlsError::Setup(error.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        // chatctl serves HTTP/1.1 only (WebSockets upgrade from it).
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls { files: files.clone(), current, acceptor: TlsAcceptor::from(Arc::new(config)) })
    }

    /// What the accept loop wraps each connection in; it always uses the current pair.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.clone()
    }

    /// Reads the files again; the next handshake uses the new pair. A bad
    /// pair is refused, logged at error, and the old one stays in use.
    pub async fn reload(&self) -> Result<(), TlsError> {
        let files = self.files.clone();
        let loaded = tokio::task::spawn_blocking(move || load_pair(&files))
            .await
            .unwrap_or_else(|join| Err(TlsError::Setup(format!("reading the files failed: {join}"))));
        match loaded {
            Ok(pair) => {
                *self.current.0.write().unwrap_or_else(PoisonError::into_inner) = pair;
                tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
                Ok(())
            }
            Err(error) => {
                tracing::error!(%error, "TLS reload refused; the previous certificate stays in use");
                Err(error)
            }
        }
    }
}

/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;
const PLAIN_HTTP_ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
Connection: close\r\nContent-Length: 58\r\n\r\nThis port speaks HTTPS: use https:// instead of http://.\r\n";

/// Completes the TLS handshake on an accepted socket, or gives up: a
/// client that stalls is dropped at `deadline`, a plain-HTTP request gets a
/// 400 that says to use https://. Failures are the client's and are logged
/// at debug only.
pub async fn accept(
    acceptor: &TlsAcceptor,
    mut stream: TcpStream,
    client: SocketAddr,
    deadline: Duration,
) -> Option<TlsStream<TcpStream>> {
    let handshake = async {
        let mut first = [0u8; 1];
        let _ = stream.peek(&mut first).await?;
        // A TLS client opens with a handshake record; HTTP with a method name.
        if first[0] != TLS_HANDSHAKE && first[0].is_ascii_uppercase() {
            answer_plain_http(&mut stream).await;
            return Err(std::io::Error::other("a plain-HTTP request on the HTTPS port"));
        }
        acceptor.accept(stream).await
    };
    match tokio::time::timeout(deadline, handshake).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(error)) => {
            tracing::debug!(%error, %client, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%client, "TLS handshake did not finish within {deadline:?}");
            None
        }
    }
}

/// Reads the request head (so closing does not reset the answer away),
/// answers 400 and closes.
async fn answer_plain_http(stream: &mut TcpStream) {
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    while head.len() < 16 * 1024 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let _ = stream.write_all(PLAIN_HTTP_ANSWER).await;
    let _ = stream.shutdown().await;
}

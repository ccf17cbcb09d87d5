//! TCP connect and TLS handshake for the mail checks, with failures sorted into kinds the
//! diagnostics can explain (DNS, refused, timeout, closed, certificate problems).
//!
//! Every socket gets the caller's timeout for connect, read and write, so no step can hang
//! longer than that. TLS uses the roots of our [`Trust`] exactly; the verifier is rustls'
//! own WebPKI verifier, wrapped only to remember the certificate the server presented, so a
//! rejected chain can be reported with its subject, issuer and expiry (the issuer names a
//! TLS-inspecting proxy). The wrapper never changes a verification outcome.

use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{CertificateError, ClientConnection, StreamOwned};
use time::OffsetDateTime;

use crate::profile::ServerEndpoint;
use crate::trust::Trust;

/// A TLS session over a TCP socket, as used by SMTP and IMAP after connect (or STARTTLS).
pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// The certificate the server presented, as far as it could be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerCertificate {
    /// Subject distinguished name (`CN=mail.example.com, O=...`).
    pub subject: String,
    /// Issuer distinguished name; for a TLS-inspecting proxy this names the proxy's CA.
    pub issuer: String,
    /// End of validity.
    pub not_after: Option<OffsetDateTime>,
}

/// What was wrong with the server's certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertificateProblem {
    /// Not issued by a trusted root (typical of TLS-inspecting proxies and self-signed servers).
    UnknownIssuer,
    /// Past its `notAfter`.
    Expired,
    /// Before its `notBefore` (often a wrong clock on this machine).
    NotYetValid,
    /// Valid, but for another host name.
    HostnameMismatch,
    /// Revoked by its issuer.
    Revoked,
    /// Anything else rustls refused.
    Other,
}

/// Which way the network step failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportKind {
    /// The host name did not resolve.
    Dns,
    /// The host answered the connect with a refusal (nothing listens, or a firewall rejects).
    Refused,
    /// No answer within the timeout (connect, handshake or a reply).
    Timeout,
    /// The server closed the connection.
    Closed,
    /// The TLS handshake failed; `Some` when the certificate was the reason.
    Tls(Option<CertificateProblem>),
    /// Any other I/O failure.
    Other,
}

/// A failed network step: its kind, the system's or TLS library's words, and the server's
/// certificate when TLS got that far. Holds no secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {detail}", kind_text(self.kind), at(self.endpoint.as_deref()))]
pub struct TransportError {
    /// Which way it failed.
    pub kind: TransportKind,
    /// `host:port` it happened with, filled in by the SMTP and IMAP checks.
    pub endpoint: Option<String>,
    /// The underlying error text.
    pub detail: String,
    /// The certificate the server presented, when one was received.
    pub peer: Option<Box<PeerCertificate>>,
}

fn at(endpoint: Option<&str>) -> String {
    endpoint.map(|e| format!(" ({e})")).unwrap_or_default()
}

fn kind_text(kind: TransportKind) -> &'static str {
    match kind {
        TransportKind::Dns => "host name not found",
        TransportKind::Refused => "connection refused",
        TransportKind::Timeout => "no answer within the timeout",
        TransportKind::Closed => "the server closed the connection",
        TransportKind::Tls(Some(CertificateProblem::UnknownIssuer)) => {
            "the server's certificate is not issued by a trusted authority"
        }
        TransportKind::Tls(Some(CertificateProblem::Expired)) => "the server's certificate expired",
        TransportKind::Tls(Some(CertificateProblem::NotYetValid)) => {
            "the server's certificate is not valid yet"
        }
        TransportKind::Tls(Some(CertificateProblem::HostnameMismatch)) => {
            "the server's certificate is for another host name"
        }
        TransportKind::Tls(Some(CertificateProblem::Revoked)) => {
            "the server's certificate is revoked"
        }
        TransportKind::Tls(_) => "TLS handshake failed",
        TransportKind::Other => "network error",
    }
}

impl TransportError {
    /// True when the same attempt may work later (network weather), false for certificate
    /// and TLS configuration problems that need someone to act.
    pub fn is_transient(&self) -> bool {
        !matches!(self.kind, TransportKind::Tls(_) | TransportKind::Dns)
    }

    /// The same error, saying which `host:port` it happened with.
    pub fn at_endpoint(mut self, endpoint: &ServerEndpoint) -> TransportError {
        self.endpoint = Some(format!("{}:{}", endpoint.host, endpoint.port));
        self
    }

    /// Sorts an I/O error from a socket or a rustls stream.
    pub fn from_io(error: &io::Error) -> TransportError {
        if let Some(tls) = error.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
            return TransportError::from_tls(tls, None);
        }
        let kind = match error.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => TransportKind::Timeout,
            io::ErrorKind::ConnectionRefused => TransportKind::Refused,
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof => TransportKind::Closed,
            _ => TransportKind::Other,
        };
        TransportError { kind, detail: error.to_string(), peer: None, endpoint: None }
    }

    /// The server closed the connection where a reply was expected.
    pub fn closed() -> TransportError {
        TransportError {
            kind: TransportKind::Closed,
            detail: "connection closed before a complete reply".to_owned(),
            peer: None,
            endpoint: None,
        }
    }

    fn from_tls(error: &rustls::Error, peer: Option<Box<PeerCertificate>>) -> TransportError {
        let problem = match error {
            rustls::Error::InvalidCertificate(cert) => Some(match cert {
                CertificateError::UnknownIssuer => CertificateProblem::UnknownIssuer,
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    CertificateProblem::Expired
                }
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    CertificateProblem::NotYetValid
                }
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => {
                    CertificateProblem::HostnameMismatch
                }
                CertificateError::Revoked => CertificateProblem::Revoked,
                _ => CertificateProblem::Other,
            }),
            _ => None,
        };
        let kind = TransportKind::Tls(problem);
        TransportError { kind, detail: error.to_string(), peer, endpoint: None }
    }
}

/// Resolves the endpoint and connects to the first address that answers, each attempt
/// bounded by `timeout`; the socket keeps `timeout` for every read and write.
pub fn connect(endpoint: &ServerEndpoint, timeout: Duration) -> Result<TcpStream, TransportError> {
    let addrs: Vec<SocketAddr> = (endpoint.host.as_str(), endpoint.port)
        .to_socket_addrs()
        .map_err(|e| TransportError {
            kind: TransportKind::Dns,
            detail: e.to_string(),
            peer: None,
            endpoint: None,
        })?
        .collect();
    if addrs.is_empty() {
        let detail = format!("{} has no address", endpoint.host);
        return Err(TransportError {
            kind: TransportKind::Dns,
            detail,
            peer: None,
            endpoint: None,
        });
    }

    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(stream) => {
                let timeouts = stream
                    .set_read_timeout(Some(timeout))
                    .and_then(|()| stream.set_write_timeout(Some(timeout)))
                    .and_then(|()| stream.set_nodelay(true));
                timeouts.map_err(|e| TransportError::from_io(&e))?;
                return Ok(stream);
            }
            Err(e) => last = Some(TransportError::from_io(&e)),
        }
    }
    Err(last.unwrap_or_else(TransportError::closed))
}

/// Runs the TLS handshake for `host` over `tcp` to completion, so that a certificate or
/// handshake failure shows up here and not at the first read.
pub fn handshake(tcp: TcpStream, host: &str, trust: &Trust) -> Result<TlsStream, TransportError> {
    let seen = Arc::new(Mutex::new(None));
    let config = recording_config(trust, Arc::clone(&seen))?;
    let name = ServerName::try_from(host.to_owned()).map_err(|e| TransportError {
        kind: TransportKind::Tls(None),
        detail: format!("{host} is not a valid TLS server name: {e}"),
        peer: None,
        endpoint: None,
    })?;
    let connection = ClientConnection::new(config, name).map_err(|e| TransportError {
        kind: TransportKind::Tls(None),
        detail: e.to_string(),
        peer: None,
        endpoint: None,
    })?;

    let mut stream = StreamOwned::new(connection, tcp);
    while stream.conn.is_handshaking() {
        if let Err(error) = stream.conn.complete_io(&mut stream.sock) {
            let peer = seen.lock().unwrap_or_else(PoisonError::into_inner).take();
            let mut failure = match error.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>())
            {
                Some(tls) => TransportError::from_tls(tls, None),
                None => TransportError::from_io(&error),
            };
            failure.peer = peer.map(Box::new);
            return Err(failure);
        }
    }
    Ok(stream)
}

fn recording_config(
    trust: &Trust,
    seen: Arc<Mutex<Option<PeerCertificate>>>,
) -> Result<Arc<rustls::ClientConfig>, TransportError> {
    let remember_end_entity =
        move |end_entity: &CertificateDer<'_>, _: &[CertificateDer<'_>], _| {
            *seen.lock().unwrap_or_else(PoisonError::into_inner) = describe_certificate(end_entity);
        };
    trust.observed_client_config(remember_end_entity).map_err(|e| TransportError {
        kind: TransportKind::Tls(None),
        detail: e.to_string(),
        peer: None,
        endpoint: None,
    })
}

/// Subject, issuer and expiry of a DER certificate; `None` when it does not parse.
pub fn describe_certificate(der: &CertificateDer<'_>) -> Option<PeerCertificate> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    Some(PeerCertificate {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        not_after: Some(cert.validity().not_after.to_datetime()),
    })
}

//! TCP connect and TLS handshake for the mail checks, with failures sorted into kinds the
//! diagnostics can explain (DNS, refused, timeout, closed, certificate problems).
//!
//! Time and size are bounded per protocol step, not per system call: a [`DeadlineStream`]
//! gives every read and write only the time left until the step's deadline (the caller's
//! timeout after [`StepClock::start_step`]) and fails with `TimedOut` once it has passed, so
//! a server that trickles one byte a second cannot stretch a step. A step also reads at most
//! [`MAX_STEP_BYTES`]; more ends it with [`TransportKind::Oversized`] (an endless line, a
//! flood of continuation lines). A session is therefore bounded by the number of its steps
//! times the timeout (the SMTP and IMAP modules count theirs).
//!
//! TLS uses the roots of our [`Trust`] exactly; the verifier is rustls' own WebPKI verifier,
//! wrapped only to remember the certificate the server presented, so a rejected chain can be
//! reported with its subject, issuer and expiry (the issuer names a TLS-inspecting proxy). The
//! wrapper never changes a verification outcome.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{CertificateError, ClientConnection, StreamOwned};
use time::OffsetDateTime;

use crate::profile::ServerEndpoint;
use crate::trust::Trust;

/// A TLS session over a deadline-bounded socket, as used by SMTP and IMAP after connect (or
/// STARTTLS).
pub type TlsStream = StreamOwned<ClientConnection, DeadlineStream>;

/// Most bytes one protocol step may read from the socket (TLS records included). Greetings,
/// EHLO lists, SELECT and SEARCH answers and certificate chains are a few KB; a server that
/// sends a megabyte in one step is not answering the step.
pub const MAX_STEP_BYTES: u64 = 1024 * 1024;

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
    /// The server sent more than any reply at this step can be: an endless line, a flood of
    /// continuation lines, or more than [`MAX_STEP_BYTES`].
    Oversized,
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
        TransportKind::Oversized => "the server's reply was too long or never ended",
        TransportKind::Other => "network error",
    }
}

impl TransportError {
    /// True when the same attempt may work later (network weather), false for certificate
    /// and TLS configuration problems and for a server that floods the connection, which need
    /// someone to act.
    pub fn is_transient(&self) -> bool {
        !matches!(self.kind, TransportKind::Tls(_) | TransportKind::Dns | TransportKind::Oversized)
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
        if let Some(step) = error.get_ref().and_then(|e| e.downcast_ref::<StepExceeded>()) {
            let kind = match step {
                StepExceeded::Deadline { .. } => TransportKind::Timeout,
                StepExceeded::Bytes { .. } => TransportKind::Oversized,
            };
            return TransportError { kind, detail: step.to_string(), peer: None, endpoint: None };
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

    /// The server sent more than a reply at this step can hold; `what` says which limit.
    pub fn oversized(what: &str) -> TransportError {
        TransportError {
            kind: TransportKind::Oversized,
            detail: what.to_owned(),
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
/// bounded by `timeout`; every later step on the socket is bounded by `timeout` from its
/// [`StepClock::start_step`] (the first step starts at the connect).
pub fn connect(
    endpoint: &ServerEndpoint,
    timeout: Duration,
) -> Result<DeadlineStream, TransportError> {
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
                stream.set_nodelay(true).map_err(|e| TransportError::from_io(&e))?;
                return Ok(DeadlineStream::new(stream, timeout));
            }
            Err(e) => last = Some(TransportError::from_io(&e)),
        }
    }
    Err(last.unwrap_or_else(TransportError::closed))
}

/// Runs the TLS handshake for `host` over `tcp` to completion, as one step of its clock, so
/// that a certificate or handshake failure shows up here and not at the first read.
pub fn handshake(
    tcp: DeadlineStream,
    host: &str,
    trust: &Trust,
) -> Result<TlsStream, TransportError> {
    tcp.clock().start_step();
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

/// Why a step was cut short by its [`DeadlineStream`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
enum StepExceeded {
    #[error("the step did not finish within {} s ({received} bytes received)", limit.as_secs_f32())]
    Deadline { limit: Duration, received: u64 },
    #[error("the server sent more than {limit} bytes in one step")]
    Bytes { limit: u64 },
}

/// The deadline and byte count of the step in progress on a [`DeadlineStream`]; clones share
/// it, so the SMTP and IMAP code can start steps while the stream sits inside rustls or the
/// `imap` crate.
#[derive(Clone, Debug)]
pub struct StepClock {
    limit: Duration,
    state: Arc<Mutex<StepState>>,
}

#[derive(Debug)]
struct StepState {
    deadline: Instant,
    received: u64,
}

impl StepClock {
    fn new(limit: Duration) -> StepClock {
        let state = StepState { deadline: Instant::now() + limit, received: 0 };
        StepClock { limit, state: Arc::new(Mutex::new(state)) }
    }

    /// Starts the next step: it must finish within the timeout from now and read at most
    /// [`MAX_STEP_BYTES`].
    pub fn start_step(&self) {
        let mut state = self.lock();
        state.deadline = Instant::now() + self.limit;
        state.received = 0;
    }

    /// The time left in this step, or why the step is over.
    fn left(&self) -> Result<Duration, StepExceeded> {
        let state = self.lock();
        if state.received > MAX_STEP_BYTES {
            return Err(StepExceeded::Bytes { limit: MAX_STEP_BYTES });
        }
        let left = state.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(StepExceeded::Deadline { limit: self.limit, received: state.received });
        }
        Ok(left)
    }

    fn expired(&self) -> StepExceeded {
        StepExceeded::Deadline { limit: self.limit, received: self.lock().received }
    }

    fn count(&self, bytes: usize) {
        let mut state = self.lock();
        state.received = state.received.saturating_add(bytes as u64);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StepState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A TCP socket whose reads and writes end by the deadline of the current step: each system
/// call gets only the time left, and once it is spent every call fails with `TimedOut`, however
/// slowly the server trickles. Reading more than [`MAX_STEP_BYTES`] in a step fails too.
#[derive(Debug)]
pub struct DeadlineStream {
    tcp: TcpStream,
    clock: StepClock,
}

impl DeadlineStream {
    fn new(tcp: TcpStream, limit: Duration) -> DeadlineStream {
        DeadlineStream { tcp, clock: StepClock::new(limit) }
    }

    /// A handle on this stream's step clock.
    pub fn clock(&self) -> StepClock {
        self.clock.clone()
    }

    /// The underlying socket (for its addresses; reading it directly would bypass the clock).
    pub fn socket(&self) -> &TcpStream {
        &self.tcp
    }

    fn time_left(&self) -> io::Result<Duration> {
        self.clock.left().map_err(step_error)
    }

    /// A socket timeout is the step's deadline passing: say so in the step's terms.
    fn sorted(&self, error: io::Error) -> io::Error {
        match error.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => step_error(self.clock.expired()),
            _ => error,
        }
    }
}

fn step_error(exceeded: StepExceeded) -> io::Error {
    let kind = match exceeded {
        StepExceeded::Deadline { .. } => io::ErrorKind::TimedOut,
        StepExceeded::Bytes { .. } => io::ErrorKind::InvalidData,
    };
    io::Error::new(kind, exceeded)
}

impl Read for DeadlineStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.time_left()?;
        self.tcp.set_read_timeout(Some(left))?;
        let read = self.tcp.read(buf).map_err(|e| self.sorted(e))?;
        self.clock.count(read);
        Ok(read)
    }
}

impl Write for DeadlineStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let left = self.time_left()?;
        self.tcp.set_write_timeout(Some(left))?;
        self.tcp.write(buf).map_err(|e| self.sorted(e))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
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

//! The HTTP client oauth2 uses to reach the token endpoint: a ureq agent over rustls (ring),
//! trusting exactly the profile's roots, never following redirects, bounded by the profile's
//! timeout.
//!
//! Network failures are sorted into a [`TransportKind`] here (DNS, refused, timeout, which
//! certificate problem) because only this layer still sees the library's own error values.
//! The HTTP proxy from the environment (`HTTPS_PROXY`, `NO_PROXY`) is honoured, as corporate
//! networks need it.

use std::error::Error as StdError;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oauth2::http;
use oauth2::{HttpRequest, HttpResponse, SyncHttpClient};
use rustls::CertificateError;
use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};

use super::error::{CertificateProblem, TransportKind};
use crate::trust::Trust;

/// Largest token endpoint answer read. Real ones (access, refresh and ID token with their
/// fields) are a few KB, error pages rarely more than a hundred; anything past this is not the
/// token endpoint answering, and reading on would only use memory.
pub const MAX_ANSWER_BYTES: u64 = 1024 * 1024;

/// A failed exchange with no HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} ({detail})")]
pub struct TransportError {
    /// What went wrong.
    pub kind: TransportKind,
    /// The library's words (no request content).
    pub detail: String,
}

/// What the last answer looked like: oauth2 drops the status when an error body cannot be
/// parsed, and the diagnosis needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ResponseMeta {
    pub status: u16,
    pub content_type: Option<String>,
    pub location: Option<String>,
    pub retry_after: Option<String>,
}

/// ureq agent wrapper implementing oauth2's [`SyncHttpClient`].
#[derive(Clone, Debug)]
pub struct TokenHttpClient {
    agent: ureq::Agent,
}

impl TokenHttpClient {
    /// An agent that trusts `trust`'s roots and gives up after `timeout`.
    pub fn new(trust: &Trust, timeout: Duration) -> TokenHttpClient {
        let tls = TlsConfig::builder()
            .provider(TlsProvider::Rustls)
            .root_certs(root_certs(trust))
            .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .build();
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .timeout_global(Some(timeout))
            .user_agent(concat!("mailgrant/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        TokenHttpClient { agent }
    }

    /// Sends one request; returns the answer and what it looked like.
    fn send(&self, request: HttpRequest) -> Result<(HttpResponse, ResponseMeta), TransportError> {
        let mut response = self.agent.run(request).map_err(|e| classify(&e))?;

        let header = |name: http::header::HeaderName| {
            response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
        };
        let meta = ResponseMeta {
            status: response.status().as_u16(),
            content_type: header(http::header::CONTENT_TYPE),
            location: header(http::header::LOCATION),
            retry_after: header(http::header::RETRY_AFTER),
        };
        tracing::debug!(status = meta.status, "token endpoint answered");

        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_to_vec()
            .map_err(|e| classify(&e))?;
        let mut builder = http::Response::builder().status(response.status());
        if let Some(content_type) = response.headers().get(http::header::CONTENT_TYPE) {
            builder = builder.header(http::header::CONTENT_TYPE, content_type);
        }
        let response = builder.body(body).map_err(|e| TransportError {
            kind: TransportKind::Other,
            detail: format!("unreadable response: {e}"),
        })?;
        Ok((response, meta))
    }
}

impl SyncHttpClient for TokenHttpClient {
    type Error = TransportError;

    fn call(&self, request: HttpRequest) -> Result<HttpResponse, TransportError> {
        self.send(request).map(|(response, _)| response)
    }
}

/// One request's client: remembers the answer's status, which oauth2 drops when an error body
/// cannot be parsed.
pub(crate) struct RecordingClient<'a> {
    inner: &'a TokenHttpClient,
    last: Mutex<Option<ResponseMeta>>,
}

impl<'a> RecordingClient<'a> {
    pub(crate) fn new(inner: &'a TokenHttpClient) -> RecordingClient<'a> {
        RecordingClient { inner, last: Mutex::new(None) }
    }

    /// What the answer looked like, if one came.
    pub(crate) fn last_response(&self) -> Option<ResponseMeta> {
        self.last.lock().ok().and_then(|last| last.clone())
    }
}

impl SyncHttpClient for RecordingClient<'_> {
    type Error = TransportError;

    fn call(&self, request: HttpRequest) -> Result<HttpResponse, TransportError> {
        let (response, meta) = self.inner.send(request)?;
        if let Ok(mut last) = self.last.lock() {
            *last = Some(meta);
        }
        Ok(response)
    }
}

/// The certificates `trust` stands for, as ureq wants them: the system store and the extra CA
/// file.
fn root_certs(trust: &Trust) -> RootCerts {
    let certs =
        trust.certificates().iter().map(|der| Certificate::from_der(der.as_ref()).to_owned());
    RootCerts::from(certs)
}

/// Sorts a ureq failure into what the operator can act on.
pub(crate) fn classify(error: &ureq::Error) -> TransportError {
    let detail = error.to_string();
    let kind = match error {
        ureq::Error::Timeout(_) => TransportKind::Timeout,
        ureq::Error::HostNotFound => TransportKind::Dns,
        ureq::Error::Io(io) => classify_io(io),
        ureq::Error::Rustls(tls) => classify_rustls(tls),
        ureq::Error::Tls(_) | ureq::Error::TlsRequired => TransportKind::TlsHandshake,
        ureq::Error::ConnectProxyFailed(_) | ureq::Error::InvalidProxyUrl => TransportKind::Proxy,
        ureq::Error::ConnectionFailed => TransportKind::ConnectionRefused,
        ureq::Error::BodyExceedsLimit(_) | ureq::Error::LargeResponseHeader(..) => {
            TransportKind::Oversized
        }
        _ => TransportKind::Other,
    };
    TransportError { kind, detail }
}

/// I/O errors: refused, reset, timed out, a rustls error wrapped in I/O, or a failed lookup
/// (which std reports only in words).
pub(crate) fn classify_io(error: &io::Error) -> TransportKind {
    if let Some(tls) = error.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        return classify_rustls(tls);
    }
    match error.kind() {
        io::ErrorKind::ConnectionRefused => TransportKind::ConnectionRefused,
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => TransportKind::Timeout,
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::UnexpectedEof
        | io::ErrorKind::BrokenPipe => TransportKind::ConnectionReset,
        _ if looks_like_lookup_failure(error) => TransportKind::Dns,
        _ => TransportKind::Other,
    }
}

fn looks_like_lookup_failure(error: &io::Error) -> bool {
    let text = error.to_string().to_ascii_lowercase();
    let mut source: Option<&dyn StdError> = error.source();
    let mut all = text;
    while let Some(inner) = source {
        all.push(' ');
        all.push_str(&inner.to_string().to_ascii_lowercase());
        source = inner.source();
    }
    [
        "failed to lookup address",
        "name or service not known",
        "no such host is known",
        "nodename nor servname",
        "temporary failure in name resolution",
    ]
    .iter()
    .any(|needle| all.contains(needle))
}

fn classify_rustls(error: &rustls::Error) -> TransportKind {
    match error {
        rustls::Error::InvalidCertificate(problem) => {
            TransportKind::Certificate(certificate_problem(problem))
        }
        _ => TransportKind::TlsHandshake,
    }
}

fn certificate_problem(error: &CertificateError) -> CertificateProblem {
    match error {
        CertificateError::UnknownIssuer => CertificateProblem::UnknownIssuer,
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            CertificateProblem::Expired
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            CertificateProblem::NotValidYet
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            CertificateProblem::WrongHostName
        }
        CertificateError::Revoked => CertificateProblem::Revoked,
        other => CertificateProblem::Other(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_sorted_by_kind_and_lookup_words() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(classify_io(&refused), TransportKind::ConnectionRefused);
        let timeout = io::Error::from(io::ErrorKind::TimedOut);
        assert_eq!(classify_io(&timeout), TransportKind::Timeout);
        let dns =
            io::Error::other("failed to lookup address information: Name or service not known");
        assert_eq!(classify_io(&dns), TransportKind::Dns);
        let windows_dns = io::Error::other("No such host is known. (os error 11001)");
        assert_eq!(classify_io(&windows_dns), TransportKind::Dns);
        let other = io::Error::other("something else");
        assert_eq!(classify_io(&other), TransportKind::Other);
    }

    #[test]
    fn rustls_certificate_errors_keep_their_kind_even_wrapped_in_io() {
        let unknown = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        let wrapped = io::Error::new(io::ErrorKind::InvalidData, unknown);
        assert_eq!(
            classify_io(&wrapped),
            TransportKind::Certificate(CertificateProblem::UnknownIssuer)
        );
        let expired =
            ureq::Error::Rustls(rustls::Error::InvalidCertificate(CertificateError::Expired));
        assert_eq!(
            classify(&expired).kind,
            TransportKind::Certificate(CertificateProblem::Expired)
        );
        assert_eq!(classify(&ureq::Error::HostNotFound).kind, TransportKind::Dns);
    }

    #[test]
    fn an_answer_over_the_limit_is_oversized_not_a_network_fault() {
        let body = classify(&ureq::Error::BodyExceedsLimit(MAX_ANSWER_BYTES));
        assert_eq!(body.kind, TransportKind::Oversized);
        let headers = classify(&ureq::Error::LargeResponseHeader(70_000, 65_536));
        assert_eq!(headers.kind, TransportKind::Oversized);
    }
}

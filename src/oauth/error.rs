//! Typed failures of the sign-in and of the token endpoint, carrying facts for the diagnosis.
//!
//! Every field holds what the provider or the network said (HTTP status, OAuth `error`, AADSTS
//! numbers, trace ids, the kind of certificate problem), never a value mailgrant sent: text
//! that came back from a server is scrubbed of the code, verifier, refresh token and client
//! secret of the request before it is stored here, so `Display` and `Debug` are safe to log.
//! Operator wording lives in `crate::diagnose::oauth`, not here.

use std::fmt;
use std::time::{Duration, SystemTime};

/// What an OAuth error answer said: from the token endpoint's JSON body or from the query of an
/// `error` redirect to the loopback listener.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProviderError {
    /// The OAuth `error` code, such as `invalid_client`.
    pub error: String,
    /// `error_description`, decoded, when given.
    pub description: Option<String>,
    /// AADSTS numbers from `error_codes`, or read from the description when that is missing.
    pub aadsts: Vec<u32>,
    /// Entra's `trace_id` (from the JSON field or the description).
    pub trace_id: Option<String>,
    /// Entra's `correlation_id` (from the JSON field or the description).
    pub correlation_id: Option<String>,
    /// `error_uri`, when given.
    pub error_uri: Option<String>,
    /// Entra's `timestamp`, when given.
    pub timestamp: Option<String>,
}

impl ProviderError {
    /// True when the answer carries this AADSTS number.
    pub fn has_code(&self, code: u32) -> bool {
        self.aadsts.contains(&code)
    }

    /// The first line of the description, without Entra's trace/correlation/timestamp tail.
    pub fn short_description(&self) -> Option<&str> {
        let text = self.description.as_deref()?;
        let cut = ["\r", "\n", " Trace ID:", " Correlation ID:", " Timestamp:"]
            .iter()
            .filter_map(|marker| text.find(marker))
            .min()
            .unwrap_or(text.len());
        Some(text[..cut].trim())
    }

    /// Facts for a diagnosis' details: codes and ids, no secret.
    pub fn details(&self) -> Vec<String> {
        let mut details = vec![format!("error: {}", self.error)];
        if let Some(text) = self.short_description() {
            details.push(format!("description: {text}"));
        }
        for (name, value) in [
            ("trace id", &self.trace_id),
            ("correlation id", &self.correlation_id),
            ("timestamp", &self.timestamp),
            ("error uri", &self.error_uri),
        ] {
            if let Some(value) = value {
                details.push(format!("{name}: {value}"));
            }
        }
        details
    }
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.error)?;
        if let Some(text) = self.short_description() {
            write!(f, ": {text}")?;
        }
        Ok(())
    }
}

/// What was wrong with a server certificate, as rustls reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertificateProblem {
    /// Signed by a CA this machine does not trust (typical of a TLS-inspecting proxy).
    UnknownIssuer,
    /// Past its end date.
    Expired,
    /// Not valid yet (often the clock of this machine is wrong).
    NotValidYet,
    /// Issued for another host name.
    WrongHostName,
    /// Revoked by its issuer.
    Revoked,
    /// Any other certificate fault, in rustls' words.
    Other(String),
}

impl fmt::Display for CertificateProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertificateProblem::UnknownIssuer => f.write_str("issued by an unknown authority"),
            CertificateProblem::Expired => f.write_str("expired"),
            CertificateProblem::NotValidYet => f.write_str("not valid yet"),
            CertificateProblem::WrongHostName => f.write_str("issued for another host name"),
            CertificateProblem::Revoked => f.write_str("revoked"),
            CertificateProblem::Other(text) => f.write_str(text),
        }
    }
}

/// Why no HTTP answer came back from the token endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransportKind {
    /// The host name could not be resolved.
    Dns,
    /// Nothing listens on that address and port (or a firewall rejects it).
    ConnectionRefused,
    /// The connection was closed or reset before an answer arrived.
    ConnectionReset,
    /// The exchange took longer than the profile's timeout.
    Timeout,
    /// The server's certificate was refused.
    Certificate(CertificateProblem),
    /// The TLS handshake failed for another reason (protocol, cipher, not TLS at all).
    TlsHandshake,
    /// The configured HTTP proxy refused or failed the connection.
    Proxy,
    /// The answer (its headers or body) was far larger than any token answer; what answered
    /// is not the token endpoint. The limit is in the detail.
    Oversized,
    /// Anything else.
    Other,
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportKind::Dns => f.write_str("the host name cannot be resolved"),
            TransportKind::ConnectionRefused => f.write_str("the connection was refused"),
            TransportKind::ConnectionReset => f.write_str("the connection was closed early"),
            TransportKind::Timeout => f.write_str("no answer within the timeout"),
            TransportKind::Certificate(problem) => write!(f, "the certificate is {problem}"),
            TransportKind::TlsHandshake => f.write_str("the TLS handshake failed"),
            TransportKind::Proxy => f.write_str("the HTTP proxy failed"),
            TransportKind::Oversized => f.write_str("the answer is far larger than a token answer"),
            TransportKind::Other => f.write_str("the request failed"),
        }
    }
}

/// A failure of one request to the token endpoint.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No HTTP answer: network, DNS, TLS or timeout.
    #[error("cannot reach the token endpoint {host}: {kind} ({detail})")]
    Transport {
        /// Host of the token URL.
        host: String,
        /// What went wrong.
        kind: TransportKind,
        /// The library's own words, for the details pane.
        detail: String,
    },
    /// The provider answered with an OAuth error body.
    #[error("the token endpoint refused the request (HTTP {status}): {error}")]
    Provider {
        /// HTTP status of the answer.
        status: u16,
        /// What it said.
        error: Box<ProviderError>,
        /// The wait its `Retry-After` header asked for (429, 503), from when the answer came.
        retry_after: Option<Duration>,
    },
    /// The endpoint answered with something that is not an OAuth answer (an HTML page, empty).
    #[error("the token endpoint answered HTTP {status} with {what}")]
    UnexpectedResponse {
        /// HTTP status of the answer.
        status: u16,
        /// Short description of the body (content type, first words of an error page).
        what: String,
        /// The wait its `Retry-After` header asked for, from when the answer came.
        retry_after: Option<Duration>,
    },
    /// The endpoint redirected instead of answering (a proxy login page or a wrong URL).
    #[error("the token endpoint redirected (HTTP {status}) to {location}")]
    Redirected {
        /// HTTP status of the answer.
        status: u16,
        /// Where it pointed to.
        location: String,
    },
    /// A success answer that cannot be read as a token response.
    #[error("the token response cannot be read: {reason}")]
    InvalidResponse {
        /// What is wrong with it (field path and problem, never the body).
        reason: String,
    },
}

/// HTTP statuses after which the same request may succeed later.
fn transient_status(status: u16) -> bool {
    status == 429 || (500..=599).contains(&status)
}

/// OAuth `error` values a provider uses for a passing fault.
const TRANSIENT_ERRORS: [&str; 2] = ["temporarily_unavailable", "server_error"];

impl TokenError {
    /// True when retrying later can help (timeouts, network faults, HTTP 5xx and 429, an
    /// explicit `temporarily_unavailable`); false when someone must change something first
    /// (certificates, TLS, the proxy, an answer far too large to be the token endpoint's).
    pub fn is_transient(&self) -> bool {
        match self {
            TokenError::Transport { kind, .. } => !matches!(
                kind,
                TransportKind::Certificate(_)
                    | TransportKind::TlsHandshake
                    | TransportKind::Proxy
                    | TransportKind::Oversized
            ),
            TokenError::Provider { status, error, .. } => {
                transient_status(*status) || TRANSIENT_ERRORS.contains(&error.error.as_str())
            }
            TokenError::UnexpectedResponse { status, .. } => transient_status(*status),
            TokenError::Redirected { .. } | TokenError::InvalidResponse { .. } => false,
        }
    }

    /// HTTP status of the answer, when one came back.
    pub fn status(&self) -> Option<u16> {
        match self {
            TokenError::Provider { status, .. }
            | TokenError::UnexpectedResponse { status, .. }
            | TokenError::Redirected { status, .. } => Some(*status),
            TokenError::Transport { .. } | TokenError::InvalidResponse { .. } => None,
        }
    }

    /// The provider's error answer, when there was one.
    pub fn provider_error(&self) -> Option<&ProviderError> {
        match self {
            TokenError::Provider { error, .. } => Some(error),
            _ => None,
        }
    }

    /// AADSTS numbers in the answer (empty when none).
    pub fn aadsts(&self) -> &[u32] {
        self.provider_error().map(|e| e.aadsts.as_slice()).unwrap_or_default()
    }

    /// The wait the answer's `Retry-After` header asked for, when it carried one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            TokenError::Provider { retry_after, .. }
            | TokenError::UnexpectedResponse { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Reads a `Retry-After` value (RFC 9110 §10.2.3): delay seconds, or an HTTP-date taken
/// relative to `now` (a date in the past means no wait). A number too large for any clock is
/// read as the longest wait; the caller caps it. `None` for anything else.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(value.parse::<u64>().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// An `error` redirect from the authorize page (after its `state` was checked).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the sign-in page answered {0}")]
pub struct CallbackError(pub Box<ProviderError>);

/// A failure of the browser sign-in as a whole.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// The operator cancelled while waiting for the browser.
    #[error("the sign-in was cancelled")]
    Cancelled,
    /// No valid answer reached the loopback listener in time.
    #[error("no answer from the browser reached {redirect_uri} within {} s", waited.as_secs())]
    TimedOut {
        /// The redirect URI that was sent (and must be registered).
        redirect_uri: String,
        /// How long it waited.
        waited: Duration,
    },
    /// Only answers from another sign-in attempt (wrong `state`) arrived before the timeout.
    #[error(
        "only answers from another sign-in attempt reached {redirect_uri} ({rejected} \
             rejected)"
    )]
    StateMismatch {
        /// The redirect URI that was sent.
        redirect_uri: String,
        /// How many callbacks carried a foreign `state`.
        rejected: u32,
    },
    /// The sign-in page redirected back with an error.
    #[error(transparent)]
    Callback(#[from] CallbackError),
    /// The loopback listener could not be opened.
    #[error("cannot listen for the browser's answer on {address}: {source}")]
    Listener {
        /// The address that could not be bound.
        address: String,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The authorize request could not be built from the profile.
    #[error("cannot build the sign-in address: {0}")]
    AuthorizeUrl(String),
    /// Redeeming the code failed.
    #[error(transparent)]
    Token(#[from] TokenError),
}

impl SignInError {
    /// True when trying the same sign-in again can help without changing a setting.
    pub fn is_transient(&self) -> bool {
        match self {
            SignInError::Cancelled
            | SignInError::TimedOut { .. }
            | SignInError::StateMismatch { .. } => true,
            SignInError::Token(e) => e.is_transient(),
            SignInError::Callback(CallbackError(e)) => TRANSIENT_ERRORS.contains(&e.error.as_str()),
            SignInError::Listener { .. } | SignInError::AuthorizeUrl(_) => false,
        }
    }
}

impl ProviderError {
    /// Builds the error from its parts, reading AADSTS numbers and Entra's trace and
    /// correlation ids out of the description when no separate field carried them.
    pub fn from_parts(error: &str, description: Option<String>, error_uri: Option<String>) -> Self {
        let aadsts = description.as_deref().map(aadsts_codes).unwrap_or_default();
        let trace_id = description.as_deref().and_then(|d| labelled_id(d, "Trace ID:"));
        let correlation_id = description.as_deref().and_then(|d| labelled_id(d, "Correlation ID:"));
        ProviderError {
            error: error.to_owned(),
            description,
            aadsts,
            trace_id,
            correlation_id,
            error_uri,
            timestamp: None,
        }
    }
}

/// Every `AADSTS<digits>` in a text, in order, without repeats.
pub(crate) fn aadsts_codes(text: &str) -> Vec<u32> {
    let mut codes = Vec::new();
    for (at, _) in text.match_indices("AADSTS") {
        let digits: String =
            text[at + 6..].chars().take_while(char::is_ascii_digit).take(9).collect();
        if let Ok(code) = digits.parse::<u32>()
            && !codes.contains(&code)
        {
            codes.push(code);
        }
    }
    codes
}

/// The GUID-like word after a label such as `Trace ID:`.
fn labelled_id(text: &str, label: &str) -> Option<String> {
    let rest = &text[text.find(label)? + label.len()..];
    let id: String =
        rest.trim_start().chars().take_while(|c| c.is_ascii_hexdigit() || *c == '-').collect();
    (!id.is_empty()).then_some(id)
}

/// Replaces every occurrence of the given secret values in server-provided text.
///
/// Servers sometimes echo what they were sent ("invalid code XYZ"); nothing we sent may reach an
/// error's text. Values shorter than 4 characters are left alone (they cannot be told apart from
/// ordinary words and are not secrets worth the name).
pub(crate) fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut text = text.to_owned();
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        if text.contains(*secret) {
            text = text.replace(*secret, "[redacted]");
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(status: u16, error: &str) -> TokenError {
        TokenError::Provider {
            status,
            error: Box::new(ProviderError { error: error.to_owned(), ..ProviderError::default() }),
            retry_after: None,
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates_and_never_overflows() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").expect("date");
        let secs = Duration::from_secs;
        assert_eq!(parse_retry_after("2", now), Some(secs(2)));
        assert_eq!(parse_retry_after(" 120 ", now), Some(secs(120)));
        assert_eq!(parse_retry_after("99999999999", now), Some(secs(99_999_999_999)));
        let huge = "9".repeat(40);
        assert_eq!(parse_retry_after(&huge, now), Some(secs(u64::MAX)));
        // The three date forms RFC 9110 makes a recipient accept.
        for date in [
            "Sun, 06 Nov 1994 08:50:07 GMT",
            "Sunday, 06-Nov-94 08:50:07 GMT",
            "Sun Nov  6 08:50:07 1994",
        ] {
            assert_eq!(parse_retry_after(date, now), Some(secs(30)), "{date}");
        }
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now), Some(secs(0)));
        for junk in ["", "-1", "1.5", "soon", "2 s"] {
            assert_eq!(parse_retry_after(junk, now), None, "{junk:?}");
        }
    }

    #[test]
    fn transient_means_network_5xx_429_or_temporarily_unavailable() {
        assert!(provider(503, "server_error").is_transient());
        assert!(provider(429, "slow_down").is_transient());
        assert!(provider(400, "temporarily_unavailable").is_transient());
        assert!(!provider(401, "invalid_client").is_transient());
        assert!(!provider(400, "invalid_grant").is_transient());
        let timeout = TokenError::Transport {
            host: "127.0.0.1".into(),
            kind: TransportKind::Timeout,
            detail: "timeout".into(),
        };
        assert!(timeout.is_transient());
        let tls = TokenError::Transport {
            host: "127.0.0.1".into(),
            kind: TransportKind::Certificate(CertificateProblem::UnknownIssuer),
            detail: "invalid peer certificate".into(),
        };
        assert!(!tls.is_transient());
        let oversized = TokenError::Transport {
            host: "127.0.0.1".into(),
            kind: TransportKind::Oversized,
            detail: "the response body is larger than request limit: 1048576".into(),
        };
        assert!(!oversized.is_transient(), "a 100 MB answer is not network weather");
    }

    #[test]
    fn short_description_drops_entras_trace_tail() {
        let e = ProviderError {
            error: "invalid_client".into(),
            description: Some(
                "AADSTS7000222: The provided client secret keys are expired. Trace ID: 1 \
                 Timestamp: 2025"
                    .into(),
            ),
            ..ProviderError::default()
        };
        assert_eq!(
            e.short_description(),
            Some("AADSTS7000222: The provided client secret keys are expired.")
        );
        assert_eq!(
            e.to_string(),
            "invalid_client: AADSTS7000222: The provided client secret keys are expired."
        );
    }

    #[test]
    fn aadsts_numbers_and_ids_are_read_from_the_description() {
        let e = ProviderError::from_parts(
            "invalid_request",
            Some(
                "AADSTS50194: Application is not multi-tenant.\r\nTrace ID: \
                 0a1b-2c\r\nCorrelation ID: ff-01\r\n AADSTS50194 again AADSTS7"
                    .into(),
            ),
            None,
        );
        assert_eq!(e.aadsts, [50194, 7]);
        assert_eq!(e.trace_id.as_deref(), Some("0a1b-2c"));
        assert_eq!(e.correlation_id.as_deref(), Some("ff-01"));
        assert_eq!(e.short_description(), Some("AADSTS50194: Application is not multi-tenant."));
    }

    #[test]
    fn scrub_removes_every_sent_value() {
        let text = scrub(
            "bad code abcdef and again abcdef; verifier xyz12345",
            &["abcdef", "xyz12345", "ab"],
        );
        assert_eq!(text, "bad code [redacted] and again [redacted]; verifier [redacted]");
    }
}

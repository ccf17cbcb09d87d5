//! IMAP inbox check and round-trip search with `AUTHENTICATE XOAUTH2`, over rustls.
//!
//! Invariants:
//! - TLS before anything is authenticated: implicit TLS on `Tls` endpoints; on `StartTls`
//!   endpoints the greeting and `STARTTLS` are exchanged by hand here, then the TLS stream is
//!   handed to the `imap` crate (which has no TLS of its own in this build).
//! - The authenticator answers the first challenge with the XOAUTH2 string and every later
//!   one (the server's base64 JSON error) with an empty response, keeping the decoded JSON
//!   for the error (BR-10, BR-20). The token is sent once.
//! - Time is bounded per step (see [`net`]): the TLS handshake, the greeting, STARTTLS,
//!   AUTHENTICATE, SELECT, each SEARCH and NOOP and the LOGOUT each get the caller's timeout,
//!   however slowly the server trickles, and at most [`net::MAX_STEP_BYTES`]. The inbox check
//!   makes at most 6 steps after the connect (greeting, STARTTLS, TLS, AUTHENTICATE, SELECT,
//!   LOGOUT), so it ends within the connect plus 6 × the timeout. The round-trip search polls
//!   every 250 ms (NOOP, then SEARCH) until found or its own timeout is spent; the poll running
//!   then finishes within one more step.
//! - The server's tagged reply text is kept (`NO AUTHENTICATE failed.`,
//!   `BAD User is authenticated but not connected.`); it passes through
//!   [`Xoauth2Credentials::redact`] and no error ever quotes our own AUTHENTICATE data.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::time::{Duration, Instant};

use oauth2::AccessToken;

use super::net::{self, DeadlineStream, StepClock, TlsStream, TransportError};
use super::xoauth2::{CredentialsError, ErrorChallenge, Xoauth2Credentials};
use crate::profile::ServerEndpoint;
use crate::provider::Security;
use crate::trust::Trust;

/// What the inbox check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InboxStatus {
    /// Messages in INBOX (the SELECT's EXISTS).
    pub exists: u32,
}

/// The step of the IMAP exchange where something happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImapPhase {
    Connect,
    Tls,
    Greeting,
    StartTls,
    Auth,
    Select,
    Search,
}

impl fmt::Display for ImapPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ImapPhase::Connect => "connect",
            ImapPhase::Tls => "tls",
            ImapPhase::Greeting => "greeting",
            ImapPhase::StartTls => "starttls",
            ImapPhase::Auth => "auth",
            ImapPhase::Select => "select",
            ImapPhase::Search => "search",
        })
    }
}

/// The status word of a failing server reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImapStatus {
    No,
    Bad,
    Bye,
}

impl fmt::Display for ImapStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ImapStatus::No => "NO",
            ImapStatus::Bad => "BAD",
            ImapStatus::Bye => "BYE",
        })
    }
}

/// Why the IMAP check failed. Display never contains a token or XOAUTH2 string.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ImapError {
    /// DNS, connect, TLS or socket failure (including timeouts).
    #[error("IMAP {phase}: {source}")]
    Transport { phase: ImapPhase, source: TransportError },
    /// The server answered NO, BAD or BYE.
    #[error("IMAP {phase}: the server answered {status} {text}{}", suffix(.challenge.as_deref()))]
    Rejected {
        phase: ImapPhase,
        status: ImapStatus,
        /// Response code such as `AUTHENTICATIONFAILED`, without brackets.
        code: Option<String>,
        /// The server's text as sent (response code included when the parser did not know it).
        text: String,
        /// The decoded XOAUTH2 error challenge, when the server sent one.
        challenge: Option<Box<ErrorChallenge>>,
    },
    /// A STARTTLS endpoint whose server refused or does not know STARTTLS.
    #[error(
        "IMAP starttls: the server refused STARTTLS ({reply}); the token is not sent without TLS"
    )]
    StartTlsUnavailable { reply: String },
    /// Something that is not the IMAP the client expected.
    #[error("IMAP {phase}: unexpected response: {detail}")]
    Protocol { phase: ImapPhase, detail: String },
    /// The XOAUTH2 string could not be built (empty user or token).
    #[error("IMAP auth: {0}")]
    Credentials(#[from] CredentialsError),
    /// The subject cannot be searched for (not printable ASCII).
    #[error("the subject to search for must be printable ASCII")]
    InvalidSubject,
}

fn suffix(challenge: Option<&ErrorChallenge>) -> String {
    challenge.map(|c| format!(" after the token challenge ({c})")).unwrap_or_default()
}

impl ImapError {
    /// The phase the failure happened in.
    pub fn phase(&self) -> Option<ImapPhase> {
        match self {
            ImapError::Transport { phase, .. }
            | ImapError::Rejected { phase, .. }
            | ImapError::Protocol { phase, .. } => Some(*phase),
            ImapError::StartTlsUnavailable { .. } => Some(ImapPhase::StartTls),
            ImapError::Credentials(_) => Some(ImapPhase::Auth),
            ImapError::InvalidSubject => None,
        }
    }

    /// The decoded XOAUTH2 error challenge, when the server sent one.
    pub fn challenge(&self) -> Option<&ErrorChallenge> {
        match self {
            ImapError::Rejected { challenge, .. } => challenge.as_deref(),
            _ => None,
        }
    }

    /// The same error, with the endpoint named in a network failure.
    pub fn at_endpoint(self, endpoint: &ServerEndpoint) -> ImapError {
        match self {
            ImapError::Transport { phase, source } => {
                ImapError::Transport { phase, source: source.at_endpoint(endpoint) }
            }
            other => other,
        }
    }

    /// True when retrying later may work (network weather, the server hanging up).
    pub fn is_transient(&self) -> bool {
        match self {
            ImapError::Transport { source, .. } => source.is_transient(),
            ImapError::Rejected { status, .. } => *status == ImapStatus::Bye,
            _ => false,
        }
    }
}

/// Pause between two searches of the round trip.
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Longest line accepted before TLS (greeting, STARTTLS reply).
const MAX_PLAIN_LINE: u64 = 8192;

/// Authenticates as `user` and selects INBOX; returns its message count.
///
/// Blocking; every step is bounded by `timeout` (the whole check by 6 of them after the
/// connect, see the module doc).
pub fn check_inbox(
    endpoint: &ServerEndpoint,
    trust: &Trust,
    user: &str,
    token: &AccessToken,
    timeout: Duration,
) -> Result<InboxStatus, ImapError> {
    inbox(endpoint, trust, user, token, timeout).map_err(|e| e.at_endpoint(endpoint))
}

fn inbox(
    endpoint: &ServerEndpoint,
    trust: &Trust,
    user: &str,
    token: &AccessToken,
    timeout: Duration,
) -> Result<InboxStatus, ImapError> {
    let credentials = Xoauth2Credentials::new(user, token)?;
    let (mut session, clock) = open_session(endpoint, trust, &credentials, timeout)?;

    clock.start_step();
    let mailbox =
        session.select("INBOX").map_err(|e| from_imap(e, ImapPhase::Select, &credentials))?;
    clock.start_step();
    let _ = session.logout();
    tracing::debug!(endpoint = %endpoint, exists = mailbox.exists, "imap inbox selected");
    Ok(InboxStatus { exists: mailbox.exists })
}

/// Searches INBOX for a message with `subject` until found or `timeout` is spent
/// (NOOP and SEARCH every 250 ms). `Ok(false)` when it did not arrive in time.
pub fn find_subject(
    endpoint: &ServerEndpoint,
    trust: &Trust,
    user: &str,
    token: &AccessToken,
    subject: &str,
    timeout: Duration,
) -> Result<bool, ImapError> {
    search_subject(endpoint, trust, user, token, subject, timeout)
        .map_err(|e| e.at_endpoint(endpoint))
}

fn search_subject(
    endpoint: &ServerEndpoint,
    trust: &Trust,
    user: &str,
    token: &AccessToken,
    subject: &str,
    timeout: Duration,
) -> Result<bool, ImapError> {
    let query = subject_query(subject)?;
    let credentials = Xoauth2Credentials::new(user, token)?;
    let deadline = Instant::now() + timeout;
    let (mut session, clock) = open_session(endpoint, trust, &credentials, timeout)?;
    clock.start_step();
    session.select("INBOX").map_err(|e| from_imap(e, ImapPhase::Select, &credentials))?;

    let search = |e| from_imap(e, ImapPhase::Search, &credentials);
    let found = loop {
        clock.start_step();
        if !session.search(&query).map_err(search)?.is_empty() {
            break true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break false;
        }
        std::thread::sleep(left.min(POLL_INTERVAL));
        clock.start_step();
        session.noop().map_err(search)?;
    };

    clock.start_step();
    let _ = session.logout();
    tracing::debug!(endpoint = %endpoint, found, "imap subject search done");
    Ok(found)
}

/// `SUBJECT "<subject>"` with the quoted-string escapes.
fn subject_query(subject: &str) -> Result<String, ImapError> {
    if subject.is_empty() || !subject.chars().all(|c| c.is_ascii() && !c.is_ascii_control()) {
        return Err(ImapError::InvalidSubject);
    }
    let quoted = subject.replace('\\', "\\\\").replace('"', "\\\"");
    Ok(format!("SUBJECT \"{quoted}\""))
}

/// Connect, TLS (implicit or STARTTLS), greeting, AUTHENTICATE XOAUTH2; the session and the
/// clock its later steps start.
fn open_session(
    endpoint: &ServerEndpoint,
    trust: &Trust,
    credentials: &Xoauth2Credentials,
    timeout: Duration,
) -> Result<(imap::Session<TlsStream>, StepClock), ImapError> {
    let transport = |phase| move |source| ImapError::Transport { phase, source };
    let tcp = net::connect(endpoint, timeout).map_err(transport(ImapPhase::Connect))?;
    let clock = tcp.clock();

    let client = match endpoint.security {
        Security::Tls => {
            let tls =
                net::handshake(tcp, &endpoint.host, trust).map_err(transport(ImapPhase::Tls))?;
            let mut client = imap::Client::new(tls);
            clock.start_step();
            let greeting = client
                .read_greeting()
                .map_err(|e| from_imap(e, ImapPhase::Greeting, credentials))?;
            check_greeting(&String::from_utf8_lossy(&greeting))?;
            client
        }
        Security::StartTls => {
            let tcp = starttls_by_hand(tcp)?;
            let tls =
                net::handshake(tcp, &endpoint.host, trust).map_err(transport(ImapPhase::Tls))?;
            imap::Client::new(tls)
        }
    };

    let authenticator = XoauthAuthenticator::new(credentials);
    clock.start_step();
    match client.authenticate("XOAUTH2", &authenticator) {
        Ok(session) => {
            tracing::debug!(endpoint = %endpoint, "imap xoauth2 accepted");
            Ok((session, clock))
        }
        Err((error, _client)) => {
            let mut error = from_imap(error, ImapPhase::Auth, credentials);
            if let ImapError::Rejected { challenge, .. } = &mut error {
                *challenge = authenticator.challenge.take().map(Box::new);
            }
            tracing::debug!(endpoint = %endpoint, "imap xoauth2 refused");
            Err(error)
        }
    }
}

/// Plain greeting and `STARTTLS` (a step each); returns the socket ready for the handshake.
fn starttls_by_hand(tcp: DeadlineStream) -> Result<DeadlineStream, ImapError> {
    let clock = tcp.clock();
    let mut io = BufReader::new(tcp);
    clock.start_step();
    let greeting = read_plain_line(&mut io, ImapPhase::Greeting)?;
    check_greeting(&greeting)?;

    let phase = ImapPhase::StartTls;
    clock.start_step();
    let written = io.get_mut().write_all(b"s1 STARTTLS\r\n").and_then(|()| io.get_mut().flush());
    written.map_err(|e| ImapError::Transport { phase, source: TransportError::from_io(&e) })?;
    let reply = loop {
        let line = read_plain_line(&mut io, phase)?;
        if line.starts_with("s1 ") {
            break line;
        }
    };
    if !reply[3..].trim_start().to_ascii_uppercase().starts_with("OK") {
        return Err(ImapError::StartTlsUnavailable { reply: shorten(&reply) });
    }
    if !io.buffer().is_empty() {
        let detail = "data after the STARTTLS reply, before TLS".to_owned();
        return Err(ImapError::Protocol { phase, detail });
    }
    Ok(io.into_inner())
}

fn read_plain_line<R: Read>(io: &mut BufReader<R>, phase: ImapPhase) -> Result<String, ImapError> {
    let mut raw = Vec::new();
    let read = io
        .take(MAX_PLAIN_LINE)
        .read_until(b'\n', &mut raw)
        .map_err(|e| ImapError::Transport { phase, source: TransportError::from_io(&e) })?;
    if read == 0 {
        return Err(ImapError::Transport { phase, source: TransportError::closed() });
    }
    if !raw.ends_with(b"\n") && read as u64 >= MAX_PLAIN_LINE {
        let what = format!("a line longer than {MAX_PLAIN_LINE} bytes");
        return Err(ImapError::Transport { phase, source: TransportError::oversized(&what) });
    }
    Ok(String::from_utf8_lossy(&raw).trim_end().to_owned())
}

fn check_greeting(greeting: &str) -> Result<(), ImapError> {
    let upper = greeting.to_ascii_uppercase();
    if upper.starts_with("* OK") {
        return Ok(());
    }
    let text = greeting.trim_end().to_owned();
    if let Some(rest) = text.strip_prefix("* BYE ").or_else(|| text.strip_prefix("* bye ")) {
        let (code, text) = split_code(rest);
        let status = ImapStatus::Bye;
        return Err(ImapError::Rejected {
            phase: ImapPhase::Greeting,
            status,
            code,
            text,
            challenge: None,
        });
    }
    Err(ImapError::Protocol { phase: ImapPhase::Greeting, detail: shorten(&text) })
}

/// Answers XOAUTH2 challenges: credentials first, then an empty response to the error JSON.
struct XoauthAuthenticator<'c> {
    credentials: &'c Xoauth2Credentials,
    calls: Cell<u32>,
    challenge: RefCell<Option<ErrorChallenge>>,
}

impl<'c> XoauthAuthenticator<'c> {
    fn new(credentials: &'c Xoauth2Credentials) -> Self {
        XoauthAuthenticator { credentials, calls: Cell::new(0), challenge: RefCell::new(None) }
    }
}

impl imap::Authenticator for XoauthAuthenticator<'_> {
    type Response = Vec<u8>;

    fn process(&self, challenge: &[u8]) -> Vec<u8> {
        let call = self.calls.get();
        self.calls.set(call.saturating_add(1));
        if call == 0 {
            return self.credentials.raw_secret().as_bytes().to_vec();
        }

        let decoded = ErrorChallenge::from_text(&String::from_utf8_lossy(challenge));
        tracing::debug!(challenge = %decoded, "imap xoauth2 error challenge, answering empty");
        self.challenge.replace(Some(decoded));
        Vec::new()
    }
}

/// Sorts an `imap` crate error; server text passes through the redactor.
fn from_imap(error: imap::Error, phase: ImapPhase, credentials: &Xoauth2Credentials) -> ImapError {
    let rejected = |status, information: String, code: Option<String>| {
        let text = credentials.redact(&information);
        let code = code.or_else(|| split_code(&text).0);
        ImapError::Rejected { phase, status, code, text, challenge: None }
    };
    match error {
        imap::Error::Io(e) => ImapError::Transport { phase, source: TransportError::from_io(&e) },
        imap::Error::ConnectionLost => {
            ImapError::Transport { phase, source: TransportError::closed() }
        }
        imap::Error::No(no) => {
            rejected(ImapStatus::No, no.information, no.code.map(|c| code_name(&c)))
        }
        imap::Error::Bad(bad) => {
            rejected(ImapStatus::Bad, bad.information, bad.code.map(|c| code_name(&c)))
        }
        imap::Error::Bye(bye) => {
            rejected(ImapStatus::Bye, bye.information, bye.code.map(|c| code_name(&c)))
        }
        other => {
            ImapError::Protocol { phase, detail: shorten(&credentials.redact(&other.to_string())) }
        }
    }
}

/// A response code the parser knew (`ReadOnly`), upper-cased (`READONLY`).
fn code_name(code: &impl fmt::Debug) -> String {
    let debug = format!("{code:?}");
    let name = debug.split(['(', ' ', '{']).next().unwrap_or_default();
    name.to_ascii_uppercase()
}

/// `[AUTHENTICATIONFAILED] Authentication failed.` → (Some("AUTHENTICATIONFAILED"), text).
fn split_code(text: &str) -> (Option<String>, String) {
    let code = text
        .strip_prefix('[')
        .and_then(|rest| rest.split_once(']'))
        .map(|(code, _)| code.split_whitespace().next().unwrap_or_default().to_ascii_uppercase())
        .filter(|code| !code.is_empty());
    (code, text.to_owned())
}

fn shorten(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_is_quoted_and_checked() {
        assert_eq!(subject_query("run \"7\"").expect("ok"), "SUBJECT \"run \\\"7\\\"\"");
        assert_eq!(subject_query("a\r\nb"), Err(ImapError::InvalidSubject));
        assert_eq!(subject_query("Grüße"), Err(ImapError::InvalidSubject));
    }

    #[test]
    fn bracketed_codes_are_read_from_the_text() {
        let (code, text) = split_code("[AUTHENTICATIONFAILED] Authentication failed.");
        assert_eq!(code.as_deref(), Some("AUTHENTICATIONFAILED"));
        assert_eq!(text, "[AUTHENTICATIONFAILED] Authentication failed.");
        assert_eq!(split_code("AUTHENTICATE failed.").0, None);
    }

    #[test]
    fn greeting_bye_is_a_rejection() {
        let err = check_greeting("* BYE [UNAVAILABLE] go away").expect_err("refused");
        assert!(matches!(err, ImapError::Rejected { status: ImapStatus::Bye, .. }), "{err}");
        assert!(check_greeting("* OK [CAPABILITY IMAP4rev1] ready").is_ok());
    }
}

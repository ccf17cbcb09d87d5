//! SMTP test send: TLS (implicit or STARTTLS), EHLO, `AUTH XOAUTH2`, one message.
//!
//! Invariants:
//! - Nothing is authenticated in clear. On a STARTTLS endpoint a server that does not offer
//!   STARTTLS ends the check with [`SmtpError::StartTlsUnavailable`].
//! - `AUTH XOAUTH2` always goes in two steps (RFC 4954 §4): the command alone, the server's
//!   empty `334`, then the credentials on their own line. Entra tokens are 1.5–2.5 KB, far past
//!   the 512-octet command line, and servers refuse the long line (BR-19).
//! - An error challenge (`334 <base64 JSON>`) is answered with an empty line, the final reply
//!   is read and the JSON kept in the error (BR-20). The token is sent once, never again.
//! - A message counts as sent only on a 2xx after the data; a 5xx there means not sent (BR-07).
//! - Time is bounded per step (see [`net`]): a step starts with what we send (for the greeting,
//!   with the connection or the STARTTLS handshake) and ends with the server's whole reply;
//!   each gets the caller's timeout, however slowly the server trickles. A send makes at most
//!   14 steps (greeting, EHLO, STARTTLS, TLS, EHLO, AUTH, credentials, the empty answer to an
//!   error challenge, its cancel, MAIL, RCPT, DATA, the data, QUIT), so it ends within the
//!   connect plus 14 × the timeout. A reply longer than [`MAX_REPLY_LINE`] per line or
//!   [`MAX_REPLY_LINES`] lines ends the check as [`net::TransportKind::Oversized`]. Replies are
//!   kept whole (code, enhanced status, every line) with the phase they ended.
//! - Reply text passes through [`Xoauth2Credentials::redact`], and our own AUTH line is
//!   never quoted in an error or log.
//!
//! Why not lettre's `SmtpConnection`: it could send the two steps through `command()`, but it
//! takes trust as lettre `TlsParameters` (its own root store, not our rustls `ClientConfig`),
//! and its opaque errors lose what the diagnostics need: the phase, the rustls certificate
//! error with the server's certificate, and the decoded challenge. A small client over
//! `rustls::StreamOwned` built from [`Trust`] is shorter than the adapters would be. lettre
//! still builds the message (headers, encoding, Date, Message-ID).

use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::IpAddr;
use std::time::Duration;

use lettre::Message;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use oauth2::AccessToken;

use super::net::{self, DeadlineStream, StepClock, TransportError};
use super::xoauth2::{CredentialsError, ErrorChallenge, Xoauth2Credentials};
use crate::profile::ServerEndpoint;
use crate::provider::Security;
use crate::trust::Trust;

/// The test message the SMTP check sends.
#[derive(Clone, Copy, Debug)]
pub struct SmtpTestMessage<'a> {
    /// From header and envelope sender.
    pub from: &'a str,
    /// The one recipient.
    pub to: &'a str,
    /// Subject; the round trip searches the inbox for it.
    pub subject: &'a str,
    /// Plain-text body.
    pub body: &'a str,
}

/// The server accepted the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmtpSent {
    /// The server's reply to the end of data, e.g. `250 2.0.0 Ok: queued as 6FD739D405D`.
    pub final_reply: String,
}

/// The step of the SMTP exchange where something happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpPhase {
    Connect,
    Tls,
    Greeting,
    Ehlo,
    StartTls,
    Auth,
    MailFrom,
    Rcpt,
    Data,
}

impl fmt::Display for SmtpPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SmtpPhase::Connect => "connect",
            SmtpPhase::Tls => "tls",
            SmtpPhase::Greeting => "greeting",
            SmtpPhase::Ehlo => "ehlo",
            SmtpPhase::StartTls => "starttls",
            SmtpPhase::Auth => "auth",
            SmtpPhase::MailFrom => "mail_from",
            SmtpPhase::Rcpt => "rcpt",
            SmtpPhase::Data => "data",
        })
    }
}

/// One complete server reply, all lines kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmtpReply {
    /// Three-digit reply code.
    pub code: u16,
    /// Enhanced status code (RFC 3463) from the first line, e.g. `5.7.139`.
    pub enhanced_status: Option<String>,
    /// Text of each line after the code and separator (enhanced status included).
    pub lines: Vec<String>,
}

impl SmtpReply {
    /// All lines' text joined by spaces.
    pub fn text(&self) -> String {
        self.lines.join(" ")
    }

    fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }
}

impl fmt::Display for SmtpReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.text())
    }
}

/// Why the SMTP check failed. Display never contains a token or XOAUTH2 string.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SmtpError {
    /// DNS, connect, TLS or socket failure (including timeouts).
    #[error("SMTP {phase}: {source}")]
    Transport { phase: SmtpPhase, source: TransportError },
    /// The server answered with a failure reply.
    #[error("SMTP {phase}: the server answered {reply}{}", challenge_suffix(.challenge.as_deref()))]
    Rejected { phase: SmtpPhase, reply: SmtpReply, challenge: Option<Box<ErrorChallenge>> },
    /// A STARTTLS endpoint whose server does not offer STARTTLS: nothing was authenticated.
    #[error("SMTP starttls: the server does not offer STARTTLS; the token is not sent without TLS")]
    StartTlsUnavailable { ehlo: SmtpReply },
    /// The server does not list XOAUTH2 among its AUTH mechanisms.
    #[error("SMTP auth: the server does not offer AUTH XOAUTH2 (it offers: {offered})")]
    Xoauth2NotOffered { offered: String },
    /// A reply that makes no sense at this point of the exchange.
    #[error("SMTP {phase}: unexpected reply {reply}")]
    Unexpected { phase: SmtpPhase, reply: SmtpReply },
    /// Bytes that are not an SMTP reply.
    #[error("SMTP {phase}: the server sent something that is not an SMTP reply: {line}")]
    Malformed { phase: SmtpPhase, line: String },
    /// The XOAUTH2 string could not be built (empty user or token).
    #[error("SMTP auth: {0}")]
    Credentials(#[from] CredentialsError),
    /// The test message could not be built (an address that does not parse).
    #[error("the test message cannot be built: {0}")]
    Message(String),
}

fn challenge_suffix(challenge: Option<&ErrorChallenge>) -> String {
    challenge.map(|c| format!(" after the token challenge ({c})")).unwrap_or_default()
}

impl SmtpError {
    /// The phase the failure happened in, when it happened on the wire.
    pub fn phase(&self) -> Option<SmtpPhase> {
        match self {
            SmtpError::Transport { phase, .. }
            | SmtpError::Rejected { phase, .. }
            | SmtpError::Unexpected { phase, .. }
            | SmtpError::Malformed { phase, .. } => Some(*phase),
            SmtpError::StartTlsUnavailable { .. } => Some(SmtpPhase::StartTls),
            SmtpError::Xoauth2NotOffered { .. } | SmtpError::Credentials(_) => {
                Some(SmtpPhase::Auth)
            }
            SmtpError::Message(_) => None,
        }
    }

    /// The server's reply, when the failure was one.
    pub fn reply(&self) -> Option<&SmtpReply> {
        match self {
            SmtpError::Rejected { reply, .. } | SmtpError::Unexpected { reply, .. } => Some(reply),
            SmtpError::StartTlsUnavailable { ehlo } => Some(ehlo),
            _ => None,
        }
    }

    /// The decoded XOAUTH2 error challenge, when the server sent one.
    pub fn challenge(&self) -> Option<&ErrorChallenge> {
        match self {
            SmtpError::Rejected { challenge, .. } => challenge.as_deref(),
            _ => None,
        }
    }

    /// The same error, with the endpoint named in a network failure.
    pub fn at_endpoint(self, endpoint: &ServerEndpoint) -> SmtpError {
        match self {
            SmtpError::Transport { phase, source } => {
                SmtpError::Transport { phase, source: source.at_endpoint(endpoint) }
            }
            other => other,
        }
    }

    /// True when retrying later may work: network weather or a 4xx reply.
    pub fn is_transient(&self) -> bool {
        match self {
            SmtpError::Transport { source, .. } => source.is_transient(),
            SmtpError::Rejected { reply, .. } => (400..500).contains(&reply.code),
            _ => false,
        }
    }
}

/// Longest reply line accepted; RFC 5321 says 512, servers send more in EHLO.
const MAX_REPLY_LINE: u64 = 8192;
/// Most lines accepted in one reply.
const MAX_REPLY_LINES: usize = 200;

/// Connects, authenticates with XOAUTH2 as `login` and sends `message`.
///
/// Blocking; every step is bounded by `timeout` (the whole send by 14 of them, see the module
/// doc).
pub fn send_test_message(
    endpoint: &ServerEndpoint,
    trust: &Trust,
    login: &str,
    token: &AccessToken,
    message: &SmtpTestMessage,
    timeout: Duration,
) -> Result<SmtpSent, SmtpError> {
    let sent = exchange(endpoint, trust, login, token, message, timeout);
    match &sent {
        Ok(_) => tracing::debug!(endpoint = %endpoint, "smtp test message accepted"),
        Err(e) => tracing::debug!(endpoint = %endpoint, phase = ?e.phase(), "smtp test failed"),
    }
    sent.map_err(|e| e.at_endpoint(endpoint))
}

fn exchange(
    endpoint: &ServerEndpoint,
    trust: &Trust,
    login: &str,
    token: &AccessToken,
    message: &SmtpTestMessage,
    timeout: Duration,
) -> Result<SmtpSent, SmtpError> {
    let credentials = Xoauth2Credentials::new(login, token)?;
    let (envelope_from, envelope_to, content) = build_message(message)?;

    let transport = |phase| move |source| SmtpError::Transport { phase, source };
    let tcp = net::connect(endpoint, timeout).map_err(transport(SmtpPhase::Connect))?;
    let helo = ehlo_name(&tcp);
    let clock = tcp.clock();

    match endpoint.security {
        Security::Tls => {
            let tls =
                net::handshake(tcp, &endpoint.host, trust).map_err(transport(SmtpPhase::Tls))?;
            let mut conn = Conn::new(tls, clock, &credentials);
            conn.expect_greeting()?;
            conn.submit(&helo, &envelope_from, &envelope_to, &content)
        }
        Security::StartTls => {
            let mut plain = Conn::new(tcp, clock.clone(), &credentials);
            plain.expect_greeting()?;
            let ehlo = plain.ehlo(&helo)?;
            if !ehlo.lines.iter().skip(1).any(|l| l.trim().eq_ignore_ascii_case("STARTTLS")) {
                return Err(SmtpError::StartTlsUnavailable { ehlo });
            }
            let reply = plain.command("STARTTLS", SmtpPhase::StartTls)?;
            if reply.code != 220 {
                return Err(SmtpError::Rejected {
                    phase: SmtpPhase::StartTls,
                    reply,
                    challenge: None,
                });
            }
            let tcp = plain.into_plain_socket()?;
            let tls =
                net::handshake(tcp, &endpoint.host, trust).map_err(transport(SmtpPhase::Tls))?;
            Conn::new(tls, clock, &credentials).submit(
                &helo,
                &envelope_from,
                &envelope_to,
                &content,
            )
        }
    }
}

/// Builds the message with lettre; returns envelope sender, recipient and the dot-stuffed data.
fn build_message(message: &SmtpTestMessage) -> Result<(String, String, Vec<u8>), SmtpError> {
    let parse = |field: &str, value: &str| {
        value
            .trim()
            .parse::<Mailbox>()
            .map_err(|e| SmtpError::Message(format!("{field} address {value:?}: {e}")))
    };
    let from = parse("from", message.from)?;
    let to = parse("to", message.to)?;
    let envelope = (from.email.to_string(), to.email.to_string());

    let built = Message::builder()
        .from(from)
        .to(to)
        .subject(message.subject)
        .message_id(None)
        .header(ContentType::TEXT_PLAIN)
        .body(message.body.to_owned())
        .map_err(|e| SmtpError::Message(e.to_string()))?;
    Ok((envelope.0, envelope.1, dot_stuff(&built.formatted())))
}

/// CRLF line endings, a leading dot doubled on every line, then the `.` terminator.
fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 64);
    let body = message.strip_suffix(b"\n").unwrap_or(message);
    let body = body.strip_suffix(b"\r").unwrap_or(body);
    for line in body.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// Our address as an EHLO address literal (`[192.0.2.1]`, `[IPv6:::1]`).
fn ehlo_name(tcp: &DeadlineStream) -> String {
    match tcp.socket().local_addr().map(|a| a.ip()) {
        Ok(IpAddr::V4(ip)) => format!("[{ip}]"),
        Ok(IpAddr::V6(ip)) => format!("[IPv6:{ip}]"),
        Err(_) => "mailgrant.invalid".to_owned(),
    }
}

/// One SMTP connection (plain before STARTTLS, TLS after).
struct Conn<'c, S: Read + Write> {
    io: BufReader<S>,
    clock: StepClock,
    credentials: &'c Xoauth2Credentials,
}

impl<'c, S: Read + Write> Conn<'c, S> {
    fn new(stream: S, clock: StepClock, credentials: &'c Xoauth2Credentials) -> Self {
        Conn { io: BufReader::new(stream), clock, credentials }
    }

    /// A new step: the timeout starts again from now.
    fn start_step(&mut self) {
        self.clock.start_step();
    }

    /// The greeting is a step of its own, starting when the connection (or TLS) is up.
    fn expect_greeting(&mut self) -> Result<(), SmtpError> {
        self.start_step();
        let reply = self.reply(SmtpPhase::Greeting)?;
        if reply.code != 220 {
            return Err(SmtpError::Rejected { phase: SmtpPhase::Greeting, reply, challenge: None });
        }
        Ok(())
    }

    fn ehlo(&mut self, helo: &str) -> Result<SmtpReply, SmtpError> {
        let reply = self.command(&format!("EHLO {helo}"), SmtpPhase::Ehlo)?;
        if reply.code != 250 {
            return Err(SmtpError::Rejected { phase: SmtpPhase::Ehlo, reply, challenge: None });
        }
        Ok(reply)
    }

    /// Everything after TLS is up: EHLO, AUTH, MAIL, RCPT, DATA, QUIT.
    fn submit(
        &mut self,
        helo: &str,
        from: &str,
        to: &str,
        content: &[u8],
    ) -> Result<SmtpSent, SmtpError> {
        let ehlo = self.ehlo(helo)?;
        let mechanisms = auth_mechanisms(&ehlo);
        if !mechanisms.iter().any(|m| m.eq_ignore_ascii_case("XOAUTH2")) {
            return Err(SmtpError::Xoauth2NotOffered { offered: mechanisms.join(" ") });
        }
        self.authenticate()?;

        self.expect(&format!("MAIL FROM:<{from}>"), SmtpPhase::MailFrom, |c| c == 250)?;
        self.expect(&format!("RCPT TO:<{to}>"), SmtpPhase::Rcpt, |c| c == 250 || c == 251)?;
        self.expect("DATA", SmtpPhase::Data, |c| c == 354)?;
        self.write(content, SmtpPhase::Data)?;
        let reply = self.reply(SmtpPhase::Data)?;
        if !reply.is_positive() {
            return Err(SmtpError::Rejected { phase: SmtpPhase::Data, reply, challenge: None });
        }

        // The message is accepted; a failing QUIT changes nothing.
        let _ = self.command("QUIT", SmtpPhase::Data);
        Ok(SmtpSent { final_reply: reply.to_string() })
    }

    /// The two-step XOAUTH2 exchange; the credentials are written exactly once.
    fn authenticate(&mut self) -> Result<(), SmtpError> {
        let phase = SmtpPhase::Auth;
        let go_ahead = self.command("AUTH XOAUTH2", phase)?;
        match go_ahead.code {
            334 => {}
            code if code >= 400 => {
                return Err(SmtpError::Rejected { phase, reply: go_ahead, challenge: None });
            }
            _ => return Err(SmtpError::Unexpected { phase, reply: go_ahead }),
        }

        let credentials = self.credentials.base64_secret().to_owned();
        self.send_line(&credentials, phase)?;
        let reply = self.reply(phase)?;
        if reply.code == 235 {
            tracing::debug!("smtp xoauth2 accepted");
            return Ok(());
        }
        if reply.code != 334 {
            return Err(SmtpError::Rejected { phase, reply, challenge: None });
        }

        let challenge = ErrorChallenge::decode(&reply.text());
        tracing::debug!(challenge = %challenge, "smtp xoauth2 error challenge, answering empty");
        let last = self.command("", phase)?;
        match last.code {
            235 => Ok(()),
            334 => {
                // Cancel (RFC 4954) rather than answer again; the token is never resent.
                let _ = self.command("*", phase);
                Err(SmtpError::Unexpected { phase, reply: last })
            }
            _ => Err(SmtpError::Rejected {
                phase,
                reply: last,
                challenge: Some(Box::new(challenge)),
            }),
        }
    }

    fn expect(
        &mut self,
        line: &str,
        phase: SmtpPhase,
        ok: impl Fn(u16) -> bool,
    ) -> Result<SmtpReply, SmtpError> {
        let reply = self.command(line, phase)?;
        if ok(reply.code) {
            Ok(reply)
        } else if reply.code >= 400 {
            Err(SmtpError::Rejected { phase, reply, challenge: None })
        } else {
            Err(SmtpError::Unexpected { phase, reply })
        }
    }

    fn command(&mut self, line: &str, phase: SmtpPhase) -> Result<SmtpReply, SmtpError> {
        self.send_line(line, phase)?;
        self.reply(phase)
    }

    fn send_line(&mut self, line: &str, phase: SmtpPhase) -> Result<(), SmtpError> {
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        self.write(&bytes, phase)
    }

    /// Writes `bytes` as the start of a new step, which ends with the reply to them.
    fn write(&mut self, bytes: &[u8], phase: SmtpPhase) -> Result<(), SmtpError> {
        self.start_step();
        let stream = self.io.get_mut();
        stream
            .write_all(bytes)
            .and_then(|()| stream.flush())
            .map_err(|e| SmtpError::Transport { phase, source: TransportError::from_io(&e) })
    }

    /// Reads one whole reply (every continuation line), redacted.
    fn reply(&mut self, phase: SmtpPhase) -> Result<SmtpReply, SmtpError> {
        let mut lines = Vec::new();
        loop {
            let mut raw = Vec::new();
            let read = (&mut self.io)
                .take(MAX_REPLY_LINE)
                .read_until(b'\n', &mut raw)
                .map_err(|e| SmtpError::Transport { phase, source: TransportError::from_io(&e) })?;
            if read == 0 {
                return Err(SmtpError::Transport { phase, source: TransportError::closed() });
            }
            let unterminated = !raw.ends_with(b"\n");
            if unterminated && read as u64 >= MAX_REPLY_LINE {
                let what = format!("a reply line longer than {MAX_REPLY_LINE} bytes");
                return Err(SmtpError::Transport {
                    phase,
                    source: TransportError::oversized(&what),
                });
            }
            let text = self.credentials.redact(&String::from_utf8_lossy(&raw));
            let text = text.trim_end_matches(['\r', '\n']);
            let malformed = || SmtpError::Malformed { phase, line: shorten(text) };
            if unterminated {
                return Err(malformed());
            }

            let (code, rest) = parse_reply_line(text).ok_or_else(malformed)?;
            let last = !rest.starts_with('-');
            lines.push((code, rest.get(1..).unwrap_or("").to_owned()));
            if last {
                break;
            }
            if lines.len() >= MAX_REPLY_LINES {
                let what = format!("a reply of more than {MAX_REPLY_LINES} lines");
                return Err(SmtpError::Transport {
                    phase,
                    source: TransportError::oversized(&what),
                });
            }
        }

        let code = lines.last().map(|(c, _)| *c).unwrap_or_default();
        let lines: Vec<String> = lines.into_iter().map(|(_, t)| t).collect();
        let enhanced_status = lines.first().and_then(|l| enhanced_status(l));
        tracing::debug!(%phase, code, "smtp reply");
        Ok(SmtpReply { code, enhanced_status, lines })
    }

    /// The plain socket back for the TLS handshake after `220` to STARTTLS. Bytes already
    /// buffered would be plaintext injected before TLS, so they end the check.
    fn into_plain_socket(self) -> Result<S, SmtpError> {
        if !self.io.buffer().is_empty() {
            let line = shorten(&String::from_utf8_lossy(self.io.buffer()));
            return Err(SmtpError::Malformed { phase: SmtpPhase::StartTls, line });
        }
        Ok(self.io.into_inner())
    }
}

/// `250-AUTH LOGIN XOAUTH2` / `250 AUTH=PLAIN` → the mechanism names.
fn auth_mechanisms(ehlo: &SmtpReply) -> Vec<String> {
    ehlo.lines
        .iter()
        .skip(1)
        .filter_map(|line| {
            let upper = line.to_ascii_uppercase();
            let rest = upper.strip_prefix("AUTH ").or_else(|| upper.strip_prefix("AUTH="))?;
            Some(rest.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        })
        .flatten()
        .collect()
}

/// `535-5.7.8 text` → (535, "-5.7.8 text"); the separator is kept to tell continuation lines.
fn parse_reply_line(line: &str) -> Option<(u16, &str)> {
    let digits = line.get(..3)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let rest = &line[3..];
    if !(rest.is_empty() || rest.starts_with(' ') || rest.starts_with('-')) {
        return None;
    }
    Some((digits.parse().ok()?, rest))
}

/// `5.7.139 Authentication unsuccessful` → `5.7.139`.
fn enhanced_status(text: &str) -> Option<String> {
    let first = text.split_whitespace().next()?;
    let parts: Vec<&str> = first.split('.').collect();
    let well_formed = parts.len() == 3
        && matches!(parts[0], "2" | "4" | "5")
        && parts[1..]
            .iter()
            .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    well_formed.then(|| first.to_owned())
}

fn shorten(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_lines_parse_with_enhanced_status() {
        assert_eq!(parse_reply_line("250-PIPELINING"), Some((250, "-PIPELINING")));
        assert_eq!(parse_reply_line("334 "), Some((334, " ")));
        assert_eq!(parse_reply_line("334"), Some((334, "")));
        assert_eq!(parse_reply_line("hello"), None);
        assert_eq!(
            enhanced_status("5.7.139 Authentication unsuccessful").as_deref(),
            Some("5.7.139")
        );
        assert_eq!(enhanced_status("STOREDRV.Submission"), None);
    }

    #[test]
    fn auth_mechanisms_are_read_from_both_ehlo_forms() {
        let ehlo = SmtpReply {
            code: 250,
            enhanced_status: None,
            lines: vec![
                "smtp.example.test".into(),
                "AUTH LOGIN xoauth2".into(),
                "AUTH=PLAIN".into(),
            ],
        };
        assert_eq!(auth_mechanisms(&ehlo), ["LOGIN", "XOAUTH2", "PLAIN"]);
    }

    #[test]
    fn data_is_dot_stuffed_and_terminated() {
        assert_eq!(dot_stuff(b"a\r\n.b\r\nc\r\n"), b"a\r\n..b\r\nc\r\n.\r\n");
        assert_eq!(dot_stuff(b"a\n.\n"), b"a\r\n..\r\n.\r\n");
    }

    #[test]
    fn the_test_message_carries_subject_and_addresses() {
        let message = SmtpTestMessage {
            from: "alarms@example.test",
            to: "ops@example.test",
            subject: "mailgrant test 42",
            body: "hello",
        };
        let (from, to, data) = build_message(&message).expect("built");
        assert_eq!((from.as_str(), to.as_str()), ("alarms@example.test", "ops@example.test"));
        let text = String::from_utf8(data).expect("utf8");
        assert!(text.contains("Subject: mailgrant test 42\r\n"), "{text}");
        assert!(text.contains("Message-ID: <"), "{text}");
        assert!(text.ends_with("\r\n.\r\n"));
        let bad = SmtpTestMessage { from: "not an address", ..message };
        assert!(matches!(build_message(&bad), Err(SmtpError::Message(_))));
    }
}

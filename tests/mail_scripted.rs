//! The SMTP and IMAP checks against scripted servers on 127.0.0.1 that speak real TLS (a test
//! CA made with rcgen, trusted through `Trust::load(Some(ca_file))`, the same setting the
//! operator uses for a TLS-inspecting proxy) and replay the exact reply lines of the field
//! cases. Each test asserts the diagnosis, that the fix names the remedy, that no token or
//! XOAUTH2 string reaches any error or diagnosis text, and what the server received.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use mailgrant::diagnose::Diagnosis;
use mailgrant::diagnose::mail::{self as diag, MailContext};
use mailgrant::mail::{
    CertificateProblem, ImapError, ImapPhase, ImapStatus, SmtpError, SmtpPhase, SmtpTestMessage,
    TransportKind, check_inbox, find_subject, send_test_message,
};
use mailgrant::profile::ServerEndpoint;
use mailgrant::provider::Security;
use mailgrant::trust::Trust;
use oauth2::AccessToken;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

const TIMEOUT: Duration = Duration::from_secs(5);
const MAILBOX: &str = "alarms@example.com";

// --- TLS material ------------------------------------------------------------------------------

/// A CA named `ca_name`, a leaf for localhost/127.0.0.1 signed by it, and the CA as a PEM file.
struct TestPki {
    server: Arc<ServerConfig>,
    ca_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestPki {
    fn new(ca_name: &str) -> TestPki {
        TestPki::with_leaf(ca_name, Leaf::default())
    }

    /// A PKI whose leaf differs from the usual one as `leaf` says.
    fn with_leaf(ca_name: &str, leaf: Leaf) -> TestPki {
        let ca_key = KeyPair::generate().expect("ca key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, ca_name);
        let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf_key = KeyPair::generate().expect("leaf key");
        let names = leaf.names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
        let mut leaf_params = CertificateParams::new(names).expect("leaf params");
        leaf_params.distinguished_name.push(DnType::CommonName, leaf.names[0]);
        let now = time::OffsetDateTime::now_utc();
        leaf_params.not_before = now + time::Duration::days(leaf.from_days);
        leaf_params.not_after = now + time::Duration::days(leaf.until_days);
        if leaf.client_only {
            leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        }
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).expect("leaf cert");

        let dir = tempfile::tempdir().expect("tempdir");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca_cert.pem()).expect("write ca");

        let chain: Vec<CertificateDer<'static>> = vec![leaf.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server config");
        TestPki { server: Arc::new(server), ca_file, _dir: dir }
    }

    fn trust(&self) -> Trust {
        Trust::load(Some(&self.ca_file)).expect("trust")
    }
}

/// How the server's certificate is made: its names, its validity in days from now, and
/// whether it is (wrongly) made for clients only.
struct Leaf {
    names: &'static [&'static str],
    from_days: i64,
    until_days: i64,
    client_only: bool,
}

impl Default for Leaf {
    fn default() -> Leaf {
        Leaf {
            names: &["localhost", "127.0.0.1"],
            from_days: -1,
            until_days: 300,
            client_only: false,
        }
    }
}

// --- Scripted server ---------------------------------------------------------------------------

enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ServerConnection, TcpStream>>),
    Switching,
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
            Stream::Switching => Err(io::ErrorKind::NotConnected.into()),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
            Stream::Switching => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
            Stream::Switching => Ok(()),
        }
    }
}

/// The server side of one connection; every line received is recorded.
struct Peer {
    stream: Stream,
    tls: Arc<ServerConfig>,
    received: Vec<String>,
}

impl Peer {
    fn send(&mut self, lines: &str) {
        for line in lines.split('\n') {
            self.stream.write_all(line.as_bytes()).expect("server write");
            self.stream.write_all(b"\r\n").expect("server write");
        }
        self.stream.flush().expect("server flush");
    }

    /// One line without CRLF; `None` when the client closed.
    fn recv(&mut self) -> Option<String> {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            match self.stream.read(&mut byte) {
                Ok(0) | Err(_) => return None,
                Ok(_) if byte[0] == b'\n' => break,
                Ok(_) => line.push(byte[0]),
            }
        }
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let line = String::from_utf8_lossy(&line).into_owned();
        self.received.push(line.clone());
        Some(line)
    }

    fn expect(&mut self, prefix: &str) -> String {
        let line = self.recv().unwrap_or_default();
        assert!(
            line.to_ascii_uppercase().starts_with(&prefix.to_ascii_uppercase()),
            "server expected {prefix:?}, got {:?}",
            shorten(&line)
        );
        line
    }

    fn start_tls(&mut self) {
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Switching) else {
            panic!("TLS started twice");
        };
        let conn = ServerConnection::new(Arc::clone(&self.tls)).expect("server tls");
        self.stream = Stream::Tls(Box::new(StreamOwned::new(conn, tcp)));
    }
}

struct Server {
    endpoint: ServerEndpoint,
    handle: JoinHandle<Vec<String>>,
}

impl Server {
    /// Serves one connection with `script`; TLS from the first byte when `security` is Tls.
    fn start(
        pki: &TestPki,
        security: Security,
        script: impl FnOnce(&mut Peer) + Send + 'static,
    ) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let tls = Arc::clone(&pki.server);
        let handle = thread::spawn(move || {
            let (tcp, _) = listener.accept().expect("accept");
            tcp.set_read_timeout(Some(Duration::from_secs(15))).expect("timeout");
            let mut peer = Peer { stream: Stream::Plain(tcp), tls, received: Vec::new() };
            if security == Security::Tls {
                peer.start_tls();
            }
            script(&mut peer);
            peer.received
        });
        let endpoint = ServerEndpoint { host: "127.0.0.1".to_owned(), port, security };
        Server { endpoint, handle }
    }

    fn received(self) -> Vec<String> {
        self.handle.join().expect("server thread")
    }
}

// --- SMTP script pieces ------------------------------------------------------------------------

/// Greeting, EHLO, STARTTLS (on StartTls endpoints), EHLO with `auth` listed.
fn smtp_up_to_auth(peer: &mut Peer, starttls: bool, auth: &str) {
    peer.send("220 EXAMPLEHOST Microsoft ESMTP MAIL Service ready");
    if starttls {
        peer.expect("EHLO ");
        peer.send("250-EXAMPLEHOST Hello\n250-SIZE 157286400\n250-STARTTLS\n250 SMTPUTF8");
        peer.expect("STARTTLS");
        peer.send("220 2.0.0 SMTP server ready");
        peer.start_tls();
    }
    peer.expect("EHLO ");
    peer.send(&format!("250-EXAMPLEHOST Hello\n250-SIZE 157286400\n250-{auth}\n250 SMTPUTF8"));
}

/// `AUTH XOAUTH2` alone, `334 `, then the credentials line; returns it decoded.
fn smtp_two_step(peer: &mut Peer) -> String {
    let auth = peer.expect("AUTH XOAUTH2");
    assert_eq!(auth, "AUTH XOAUTH2", "the AUTH line must not carry the token");
    peer.send("334 ");
    let credentials = peer.recv().unwrap_or_default();
    let decoded = BASE64.decode(credentials.as_bytes()).expect("credentials are base64");
    String::from_utf8(decoded).expect("utf8")
}

fn accept_message(peer: &mut Peer, final_reply: &str) {
    peer.expect("MAIL FROM:");
    peer.send("250 2.1.0 Sender OK");
    peer.expect("RCPT TO:");
    peer.send("250 2.1.5 Recipient OK");
    peer.expect("DATA");
    peer.send("354 Start mail input; end with <CRLF>.<CRLF>");
    while let Some(line) = peer.recv() {
        if line == "." {
            break;
        }
    }
    peer.send(final_reply);
    if peer.recv().is_some() {
        peer.send("221 2.0.0 Service closing transmission channel");
    }
}

// --- Helpers -----------------------------------------------------------------------------------

/// A token as long as Entra's, with a marker that must never show up in any text.
fn long_token() -> AccessToken {
    let mut token = String::from("eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.SECRET-MARKER-");
    while token.len() < 1500 {
        token.push_str("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo");
    }
    AccessToken::new(token)
}

fn message<'a>(from: &'a str, to: &'a str) -> SmtpTestMessage<'a> {
    SmtpTestMessage { from, to, subject: "mailgrant test run-42", body: "Test from mailgrant." }
}

fn context(login: &str) -> MailContext {
    MailContext { mailbox: MAILBOX.to_owned(), login: login.to_owned(), ..MailContext::default() }
}

/// Fails when the token, or anything that could carry it, is in `text`.
fn assert_no_secret(text: &str, token: &AccessToken, login: &str) {
    let secret = token.secret();
    let raw = format!("user={login}\x01auth=Bearer {secret}\x01\x01");
    for needle in [secret.as_str(), "SECRET-MARKER", &BASE64.encode(raw.as_bytes())] {
        assert!(!text.contains(needle), "a secret leaked into: {}", shorten(text));
    }
    assert!(!text.contains("auth=Bearer"), "XOAUTH2 text leaked into: {}", shorten(text));
}

fn diagnosis_text(d: &Diagnosis) -> String {
    format!("{}\n{d:?}", d.to_text())
}

fn check_smtp_error(e: &SmtpError, ctx: &MailContext, token: &AccessToken) -> Diagnosis {
    let d = diag::smtp(e, ctx);
    assert_no_secret(&format!("{e}\n{e:?}"), token, &ctx.login);
    assert_no_secret(&diagnosis_text(&d), token, &ctx.login);
    d
}

fn check_imap_error(e: &ImapError, ctx: &MailContext, token: &AccessToken) -> Diagnosis {
    let d = diag::imap(e, ctx);
    assert_no_secret(&format!("{e}\n{e:?}"), token, &ctx.login);
    assert_no_secret(&diagnosis_text(&d), token, &ctx.login);
    d
}

fn shorten(text: &str) -> String {
    text.chars().take(300).collect()
}

const GOOGLE_400: &str = "eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21ha\
                          WwuZ29vZ2xlLmNvbS8ifQ==";
const GOOGLE_401: &str = "eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIiwic2NvcGUiOiJodHRwczovL21ha\
                          WwuZ29vZ2xlLmNvbS8ifQ==";

// --- SMTP cases --------------------------------------------------------------------------------

#[test]
fn br_08_smtp_auth_disabled() {
    let pki = TestPki::new("mailgrant test CA");
    let token = long_token();
    let server = Server::start(&pki, Security::StartTls, |peer| {
        smtp_up_to_auth(peer, true, "AUTH LOGIN XOAUTH2");
        smtp_two_step(peer);
        peer.send(
            "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for \
             the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information. \
             [EXAMPLEHOST 2023-09-12T20:59:57.214Z 08DBB276B7E699C4]",
        );
    });

    let message = message(MAILBOX, MAILBOX);
    let result =
        send_test_message(&server.endpoint, &pki.trust(), MAILBOX, &token, &message, TIMEOUT);
    let received = server.received();

    let error = result.expect_err("535 must fail");
    assert_eq!(error.phase(), Some(SmtpPhase::Auth));
    let reply = error.reply().expect("reply kept");
    assert_eq!((reply.code, reply.enhanced_status.as_deref()), (535, Some("5.7.139")));
    assert!(reply.text().contains("[EXAMPLEHOST 2023-09-12T20:59:57.214Z"), "{}", reply);

    let d = check_smtp_error(&error, &context(MAILBOX), &token);
    assert_eq!(d.id, "smtp-auth-disabled");
    assert!(d.summary.contains("The token is valid"), "{}", d.summary);
    assert!(d.summary.contains("for the tenant"), "{}", d.summary);
    assert!(
        d.fix.contains(
            "Set-CASMailbox -Identity alarms@example.com -SmtpClientAuthenticationDisabled $false"
        ),
        "{}",
        d.fix
    );
    assert!(d.fix.contains("Set-TransportConfig -SmtpClientAuthenticationDisabled $false"));
    assert!(d.fix.contains("Authenticated SMTP"));
    assert!(d.fix.contains("up to an hour"));

    let starttls = received.iter().position(|l| l == "STARTTLS").expect("STARTTLS sent");
    let auth = received.iter().position(|l| l == "AUTH XOAUTH2").expect("AUTH sent");
    assert!(starttls < auth, "AUTH before STARTTLS: {received:?}");
}

#[test]
fn br_08_smtp_auth_disabled_for_the_mailbox() {
    let pki = TestPki::new("mailgrant test CA");
    let token = long_token();
    let server = Server::start(&pki, Security::Tls, |peer| {
        smtp_up_to_auth(peer, false, "AUTH LOGIN XOAUTH2");
        smtp_two_step(peer);
        peer.send(
            "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for \
             the Mailbox. Visit https://aka.ms/smtp_auth_disabled for more information.",
        );
    });
    let message = message(MAILBOX, MAILBOX);
    let error =
        send_test_message(&server.endpoint, &pki.trust(), MAILBOX, &token, &message, TIMEOUT)
            .expect_err("535 must fail");
    server.received();

    let d = check_smtp_error(&error, &context(MAILBOX), &token);
    assert_eq!(d.id, "smtp-auth-disabled");
    assert!(d.summary.contains("for this mailbox"), "{}", d.summary);
    assert!(!error.is_transient(), "no retry storm on a disabled setting");
}

#[test]
fn br_19_long_token_uses_two_step_auth() {
    let pki = TestPki::new("mailgrant test CA");
    let token = long_token();
    let expected = format!("user={MAILBOX}\x01auth=Bearer {}\x01\x01", token.secret());
    let server = Server::start(&pki, Security::StartTls, move |peer| {
        smtp_up_to_auth(peer, true, "AUTH LOGIN XOAUTH2");
        let auth = peer.recv().unwrap_or_default();
        if auth.len() > 510 {
            peer.send("500 5.5.2 Line too long");
            return;
        }
        assert_eq!(auth, "AUTH XOAUTH2");
        peer.send("334 ");
        let credentials = peer.recv().unwrap_or_default();
        let decoded = BASE64.decode(credentials.as_bytes()).expect("base64");
        assert_eq!(String::from_utf8(decoded).expect("utf8"), expected);
        peer.send("235 2.7.0 Authentication successful");
        accept_message(peer, "250 2.0.0 Ok: queued as 6FD739D405D");
    });

    let message = message(MAILBOX, MAILBOX);
    let sent =
        send_test_message(&server.endpoint, &pki.trust(), MAILBOX, &token, &message, TIMEOUT)
            .expect("sent");
    let received = server.received();

    assert_eq!(sent.final_reply, "250 2.0.0 Ok: queued as 6FD739D405D");
    let credentials = received.iter().find(|l| l.len() > 2000).expect("credentials line");
    assert!(credentials.len() > 2000, "the token line is long: {}", credentials.len());
    let auth_lines: Vec<&String> = received.iter().filter(|l| l.starts_with("AUTH")).collect();
    assert_eq!(auth_lines, ["AUTH XOAUTH2"]);
    assert!(received.contains(&format!("MAIL FROM:<{MAILBOX}>")), "{received:?}");
    assert!(received.contains(&"Subject: mailgrant test run-42".to_owned()), "{received:?}");
    assert_eq!(received.last().map(String::as_str), Some("QUIT"));
}

#[test]
fn br_19_line_too_long_is_not_bad_credentials() {
    for reply in ["500 5.5.2 Line too long", "555 5.5.2 Syntax error, command line too long"] {
        let pki = TestPki::new("mailgrant test CA");
        let token = long_token();
        let server = Server::start(&pki, Security::StartTls, move |peer| {
            smtp_up_to_auth(peer, true, "AUTH XOAUTH2");
            smtp_two_step(peer);
            peer.send(reply);
        });
        let message = message(MAILBOX, MAILBOX);
        let error =
            send_test_message(&server.endpoint, &pki.trust(), MAILBOX, &token, &message, TIMEOUT)
                .expect_err("refused");
        server.received();

        let d = check_smtp_error(&error, &context(MAILBOX), &token);
        assert_eq!(d.id, "smtp-auth-line-too-long", "{reply}");
        assert!(d.summary.contains("refused the AUTH line as too long"), "{}", d.summary);
        assert!(d.summary.contains("not a bad password or token"), "{}", d.summary);
    }
}

#[test]
fn br_20_error_challenge_answered_with_empty_line() {
    let pki = TestPki::new("mailgrant test CA");
    let token = long_token();
    let server = Server::start(&pki, Security::Tls, |peer| {
        peer.send("220 EXAMPLEHOST ESMTP");
        peer.expect("EHLO ");
        peer.send(
            "250-EXAMPLEHOST at your service\n\
             250-AUTH LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN OAUTHBEARER XOAUTH\n250 SMTPUTF8",
        );
        smtp_two_step(peer);
        peer.send(&format!("334 {GOOGLE_400}"));
        let answer = peer.recv();
        assert_eq!(answer.as_deref(), Some(""), "the challenge needs an empty line");
        peer.send(
            "535-5.7.8 Username and Password not accepted. For more information, go to\n\
             535 5.7.8  https://support.google.com/mail/?p=BadCredentials 00000000 - gsmtp",
        );
        // Whatever comes next must not be the token again.
        while peer.recv().is_some() {}
    });

    let message = message(MAILBOX, MAILBOX);
    let started = Instant::now();
    let error =
        send_test_message(&server.endpoint, &pki.trust(), MAILBOX, &token, &message, TIMEOUT)
            .expect_err("refused");
    assert!(started.elapsed() < TIMEOUT, "no waiting for a reply that never comes");
    let received = server.received();

    let challenge = error.challenge().expect("challenge decoded");
    assert_eq!(challenge.status.as_deref(), Some("400"));
    assert_eq!(challenge.scope.as_deref(), Some("https://mail.google.com/"));
    let reply = error.reply().expect("final reply");
    assert_eq!((reply.code, reply.lines.len()), (535, 2));
    assert!(reply.lines[1].contains("BadCredentials"), "{reply}");

    let d = check_smtp_error(&error, &context(MAILBOX), &token);
    assert_eq!(d.id, "mail-token-refused");
    assert!(d.summary.contains("Google refused the token"), "{}", d.summary);
    assert!(d.summary.contains("status 400"), "{}", d.summary);
    assert!(d.summary.contains("https://mail.google.com/"), "{}", d.summary);
    assert!(!d.to_text().contains("does not expect a challenge"));

    let token_lines = received.iter().filter(|l| l.len() > 1000).count();
    assert_eq!(token_lines, 1, "the token is sent exactly once: {}", received.len());
    let after = received.iter().position(|l| l.len() > 1000).expect("credentials") + 1;
    assert_eq!(received.get(after).map(String::as_str), Some(""));
}

#[test]
fn br_20_expired_token_challenge_names_the_expiry() {
    let pki = TestPki::new("mailgrant test CA");
    let token = long_token();
    let server = Server::start(&pki, Security::StartTls, |peer| {
        smtp_up_to_auth(peer, true, "AUTH XOAUTH2");
        smtp_two_step(peer);
        peer.send(&format!("334 {GOOGLE_401}"));
        peer.expect("");
        peer.send("535 5.7.8 Username and Password not accepted.");
    });
    let message = message(MAILBOX, MAILBOX);
    let error =
        send_test_message(&server.endpoint, &pki.trust(), MAILBOX, &token, &message, TIMEOUT)
            .expect_err("refused");
    server.received();

    let ctx = MailContext { token_expired: true, ..context(MAILBOX) };
    let d = check_smtp_error(&error, &ctx, &token);
    assert_eq!(d.id, "mail-token-expired");
    assert!(d.fix.contains("Refresh token now"), "{}", d.fix);
    assert!(d.details.iter().any(|l| l.contains("\"status\":\"401\"")), "{:?}", d.details);
}

#[test]
fn br_05_smtp_wrong_account_signed_in() {
    let pki = TestPki::new("mailgrant test CA");
    let token = long_token();
    let server = Server::start(&pki, Security::StartTls, |peer| {
        smtp_up_to_auth(peer, true, "AUTH LOGIN XOAUTH2");
        smtp_two_step(peer);
        peer.send("535 5.7.3 Authentication unsuccessful [EXAMPLEHOST]");
    });
    let message = message(MAILBOX, MAILBOX);
    let error =
        send_test_message(&server.endpoint, &pki.trust(), MAILBOX, &token, &message, TIMEOUT)
            .expect_err("refused");
    server.received();

    let ctx =
        MailContext { signed_in_account: Some("it-admin@example.com".into()), ..context(MAILBOX) };
    let d = check_smtp_error(&error, &ctx, &token);
    assert_eq!(d.id, "smtp-auth-wrong-account");
    assert!(d.summary.contains("it-admin@example.com"), "{}", d.summary);
    assert!(d.fix.contains("sign in again as alarms@example.com"), "{}", d.fix);
}

#[test]
fn br_07_shared_mailbox_as_smtp_login_is_refused() {
    let pki = TestPki::new("mailgrant test CA");
    let token = long_token();
    let shared = "alarms-shared@example.com";
    let server = Server::start(&pki, Security::StartTls, |peer| {
        smtp_up_to_auth(peer, true, "AUTH LOGIN XOAUTH2");
        let sasl = smtp_two_step(peer);
        assert!(sasl.starts_with("user=alarms-shared@example.com\x01"), "login as sent");
        peer.send("535 5.7.3 Authentication unsuccessful [EXAMPLEHOST]");
    });
    let message = message(shared, shared);
    let error =
        send_test_message(&server.endpoint, &pki.trust(), shared, &token, &message, TIMEOUT)
            .expect_err("refused");
    server.received();

    let ctx = MailContext {
        mailbox: shared.into(),
        login: shared.into(),
        signed_in_account: Some("operator@example.com".into()),
        ..MailContext::default()
    };
    let d = check_smtp_error(&error, &ctx, &token);
    assert_eq!(d.id, "smtp-auth-wrong-account");
    assert!(d.cause.contains("shared mailbox"), "{}", d.cause);
    assert!(d.fix.contains("set the SMTP login to operator@example.com"), "{}", d.fix);
}

#[test]
fn br_07_send_as_denied_is_not_sent() {
    let pki = TestPki::new("mailgrant test CA");
    let token = long_token();
    let shared = "alarms-shared@example.com";
    let login = "operator@example.com";
    let server = Server::start(&pki, Security::StartTls, |peer| {
        smtp_up_to_auth(peer, true, "AUTH LOGIN XOAUTH2");
        smtp_two_step(peer);
        peer.send("235 2.7.0 Authentication successful");
        accept_message(
            peer,
            "554 5.2.0 STOREDRV.Submission.Exception:SendAsDeniedException.\
             MapiExceptionSendAsDenied; Failed to process message due to a permanent exception \
             with message [BeginDiagnosticData]",
        );
    });
    let message = message(shared, shared);
    let result =
        send_test_message(&server.endpoint, &pki.trust(), login, &token, &message, TIMEOUT);
    let received = server.received();

    let error = result.expect_err("a 554 after DATA means the message was not sent");
    assert_eq!(error.phase(), Some(SmtpPhase::Data));
    assert!(received.contains(&format!("MAIL FROM:<{shared}>")), "{received:?}");

    let ctx = MailContext {
        mailbox: shared.into(),
        login: login.into(),
        signed_in_account: Some(login.into()),
        ..MailContext::default()
    };
    let d = check_smtp_error(&error, &ctx, &token);
    assert_eq!(d.id, "smtp-send-as-denied");
    assert!(
        d.summary
            .contains("operator@example.com has no Send As right on alarms-shared@example.com"),
        "{}",
        d.summary
    );
    assert!(d.summary.contains("not sent"), "{}", d.summary);
    assert!(
        d.fix.contains(
            "Add-RecipientPermission -Identity alarms-shared@example.com -Trustee \
             operator@example.com -AccessRights SendAs"
        ),
        "{}",
        d.fix
    );
}

#[test]
fn br_18_empty_token_is_never_sent() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    let endpoint = ServerEndpoint { host: "127.0.0.1".into(), port, security: Security::Tls };
    let trust = Trust::load(Some(&TestPki::new("mailgrant test CA").ca_file)).expect("trust");
    let empty = AccessToken::new(String::new());

    let message = message(MAILBOX, MAILBOX);
    let smtp = send_test_message(&endpoint, &trust, MAILBOX, &empty, &message, TIMEOUT);
    let imap = check_inbox(&endpoint, &trust, MAILBOX, &empty, TIMEOUT);

    let smtp = smtp.expect_err("no empty bearer");
    assert!(matches!(smtp, SmtpError::Credentials(_)), "{smtp}");
    assert!(matches!(imap, Err(ImapError::Credentials(_))), "{imap:?}");
    assert_eq!(diag::smtp(&smtp, &context(MAILBOX)).id, "mail-credentials-missing");
    let accepted = listener.accept();
    assert!(accepted.is_err(), "nothing may connect with an empty token");
}

#[test]
fn starttls_missing_means_no_authentication() {
    let pki = TestPki::new("mailgrant test CA");
    let token = long_token();
    let server = Server::start(&pki, Security::StartTls, |peer| {
        peer.send("220 EXAMPLEHOST ESMTP");
        peer.expect("EHLO ");
        peer.send("250-EXAMPLEHOST\n250-AUTH XOAUTH2 PLAIN\n250 SIZE 1000000");
        while peer.recv().is_some() {}
    });
    let message = message(MAILBOX, MAILBOX);
    let error =
        send_test_message(&server.endpoint, &pki.trust(), MAILBOX, &token, &message, TIMEOUT)
            .expect_err("no STARTTLS");
    let received = server.received();

    assert!(matches!(error, SmtpError::StartTlsUnavailable { .. }), "{error}");
    assert!(!received.iter().any(|l| l.starts_with("AUTH")), "{received:?}");
    assert!(received.iter().all(|l| l.len() < 100), "nothing long was sent in clear");
    let d = check_smtp_error(&error, &context(MAILBOX), &token);
    assert_eq!(d.id, "smtp-starttls-unavailable");
    assert!(d.fix.contains("587"), "{}", d.fix);
}

/// Sends the test message to `endpoint` as MAILBOX, which must fail; the error and how long
/// it took.
fn send_until_refused(
    endpoint: &ServerEndpoint,
    trust: &Trust,
    token: &AccessToken,
    timeout: Duration,
) -> (SmtpError, Duration) {
    let started = Instant::now();
    let message = message(MAILBOX, MAILBOX);
    let error = send_test_message(endpoint, trust, MAILBOX, token, &message, timeout)
        .expect_err("the server never lets the send finish");
    (error, started.elapsed())
}

/// Opens MAILBOX's INBOX at `endpoint`, which must fail; the error and how long it took.
fn check_until_refused(
    endpoint: &ServerEndpoint,
    trust: &Trust,
    token: &AccessToken,
    timeout: Duration,
) -> (ImapError, Duration) {
    let started = Instant::now();
    let error = check_inbox(endpoint, trust, MAILBOX, token, timeout)
        .expect_err("the server never lets the check finish");
    (error, started.elapsed())
}

/// A server on 127.0.0.1 that accepts one connection and says nothing for 4 s.
fn silent_server() -> (u16, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let holder = thread::spawn(move || {
        let (socket, _) = listener.accept().expect("accept");
        thread::sleep(Duration::from_secs(4));
        drop(socket);
    });
    (port, holder)
}

#[test]
fn smtp_server_that_never_answers_times_out() {
    let (port, holder) = silent_server();
    let trust = TestPki::new("mailgrant test CA").trust();
    let token = long_token();
    let endpoint = ServerEndpoint { host: "127.0.0.1".into(), port, security: Security::StartTls };
    let timeout = Duration::from_secs(1);

    let (error, elapsed) = send_until_refused(&endpoint, &trust, &token, timeout);
    holder.join().expect("holder");

    assert!(elapsed >= timeout && elapsed < Duration::from_secs(3), "took {elapsed:?}");
    match &error {
        SmtpError::Transport { phase, source } => {
            assert_eq!(*phase, SmtpPhase::Greeting);
            assert_eq!(source.kind, TransportKind::Timeout);
        }
        other => panic!("expected a timeout, got {other}"),
    }
    assert!(error.is_transient());
    let d = check_smtp_error(&error, &context(MAILBOX), &token);
    assert_eq!(d.id, "net-timeout");
    assert!(d.summary.contains(&format!("127.0.0.1:{port}")), "{}", d.summary);
    assert!(d.cause.contains("firewall"), "{}", d.cause);
}

#[test]
fn tls_through_an_inspecting_proxy_names_its_issuer() {
    let proxy = TestPki::new("Contoso TLS Inspection CA");
    let ours = TestPki::new("mailgrant test CA");
    let token = long_token();
    let server = Server::start(&proxy, Security::Tls, |peer| {
        // The handshake fails on the client side; the first read ends it.
        let _ = peer.recv();
    });
    let message = message(MAILBOX, MAILBOX);
    let error =
        send_test_message(&server.endpoint, &ours.trust(), MAILBOX, &token, &message, TIMEOUT)
            .expect_err("untrusted");
    server.received();

    match &error {
        SmtpError::Transport { phase, source } => {
            assert_eq!(*phase, SmtpPhase::Tls);
            assert_eq!(source.kind, TransportKind::Tls(Some(CertificateProblem::UnknownIssuer)));
            let peer = source.peer.as_ref().expect("certificate recorded");
            assert!(peer.issuer.contains("Contoso TLS Inspection CA"), "{}", peer.issuer);
            assert!(peer.subject.contains("localhost"), "{}", peer.subject);
        }
        other => panic!("expected a TLS failure, got {other}"),
    }
    let d = check_smtp_error(&error, &context(MAILBOX), &token);
    assert_eq!(d.id, "net-tls-untrusted");
    assert!(d.summary.contains("Contoso TLS Inspection CA"), "{}", d.summary);
    assert!(d.fix.contains("\"Extra CA certificate file\""), "{}", d.fix);
}

// --- IMAP cases --------------------------------------------------------------------------------

/// `aN AUTHENTICATE XOAUTH2`, `+ `, credentials; returns the tag and the decoded credentials.
fn imap_authenticate(peer: &mut Peer) -> (String, String) {
    let line = peer.recv().unwrap_or_default();
    let (tag, command) = line.split_once(' ').expect("tagged command");
    assert_eq!(command, "AUTHENTICATE XOAUTH2");
    let tag = tag.to_owned();
    peer.send("+ ");
    let credentials = peer.recv().unwrap_or_default();
    let decoded = BASE64.decode(credentials.as_bytes()).expect("base64");
    (tag, String::from_utf8(decoded).expect("utf8"))
}

fn tagged(peer: &mut Peer, command: &str) -> String {
    let line = peer.recv().unwrap_or_default();
    let (tag, rest) = line.split_once(' ').unwrap_or_default();
    assert!(rest.to_ascii_uppercase().starts_with(command), "expected {command}, got {line}");
    tag.to_owned()
}

#[test]
fn br_05_imap_authenticated_but_not_connected() {
    let pki = TestPki::new("mailgrant test CA");
    let token = long_token();
    let server = Server::start(&pki, Security::Tls, |peer| {
        peer.send("* OK The Microsoft Exchange IMAP4 service is ready.");
        let (tag, _) = imap_authenticate(peer);
        peer.send(&format!("{tag} OK AUTHENTICATE completed."));
        let tag = tagged(peer, "SELECT \"INBOX\"");
        peer.send(&format!("{tag} BAD User is authenticated but not connected."));
        while peer.recv().is_some() {}
    });
    let error = check_inbox(&server.endpoint, &pki.trust(), MAILBOX, &token, TIMEOUT)
        .expect_err("not connected");
    server.received();

    match &error {
        ImapError::Rejected { phase, status, text, .. } => {
            assert_eq!((*phase, *status), (ImapPhase::Select, ImapStatus::Bad));
            assert_eq!(text, "User is authenticated but not connected.");
        }
        other => panic!("expected a rejection, got {other}"),
    }
    let ctx =
        MailContext { signed_in_account: Some("it-admin@example.com".into()), ..context(MAILBOX) };
    let d = check_imap_error(&error, &ctx, &token);
    assert_eq!(d.id, "imap-mailbox-no-access");
    assert!(
        d.summary.contains("it-admin@example.com has no access to the mailbox alarms@example.com"),
        "{}",
        d.summary
    );
    assert!(d.fix.contains("Sign in again"), "{}", d.fix);
}

#[test]
fn br_10_gmail_readonly_scope_challenge() {
    let pki = TestPki::new("mailgrant test CA");
    let token = long_token();
    let server = Server::start(&pki, Security::Tls, |peer| {
        peer.send("* OK Gimap ready for requests from 127.0.0.1");
        let (tag, sasl) = imap_authenticate(peer);
        assert!(sasl.starts_with("user=alarms@example.com\x01auth=Bearer eyJ"), "sasl shape");
        peer.send(&format!("+ {GOOGLE_400}"));
        let answer = peer.recv();
        assert_eq!(answer.as_deref(), Some(""), "the challenge needs an empty response");
        peer.send(&format!("{tag} NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)"));
        while peer.recv().is_some() {}
    });
    let error =
        check_inbox(&server.endpoint, &pki.trust(), MAILBOX, &token, TIMEOUT).expect_err("refused");
    let received = server.received();

    match &error {
        ImapError::Rejected { phase, status, code, text, challenge } => {
            assert_eq!((*phase, *status), (ImapPhase::Auth, ImapStatus::No));
            assert_eq!(code.as_deref(), Some("AUTHENTICATIONFAILED"));
            assert!(text.contains("Invalid credentials (Failure)"), "{text}");
            let challenge = challenge.as_ref().expect("decoded");
            assert_eq!(challenge.scope.as_deref(), Some("https://mail.google.com/"));
            assert_eq!(challenge.status.as_deref(), Some("400"));
        }
        other => panic!("expected a rejection, got {other}"),
    }
    assert_eq!(received.iter().filter(|l| l.len() > 1000).count(), 1, "token sent once");

    let ctx = MailContext {
        granted_scopes: Some(vec!["https://www.googleapis.com/auth/gmail.readonly".into()]),
        ..context(MAILBOX)
    };
    let d = check_imap_error(&error, &ctx, &token);
    assert_eq!(d.id, "gmail-scope-missing");
    assert!(d.summary.contains("gmail.readonly"), "{}", d.summary);
    assert!(d.fix.contains("https://mail.google.com/"), "{}", d.fix);
    assert!(d.details.iter().any(|l| l.contains("mail.google.com")), "{:?}", d.details);
}

#[test]
fn br_09_graph_token_authenticate_failed() {
    for granted in [Some("https://graph.microsoft.com/IMAP.AccessAsUser.All"), None] {
        let pki = TestPki::new("mailgrant test CA");
        let token = long_token();
        let server = Server::start(&pki, Security::Tls, |peer| {
            peer.send("* OK The Microsoft Exchange IMAP4 service is ready.");
            let (tag, _) = imap_authenticate(peer);
            peer.send(&format!("{tag} NO AUTHENTICATE failed."));
            while peer.recv().is_some() {}
        });
        let error = check_inbox(&server.endpoint, &pki.trust(), MAILBOX, &token, TIMEOUT)
            .expect_err("refused");
        server.received();
        assert!(error.to_string().contains("NO AUTHENTICATE failed."), "{error}");

        let ctx =
            MailContext { granted_scopes: granted.map(|s| vec![s.to_owned()]), ..context(MAILBOX) };
        let d = check_imap_error(&error, &ctx, &token);
        match granted {
            Some(_) => {
                assert_eq!(d.id, "token-for-graph");
                assert!(d.fix.contains("https://outlook.office.com/IMAP.AccessAsUser.All"));
            }
            None => {
                assert_eq!(d.id, "imap-auth-failed");
                assert!(
                    d.fix
                        .contains("Set-CASMailbox -Identity alarms@example.com -ImapEnabled $true")
                );
                assert!(d.cause.contains("IMAP.AccessAsUser.All"), "{}", d.cause);
            }
        }
    }
}

#[test]
fn imap_starttls_select_counts_messages() {
    let pki = TestPki::new("mailgrant test CA");
    let token = long_token();
    let server = Server::start(&pki, Security::StartTls, |peer| {
        peer.send("* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] ready");
        let line = peer.expect("s1 STARTTLS");
        assert_eq!(line, "s1 STARTTLS");
        peer.send("s1 OK Begin TLS negotiation now");
        peer.start_tls();
        let (tag, sasl) = imap_authenticate(peer);
        assert!(sasl.starts_with("user=alarms@example.com\x01"), "sasl");
        peer.send(&format!("{tag} OK [CAPABILITY IMAP4rev1] Logged in"));
        let tag = tagged(peer, "SELECT \"INBOX\"");
        peer.send(&format!(
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\n* 3 EXISTS\n* 0 RECENT\n\
             {tag} OK [READ-WRITE] Select completed."
        ));
        if let Some(line) = peer.recv() {
            let tag = line.split(' ').next().unwrap_or_default().to_owned();
            peer.send(&format!("* BYE Logging out\n{tag} OK Logout completed."));
        }
    });
    let status =
        check_inbox(&server.endpoint, &pki.trust(), MAILBOX, &token, TIMEOUT).expect("inbox");
    let received = server.received();

    assert_eq!(status.exists, 3);
    assert_eq!(received.first().map(String::as_str), Some("s1 STARTTLS"));
    assert!(received.iter().any(|l| l.ends_with("LOGOUT")), "{received:?}");
}

#[test]
fn imap_find_subject_polls_until_the_message_arrives() {
    let pki = TestPki::new("mailgrant test CA");
    let token = long_token();
    let server = Server::start(&pki, Security::Tls, |peer| {
        peer.send("* OK ready");
        let (tag, _) = imap_authenticate(peer);
        peer.send(&format!("{tag} OK Logged in"));
        let tag = tagged(peer, "SELECT");
        peer.send(&format!("* 2 EXISTS\n{tag} OK [READ-WRITE] Select completed."));
        let mut searches = 0;
        while let Some(line) = peer.recv() {
            let (tag, command) = line.split_once(' ').unwrap_or_default();
            let tag = tag.to_owned();
            if command.starts_with("SEARCH") {
                assert_eq!(command, "SEARCH SUBJECT \"mailgrant test run-42\"");
                searches += 1;
                let hits = if searches >= 3 { " 3" } else { "" };
                peer.send(&format!("* SEARCH{hits}\n{tag} OK Search completed."));
            } else if command.starts_with("NOOP") {
                peer.send(&format!("* 3 EXISTS\n{tag} OK NOOP completed."));
            } else {
                peer.send(&format!("* BYE bye\n{tag} OK Logout completed."));
                break;
            }
        }
    });
    let started = Instant::now();
    let found = find_subject(
        &server.endpoint,
        &pki.trust(),
        MAILBOX,
        &token,
        "mailgrant test run-42",
        TIMEOUT,
    )
    .expect("search");
    let elapsed = started.elapsed();
    let received = server.received();

    assert!(found);
    let commands: Vec<&str> =
        received.iter().filter_map(|l| l.split_once(' ').map(|(_, c)| c)).collect();
    let polls: Vec<&str> = commands
        .iter()
        .filter(|c| c.starts_with("SEARCH") || c.starts_with("NOOP"))
        .map(|c| &c[..4])
        .collect();
    assert_eq!(polls, ["SEAR", "NOOP", "SEAR", "NOOP", "SEAR"]);
    assert!(elapsed >= Duration::from_millis(500), "polls are paced: {elapsed:?}");
}

#[test]
fn imap_server_that_never_answers_times_out() {
    let (port, holder) = silent_server();
    let trust = TestPki::new("mailgrant test CA").trust();
    let token = long_token();
    let endpoint = ServerEndpoint { host: "127.0.0.1".into(), port, security: Security::Tls };
    let timeout = Duration::from_secs(1);

    let (error, elapsed) = check_until_refused(&endpoint, &trust, &token, timeout);
    holder.join().expect("holder");

    assert!(elapsed >= timeout && elapsed < Duration::from_secs(3), "took {elapsed:?}");
    match &error {
        ImapError::Transport { phase, source } => {
            assert_eq!(*phase, ImapPhase::Tls);
            assert_eq!(source.kind, TransportKind::Timeout);
        }
        other => panic!("expected a timeout, got {other}"),
    }
    assert_eq!(check_imap_error(&error, &context(MAILBOX), &token).id, "net-timeout");
}

// --- SMTP refusals after the greeting ----------------------------------------------------------

/// Greeting, STARTTLS, XOAUTH2 in two steps, accepted.
fn smtp_signed_in(peer: &mut Peer) {
    smtp_up_to_auth(peer, true, "AUTH LOGIN XOAUTH2");
    smtp_two_step(peer);
    peer.send("235 2.7.0 Authentication successful");
}

/// Runs one SMTP send against `script` and returns the error and what the server received.
fn smtp_failure(script: impl FnOnce(&mut Peer) + Send + 'static) -> (SmtpError, Vec<String>) {
    let pki = TestPki::new("mailgrant test CA");
    let token = long_token();
    let server = Server::start(&pki, Security::StartTls, script);
    let message = message(MAILBOX, MAILBOX);
    let error =
        send_test_message(&server.endpoint, &pki.trust(), MAILBOX, &token, &message, TIMEOUT)
            .expect_err("the server refuses");
    (error, server.received())
}

#[test]
fn smtp_greeting_refused_names_the_host_and_the_network() {
    let token = long_token();
    let (error, received) = smtp_failure(|peer| {
        peer.send("554 5.7.1 Service unavailable; Client host [127.0.0.1] blocked using Spamhaus");
        while peer.recv().is_some() {}
    });
    assert!(!received.iter().any(|l| l.starts_with("AUTH")), "{received:?}");
    let d = check_smtp_error(&error, &context(MAILBOX), &token);
    assert_eq!(d.id, "smtp-greeting-refused");
    assert!(d.fix.contains("ask the mail admin whether this network may submit"), "{}", d.fix);
    assert!(d.details.iter().any(|l| l.contains("Spamhaus")), "{:?}", d.details);
}

#[test]
fn smtp_without_xoauth2_lists_what_it_offers_and_sends_no_token() {
    let token = long_token();
    let (error, received) = smtp_failure(|peer| {
        smtp_up_to_auth(peer, true, "AUTH LOGIN PLAIN");
        while peer.recv().is_some() {}
    });
    assert!(matches!(&error, SmtpError::Xoauth2NotOffered { .. }), "{error}");
    assert!(!received.iter().any(|l| l.starts_with("AUTH")), "{received:?}");
    let d = check_smtp_error(&error, &context(MAILBOX), &token);
    assert_eq!(d.id, "smtp-xoauth2-not-offered");
    assert!(d.cause.contains("LOGIN PLAIN"), "{}", d.cause);
    assert!(d.fix.contains("smtp.office365.com, 587, STARTTLS"), "{}", d.fix);
}

#[test]
fn smtp_sender_rejected_names_send_as_rights() {
    let token = long_token();
    let (error, _) = smtp_failure(|peer| {
        smtp_signed_in(peer);
        peer.expect("MAIL FROM:");
        peer.send("553 5.7.1 <alarms@example.com>: Sender address rejected: not owned by user");
        while peer.recv().is_some() {}
    });
    let d = check_smtp_error(&error, &context("operator@example.com"), &token);
    assert_eq!(d.id, "smtp-sender-rejected");
    assert!(d.summary.contains("not sent"), "{}", d.summary);
    assert!(d.fix.contains("ask the admin for Send As rights"), "{}", d.fix);
    assert!(d.fix.contains("operator@example.com"), "{}", d.fix);
}

#[test]
fn smtp_recipient_rejected_names_the_test_recipient() {
    let token = long_token();
    let (error, received) = smtp_failure(|peer| {
        smtp_signed_in(peer);
        peer.expect("MAIL FROM:");
        peer.send("250 2.1.0 Sender OK");
        peer.expect("RCPT TO:");
        peer.send("550 5.1.1 <alarms@example.com>: Recipient address rejected: User unknown");
        while peer.recv().is_some() {}
    });
    assert!(!received.iter().any(|l| l == "DATA"), "nothing is sent: {received:?}");
    let d = check_smtp_error(&error, &context(MAILBOX), &token);
    assert_eq!(d.id, "smtp-recipient-rejected");
    assert!(d.fix.contains("Check the test recipient"), "{}", d.fix);
}

#[test]
fn smtp_temporary_refusal_is_transient_and_says_try_again() {
    let token = long_token();
    let (error, _) = smtp_failure(|peer| {
        smtp_signed_in(peer);
        peer.expect("MAIL FROM:");
        peer.send("250 2.1.0 Sender OK");
        peer.expect("RCPT TO:");
        peer.send("451 4.7.500 Server busy. Please try again later.");
        while peer.recv().is_some() {}
    });
    assert!(error.is_transient(), "{error}");
    let d = check_smtp_error(&error, &context(MAILBOX), &token);
    assert_eq!(d.id, "smtp-temporary-failure");
    assert_eq!(d.retry, mailgrant::diagnose::Retry::Transient);
    assert!(d.fix.contains("Try again in a few minutes"), "{}", d.fix);
}

// --- IMAP refusals -----------------------------------------------------------------------------

#[test]
fn imap_select_refused_names_the_mailbox_and_full_access() {
    let pki = TestPki::new("mailgrant test CA");
    let token = long_token();
    let server = Server::start(&pki, Security::Tls, |peer| {
        peer.send("* OK The Microsoft Exchange IMAP4 service is ready.");
        let (tag, _) = imap_authenticate(peer);
        peer.send(&format!("{tag} OK AUTHENTICATE completed."));
        let tag = tagged(peer, "SELECT \"INBOX\"");
        peer.send(&format!("{tag} NO [NONEXISTENT] Mailbox doesn't exist: INBOX"));
        while peer.recv().is_some() {}
    });
    let error =
        check_inbox(&server.endpoint, &pki.trust(), "alarms-shared@example.com", &token, TIMEOUT)
            .expect_err("no INBOX");
    server.received();

    let ctx = MailContext {
        signed_in_account: Some("operator@example.com".into()),
        ..context("alarms-shared@example.com")
    };
    let d = check_imap_error(&error, &ctx, &token);
    assert_eq!(d.id, "imap-select-refused");
    assert!(
        d.fix.contains(
            "Check that alarms-shared@example.com has a mailbox and that operator@example.com \
             has Full Access to it"
        ),
        "{}",
        d.fix
    );
}

#[test]
fn imap_without_starttls_sends_no_token() {
    let pki = TestPki::new("mailgrant test CA");
    let token = long_token();
    let server = Server::start(&pki, Security::StartTls, |peer| {
        peer.send("* OK [CAPABILITY IMAP4rev1 AUTH=XOAUTH2] ready");
        let tag = tagged(peer, "STARTTLS");
        peer.send(&format!("{tag} BAD Unknown command"));
        while peer.recv().is_some() {}
    });
    let error =
        check_inbox(&server.endpoint, &pki.trust(), MAILBOX, &token, TIMEOUT).expect_err("clear");
    let received = server.received();

    assert!(matches!(&error, ImapError::StartTlsUnavailable { .. }), "{error}");
    assert!(received.iter().all(|l| !l.contains("AUTHENTICATE")), "{received:?}");
    let d = check_imap_error(&error, &context(MAILBOX), &token);
    assert_eq!(d.id, "imap-starttls-unavailable");
    assert!(d.fix.contains("587 and 143 use STARTTLS, 465 and 993 use TLS"), "{}", d.fix);
}

// --- The round trip ----------------------------------------------------------------------------

#[test]
fn a_sent_test_email_that_never_arrives_is_round_trip_not_found() {
    use mailgrant::oauth::TokenSet;
    use mailgrant::profile::ProfileForm;
    use mailgrant::verify::{self, CheckId, Outcome, VerifyInput};

    let pki = TestPki::new("mailgrant test CA");
    let token = long_token();
    let smtp = Server::start(&pki, Security::StartTls, |peer| {
        smtp_signed_in(peer);
        accept_message(peer, "250 2.0.0 OK queued as 4AB12");
    });
    let imap = Server::start(&pki, Security::Tls, |peer| {
        peer.send("* OK ready");
        let (tag, _) = imap_authenticate(peer);
        peer.send(&format!("{tag} OK Logged in"));
        let tag = tagged(peer, "SELECT");
        peer.send(&format!("* 2 EXISTS\n{tag} OK [READ-WRITE] Select completed."));
        while let Some(line) = peer.recv() {
            let (tag, command) = line.split_once(' ').unwrap_or_default();
            let tag = tag.to_owned();
            if command.starts_with("SEARCH") {
                peer.send(&format!("* SEARCH\n{tag} OK Search completed."));
            } else if command.starts_with("NOOP") {
                peer.send(&format!("{tag} OK NOOP completed."));
            } else {
                peer.send(&format!("* BYE bye\n{tag} OK Logout completed."));
                break;
            }
        }
    });

    let form = ProfileForm {
        tenant: "contoso.onmicrosoft.com".into(),
        client_id: "00000000-0000-0000-0000-000000000001".into(),
        mailbox: MAILBOX.into(),
        timeout_secs: "2".into(),
        ..ProfileForm::default()
    };
    let mut profile = form.validate().expect("valid").0;
    profile.smtp = smtp.endpoint.clone();
    profile.imap = imap.endpoint.clone();
    let tokens = TokenSet {
        access_token: token.clone(),
        access_expires_at: Some(time::OffsetDateTime::now_utc() + time::Duration::hours(1)),
        refresh_token: None,
        granted_scopes: None,
        identity: None,
        obtained_at: time::OffsetDateTime::now_utc(),
    };
    let input = VerifyInput {
        identities: mailgrant::store::Identities::for_profile(&profile, None),
        profile,
        trust: pki.trust(),
        tokens,
        refresher: None,
        only: Some(vec![CheckId::Smtp, CheckId::RoundTrip]),
    };
    let started = Instant::now();
    let (report, _) = verify::run(input, |_| {});
    let elapsed = started.elapsed();
    smtp.received();
    imap.received();

    assert_eq!(report.get(CheckId::Smtp).map(|c| &c.outcome), Some(&Outcome::Passed));
    let row = report.get(CheckId::RoundTrip).expect("round trip row");
    let Outcome::Failed(d) = &row.outcome else { panic!("{:?}", row.outcome) };
    assert_eq!(d.id, "round-trip-not-found");
    assert!(d.summary.contains("within 2 s"), "{}", d.summary);
    assert!(d.fix.contains("junk mail") && d.fix.contains("raise the timeout"), "{}", d.fix);
    assert!(elapsed < Duration::from_secs(6), "bounded by the 2 s timeout: {elapsed:?}");
    assert_no_secret(&format!("{}\n{d:?}", d.to_text()), &token, MAILBOX);
}

// --- Network failures on the mail path ---------------------------------------------------------

fn imap_transport(error: &ImapError) -> &mailgrant::mail::TransportError {
    match error {
        ImapError::Transport { source, .. } => source,
        other => panic!("expected a network failure, got {other}"),
    }
}

#[test]
fn a_mail_host_name_that_does_not_resolve_is_net_dns() {
    // `.invalid` never resolves (RFC 6761); nothing is sent anywhere.
    let token = long_token();
    let endpoint = ServerEndpoint {
        host: "imap.mailgrant.invalid".into(),
        port: 993,
        security: Security::Tls,
    };
    let trust = TestPki::new("mailgrant test CA").trust();
    let error = check_inbox(&endpoint, &trust, MAILBOX, &token, TIMEOUT).expect_err("no name");
    assert_eq!(imap_transport(&error).kind, TransportKind::Dns);
    let d = check_imap_error(&error, &context(MAILBOX), &token);
    assert_eq!(d.id, "net-dns");
    assert!(d.summary.contains("imap.mailgrant.invalid:993"), "{}", d.summary);
    assert!(d.fix.contains("Check the IMAP host"), "{}", d.fix);
}

#[test]
fn a_closed_mail_port_is_net_refused() {
    let port = {
        let unused = TcpListener::bind("127.0.0.1:0").expect("bind");
        unused.local_addr().expect("addr").port()
    };
    let token = long_token();
    let endpoint = ServerEndpoint { host: "127.0.0.1".into(), port, security: Security::StartTls };
    let trust = TestPki::new("mailgrant test CA").trust();
    let message = message(MAILBOX, MAILBOX);
    let error = send_test_message(&endpoint, &trust, MAILBOX, &token, &message, TIMEOUT)
        .expect_err("refused");
    let d = check_smtp_error(&error, &context(MAILBOX), &token);
    assert_eq!(d.id, "net-refused");
    assert!(d.fix.contains("Check the SMTP host and port"), "{}", d.fix);
}

#[test]
fn a_mail_server_that_hangs_up_at_once_is_net_closed() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = thread::spawn(move || drop(listener.accept().expect("accept")));
    let token = long_token();
    let endpoint = ServerEndpoint { host: "127.0.0.1".into(), port, security: Security::StartTls };
    let trust = TestPki::new("mailgrant test CA").trust();
    let message = message(MAILBOX, MAILBOX);
    let error = send_test_message(&endpoint, &trust, MAILBOX, &token, &message, TIMEOUT)
        .expect_err("closed");
    server.join().expect("server");
    let d = check_smtp_error(&error, &context(MAILBOX), &token);
    assert_eq!(d.id, "net-closed");
    assert!(d.fix.contains("Check the port and security setting"), "{}", d.fix);
}

#[test]
fn plain_text_on_a_tls_mail_port_is_net_tls_handshake() {
    let pki = TestPki::new("mailgrant test CA");
    let token = long_token();
    // A STARTTLS-style server where implicit TLS is configured: it greets in clear text.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = thread::spawn(move || {
        let (mut tcp, _) = listener.accept().expect("accept");
        let _ = tcp.write_all(b"220 EXAMPLEHOST Microsoft ESMTP MAIL Service ready\r\n");
        let mut buffer = [0u8; 1024];
        let _ = tcp.read(&mut buffer);
    });
    let endpoint = ServerEndpoint { host: "127.0.0.1".into(), port, security: Security::Tls };
    let message = message(MAILBOX, MAILBOX);
    let error = send_test_message(&endpoint, &pki.trust(), MAILBOX, &token, &message, TIMEOUT)
        .expect_err("not TLS");
    server.join().expect("server");
    let d = check_smtp_error(&error, &context(MAILBOX), &token);
    assert_eq!(d.id, "net-tls-handshake");
    assert!(d.fix.contains("587 and 143 use STARTTLS, 465 and 993 use TLS"), "{}", d.fix);
}

/// An IMAP check against a TLS server presenting `leaf`; returns the diagnosis.
fn imap_with_certificate(leaf: Leaf) -> (ImapError, Diagnosis) {
    let pki = TestPki::with_leaf("mailgrant test CA", leaf);
    let token = long_token();
    let server = Server::start(&pki, Security::Tls, |peer| {
        let _ = peer.recv(); // the client refuses the certificate
    });
    let error =
        check_inbox(&server.endpoint, &pki.trust(), MAILBOX, &token, TIMEOUT).expect_err("refused");
    server.received();
    let d = check_imap_error(&error, &context(MAILBOX), &token);
    (error, d)
}

#[test]
fn a_mail_certificate_for_another_host_is_net_tls_hostname() {
    let (error, d) =
        imap_with_certificate(Leaf { names: &["outlook.office365.invalid"], ..Leaf::default() });
    assert_eq!(
        imap_transport(&error).kind,
        TransportKind::Tls(Some(CertificateProblem::HostnameMismatch))
    );
    assert_eq!(d.id, "net-tls-hostname");
    assert!(d.fix.contains("Type the IMAP host exactly as the provider documents it"), "{}", d.fix);
}

#[test]
fn an_expired_mail_certificate_is_net_tls_expired() {
    let (_, d) =
        imap_with_certificate(Leaf { from_days: -400, until_days: -30, ..Leaf::default() });
    assert_eq!(d.id, "net-tls-expired");
    assert!(d.fix.contains("Check this machine's date and time"), "{}", d.fix);
}

#[test]
fn a_mail_certificate_not_valid_yet_is_net_tls_not_yet_valid() {
    let (_, d) = imap_with_certificate(Leaf { from_days: 30, until_days: 400, ..Leaf::default() });
    assert_eq!(d.id, "net-tls-not-yet-valid");
    assert!(d.fix.contains("Correct this machine's date and time"), "{}", d.fix);
}

#[test]
fn a_mail_certificate_made_for_clients_only_is_net_tls_certificate() {
    let (error, d) = imap_with_certificate(Leaf { client_only: true, ..Leaf::default() });
    assert_eq!(imap_transport(&error).kind, TransportKind::Tls(Some(CertificateProblem::Other)));
    assert_eq!(d.id, "net-tls-certificate");
    assert!(d.fix.contains("Tell the server's admin"), "{}", d.fix);
}

// --- F3: servers that trickle or flood ---------------------------------------------------------

/// The server side writes `text` one byte every `every`, without a newline, until the client
/// goes away (a write fails) or the text is spent.
fn trickle(peer: &mut Peer, text: &str, every: Duration) {
    for byte in text.bytes() {
        let sent = peer.stream.write_all(&[byte]).and_then(|()| peer.stream.flush());
        if sent.is_err() {
            return;
        }
        thread::sleep(every);
    }
}

/// The server side writes `chunk` again and again until the client goes away (or 64 MiB).
fn flood(peer: &mut Peer, chunk: &[u8]) {
    let mut sent = 0;
    while sent < 64 << 20 {
        if peer.stream.write_all(chunk).and_then(|()| peer.stream.flush()).is_err() {
            return;
        }
        sent += chunk.len();
    }
}

/// 60 bytes at 200 ms: 12 s of trickle, far past the 1 s step the client allows.
const TRICKLED: &str = "220 mail.example.net ESMTP a greeting that never ends ....";
const TRICKLE_EVERY: Duration = Duration::from_millis(200);

#[test]
fn f3_smtp_server_trickling_its_greeting_times_out_at_the_step_deadline() {
    let pki = TestPki::new("mailgrant test CA");
    let token = long_token();
    let server = Server::start(&pki, Security::StartTls, |peer| {
        trickle(peer, TRICKLED, TRICKLE_EVERY);
    });
    let port = server.endpoint.port;
    let timeout = Duration::from_secs(1);

    let (error, elapsed) = send_until_refused(&server.endpoint, &pki.trust(), &token, timeout);
    let received = server.received();

    assert!(elapsed >= timeout && elapsed < 3 * timeout, "took {elapsed:?}");
    match &error {
        SmtpError::Transport { phase, source } => {
            assert_eq!(*phase, SmtpPhase::Greeting);
            assert_eq!(source.kind, TransportKind::Timeout);
            assert!(source.detail.contains("did not finish within 1 s"), "{}", source.detail);
        }
        other => panic!("expected a timeout, got {other}"),
    }
    assert!(received.is_empty(), "nothing was sent to a server that never greeted: {received:?}");
    let d = check_smtp_error(&error, &context(MAILBOX), &token);
    assert_eq!(d.id, "net-timeout");
    assert!(d.summary.contains(&format!("127.0.0.1:{port}")), "{}", d.summary);
    assert!(d.summary.contains("SMTP greeting"), "{}", d.summary);
    assert!(d.cause.contains("a byte at a time"), "{}", d.cause);
}

#[test]
fn f3_smtp_server_trickling_after_tls_times_out_in_that_step() {
    let pki = TestPki::new("mailgrant test CA");
    let token = long_token();
    let server = Server::start(&pki, Security::StartTls, |peer| {
        peer.send("220 mail.example.net ESMTP");
        peer.expect("EHLO ");
        peer.send("250-mail.example.net\n250 STARTTLS");
        peer.expect("STARTTLS");
        peer.send("220 2.0.0 Ready to start TLS");
        peer.start_tls();
        peer.expect("EHLO ");
        trickle(peer, "250-mail.example.net Hello, and so on and so on ....", TRICKLE_EVERY);
    });
    let timeout = Duration::from_secs(1);

    let (error, elapsed) = send_until_refused(&server.endpoint, &pki.trust(), &token, timeout);
    server.received();

    assert!(elapsed >= timeout && elapsed < 3 * timeout, "took {elapsed:?}");
    assert!(
        matches!(&error, SmtpError::Transport { phase: SmtpPhase::Ehlo, source }
            if source.kind == TransportKind::Timeout),
        "{error:?}"
    );
    let d = check_smtp_error(&error, &context(MAILBOX), &token);
    assert_eq!(d.id, "net-timeout");
    assert!(d.summary.contains("SMTP ehlo"), "{}", d.summary);
}

#[test]
fn f3_imap_server_trickling_its_plain_greeting_times_out_at_the_step_deadline() {
    let pki = TestPki::new("mailgrant test CA");
    let token = long_token();
    let server = Server::start(&pki, Security::StartTls, |peer| {
        trickle(
            peer,
            "* OK [CAPABILITY IMAP4rev1 STARTTLS] a greeting that never ends",
            TRICKLE_EVERY,
        );
    });
    let port = server.endpoint.port;
    let timeout = Duration::from_secs(1);

    let (error, elapsed) = check_until_refused(&server.endpoint, &pki.trust(), &token, timeout);
    server.received();

    assert!(elapsed >= timeout && elapsed < 3 * timeout, "took {elapsed:?}");
    match &error {
        ImapError::Transport { phase, source } => {
            assert_eq!(*phase, ImapPhase::Greeting);
            assert_eq!(source.kind, TransportKind::Timeout);
        }
        other => panic!("expected a timeout, got {other}"),
    }
    let d = check_imap_error(&error, &context(MAILBOX), &token);
    assert_eq!(d.id, "net-timeout");
    assert!(d.summary.contains(&format!("127.0.0.1:{port}")), "{}", d.summary);
    assert!(d.summary.contains("IMAP greeting"), "{}", d.summary);
}

#[test]
fn f3_imap_server_trickling_its_select_answer_over_tls_times_out_in_select() {
    let pki = TestPki::new("mailgrant test CA");
    let token = long_token();
    let server = Server::start(&pki, Security::Tls, |peer| {
        peer.send("* OK ready");
        let (tag, _) = imap_authenticate(peer);
        peer.send(&format!("{tag} OK Logged in"));
        tagged(peer, "SELECT");
        trickle(
            peer,
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft) and on",
            TRICKLE_EVERY,
        );
    });
    let timeout = Duration::from_secs(1);

    let (error, elapsed) = check_until_refused(&server.endpoint, &pki.trust(), &token, timeout);
    server.received();

    assert!(elapsed >= timeout && elapsed < 3 * timeout, "took {elapsed:?}");
    assert!(
        matches!(&error, ImapError::Transport { phase: ImapPhase::Select, source }
            if source.kind == TransportKind::Timeout),
        "{error:?}"
    );
    let d = check_imap_error(&error, &context(MAILBOX), &token);
    assert_eq!(d.id, "net-timeout");
    assert!(d.summary.contains("IMAP select"), "{}", d.summary);
}

#[test]
fn f3_smtp_greeting_flooding_continuation_lines_is_a_reply_too_long() {
    let pki = TestPki::new("mailgrant test CA");
    let token = long_token();
    let server = Server::start(&pki, Security::StartTls, |peer| {
        flood(peer, b"220-mail.example.net still greeting you\r\n");
    });
    let port = server.endpoint.port;

    let (error, elapsed) = send_until_refused(&server.endpoint, &pki.trust(), &token, TIMEOUT);
    server.received();

    assert!(
        elapsed < Duration::from_secs(2),
        "ended at the line limit, not a timeout: {elapsed:?}"
    );
    match &error {
        SmtpError::Transport { phase, source } => {
            assert_eq!(*phase, SmtpPhase::Greeting);
            assert_eq!(source.kind, TransportKind::Oversized);
            assert!(source.detail.contains("more than 200 lines"), "{}", source.detail);
        }
        other => panic!("expected a reply too long, got {other}"),
    }
    assert!(!error.is_transient(), "retrying gets the same flood");
    let d = check_smtp_error(&error, &context(MAILBOX), &token);
    assert_eq!(d.id, "net-reply-too-long");
    assert_eq!(d.retry, mailgrant::diagnose::Retry::Permanent);
    assert!(d.summary.contains("too long or never ended"), "{}", d.summary);
    assert!(d.summary.contains(&format!("127.0.0.1:{port}, SMTP greeting")), "{}", d.summary);
    assert!(d.fix.contains("host, port and security"), "{}", d.fix);
}

#[test]
fn f3_smtp_greeting_that_is_one_endless_line_is_a_reply_too_long() {
    let pki = TestPki::new("mailgrant test CA");
    let token = long_token();
    let server = Server::start(&pki, Security::Tls, |peer| {
        flood(peer, &[b'x'; 4096]);
    });

    let message = message(MAILBOX, MAILBOX);
    let error =
        send_test_message(&server.endpoint, &pki.trust(), MAILBOX, &token, &message, TIMEOUT)
            .expect_err("the line never ends");
    server.received();

    match &error {
        SmtpError::Transport { phase, source } => {
            assert_eq!(*phase, SmtpPhase::Greeting);
            assert_eq!(source.kind, TransportKind::Oversized);
            assert!(source.detail.contains("longer than 8192 bytes"), "{}", source.detail);
        }
        other => panic!("expected a reply too long, got {other}"),
    }
    assert_eq!(check_smtp_error(&error, &context(MAILBOX), &token).id, "net-reply-too-long");
}

#[test]
fn f3_imap_flood_of_untagged_lines_during_select_is_a_reply_too_long() {
    let pki = TestPki::new("mailgrant test CA");
    let token = long_token();
    let server = Server::start(&pki, Security::Tls, |peer| {
        peer.send("* OK ready");
        let (tag, _) = imap_authenticate(peer);
        peer.send(&format!("{tag} OK Logged in"));
        tagged(peer, "SELECT");
        flood(peer, "* 1 EXISTS\r\n".repeat(512).as_bytes());
    });

    let (error, elapsed) = check_until_refused(&server.endpoint, &pki.trust(), &token, TIMEOUT);
    server.received();

    assert!(elapsed < Duration::from_secs(3), "ended at the size limit: {elapsed:?}");
    match &error {
        ImapError::Transport { phase, source } => {
            assert_eq!(*phase, ImapPhase::Select);
            assert_eq!(source.kind, TransportKind::Oversized);
            assert!(source.detail.contains("more than 1048576 bytes"), "{}", source.detail);
        }
        other => panic!("expected a reply too long, got {other}"),
    }
    let d = check_imap_error(&error, &context(MAILBOX), &token);
    assert_eq!(d.id, "net-reply-too-long");
    assert!(d.summary.contains("IMAP select"), "{}", d.summary);
}

/// Exchange Online's other two refusals after AUTH: 530 5.7.57 at MAIL FROM (the session is
/// not treated as authenticated) and 550 5.7.60 (the From address may not be sent as).
#[test]
fn smtp_530_5_7_57_and_550_5_7_60_after_auth_are_named_with_their_remedy() {
    let pki = TestPki::new("mailgrant test CA");
    let token = long_token();
    let cases = [
        (
            "530 5.7.57 Client not authenticated to send mail. Error: 535 5.7.139 \
             Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.",
            "smtp-not-authenticated",
            "smtp.office365.com, port 587, STARTTLS",
        ),
        (
            "550 5.7.60 SMTP; Client does not have permissions to send as this sender",
            "smtp-send-as-denied",
            "Add-RecipientPermission",
        ),
    ];
    for (reply, id, remedy) in cases {
        let server = Server::start(&pki, Security::StartTls, move |peer| {
            smtp_up_to_auth(peer, true, "AUTH LOGIN XOAUTH2");
            smtp_two_step(peer);
            peer.send("235 2.7.0 Authentication successful");
            peer.expect("MAIL FROM:");
            peer.send(reply);
            if peer.recv().is_some() {
                peer.send("221 2.0.0 Service closing transmission channel");
            }
        });
        let message = message(MAILBOX, MAILBOX);
        let result =
            send_test_message(&server.endpoint, &pki.trust(), MAILBOX, &token, &message, TIMEOUT);
        let error = result.expect_err("refused at MAIL FROM");
        assert_eq!(error.phase(), Some(SmtpPhase::MailFrom), "{reply}");
        let d = check_smtp_error(&error, &context(MAILBOX), &token);
        assert_eq!(d.id, id, "{reply}");
        assert!(d.fix.contains(remedy), "{reply}: {}", d.fix);
        assert!(d.summary.contains("not sent"), "{}", d.summary);
    }
}

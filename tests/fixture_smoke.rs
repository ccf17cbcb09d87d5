//! The test fixture itself works: the fake IdP issues and introspects tokens, Dovecot accepts a
//! minted token over IMAPS with AUTHENTICATE XOAUTH2 and refuses a bad one after the `+` error
//! challenge, Postfix refuses AUTH before STARTTLS and delivers an authenticated message into
//! the Maildir, headless Chromium follows the IdP's redirect to a loopback listener, and no
//! token value reaches the fixture's logs.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use mailgrant::trust::Trust;
use rustls::pki_types::ServerName;
use support::{MailFixture, fixtures_dir, http_request};

const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// Reads one CRLF-terminated line byte by byte (no read-ahead, so STARTTLS can follow).
fn read_line(stream: &mut impl Read) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        let n = stream.read(&mut byte).expect("read a line from the server");
        assert!(n == 1, "server closed the connection after {:?}", String::from_utf8_lossy(&line));
        line.push(byte[0]);
        if line.ends_with(b"\r\n") {
            line.truncate(line.len() - 2);
            return String::from_utf8_lossy(&line).into_owned();
        }
    }
}

/// Reads a multi-line SMTP reply ("250-..." continued, "250 ..." last); returns all lines.
fn read_smtp_reply(stream: &mut impl Read) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let line = read_line(stream);
        let last = line.as_bytes().get(3) != Some(&b'-');
        lines.push(line);
        if last {
            return lines;
        }
    }
}

fn connect(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to a fixture port");
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("read timeout");
    stream.set_write_timeout(Some(IO_TIMEOUT)).expect("write timeout");
    stream
}

fn tls(
    config: Arc<rustls::ClientConfig>,
    sock: TcpStream,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let name = ServerName::try_from("localhost").expect("server name");
    let conn = rustls::ClientConnection::new(config, name).expect("TLS client");
    rustls::StreamOwned::new(conn, sock)
}

fn xoauth2(user: &str, token: &str) -> String {
    B64.encode(format!("user={user}\x01auth=Bearer {token}\x01\x01"))
}

fn fixture_trust(fixture: &MailFixture) -> Arc<rustls::ClientConfig> {
    Trust::load(Some(&fixture.ca_file)).expect("load the fixture CA").client_config()
}

/// Every log the fixture wrote, for scanning for secret values.
fn all_logs(fixture: &MailFixture) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(fixture.dir.path().join("log")).expect("log dir") {
        let path = entry.expect("log entry").path();
        text.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
    }
    text
}

#[test]
fn idp_mints_entra_sized_tokens_and_introspection_knows_them() {
    let fixture = MailFixture::start();
    let token = fixture.mint("operator@example.com", 300);
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "access token is JWT-shaped");
    assert!((1990..=2100).contains(&token.len()), "Entra-sized token, got {}", token.len());
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(parts[1])
        .expect("payload is base64url");
    let claims: serde_json::Value = serde_json::from_slice(&payload).expect("payload is JSON");
    assert_eq!(claims["aud"], "https://outlook.office.com");
    assert_eq!(claims["upn"], "operator@example.com");
    assert_eq!(claims["preferred_username"], "operator@example.com");

    let form = format!("token={token}");
    let (status, body) = http_request(
        &fixture.idp_url,
        "POST",
        "/introspect",
        "application/x-www-form-urlencoded",
        &form,
    );
    assert_eq!(status, 200);
    let answer: serde_json::Value = serde_json::from_str(&body).expect("introspection JSON");
    assert_eq!(answer["active"], true);
    assert_eq!(answer["username"], "operator@example.com");

    fixture.revoke_all();
    let (_, body) = http_request(
        &fixture.idp_url,
        "POST",
        "/introspect",
        "application/x-www-form-urlencoded",
        &form,
    );
    assert_eq!(body, r#"{"active": false}"#);
    assert_eq!(fixture.stats()["minted"], 1);
    assert!(!all_logs(&fixture).contains(&token), "a token value reached a fixture log");
}

#[test]
fn imaps_xoauth2_accepts_a_minted_token_and_refuses_a_bad_one_after_the_challenge() {
    let fixture = MailFixture::start();
    let token = fixture.mint(&fixture.mailbox, 300);
    let config = fixture_trust(&fixture);

    // Good token: SASL-IR on the AUTHENTICATE line.
    let mut imap = tls(Arc::clone(&config), connect(fixture.imaps_port));
    let greeting = read_line(&mut imap);
    assert!(greeting.starts_with("* OK"), "greeting: {greeting}");
    let line = format!("a1 AUTHENTICATE XOAUTH2 {}\r\n", xoauth2(&fixture.mailbox, &token));
    imap.write_all(line.as_bytes()).expect("send AUTHENTICATE");
    let reply = read_line(&mut imap);
    assert!(reply.starts_with("a1 OK"), "good token refused: {reply}");
    imap.write_all(b"a2 SELECT INBOX\r\n").expect("send SELECT");
    let mut lines = vec![read_line(&mut imap)];
    while !lines.last().is_some_and(|l| l.starts_with("a2 ")) {
        lines.push(read_line(&mut imap));
    }
    assert!(lines.iter().any(|l| l == "* 0 EXISTS"), "empty INBOX: {lines:?}");
    assert!(lines.last().is_some_and(|l| l.starts_with("a2 OK")), "SELECT: {lines:?}");

    // Bad token: `+ <base64 JSON>`, answered with an empty line, then NO.
    let mut imap = tls(config, connect(fixture.imaps_port));
    read_line(&mut imap);
    let line = format!("b1 AUTHENTICATE XOAUTH2 {}\r\n", xoauth2(&fixture.mailbox, "bad-token"));
    imap.write_all(line.as_bytes()).expect("send AUTHENTICATE");
    let challenge = read_line(&mut imap);
    let encoded = challenge.strip_prefix("+ ").expect("an error challenge");
    let json: serde_json::Value =
        serde_json::from_slice(&B64.decode(encoded).expect("base64 challenge")).expect("JSON");
    assert_eq!(json["status"], "401", "challenge: {json}");
    imap.write_all(b"\r\n").expect("answer the challenge");
    let reply = read_line(&mut imap);
    assert!(reply.starts_with("b1 NO [AUTHENTICATIONFAILED]"), "bad token: {reply}");

    let log = fixture.dovecot_log();
    assert!(
        log.contains("Login: user=<alarms@example.com>, method=XOAUTH2") && log.contains(", TLS"),
        "Dovecot logged no TLS XOAUTH2 login:\n{log}"
    );
    assert!(log.contains("Provided token is not valid"), "no refusal reason:\n{log}");
    assert!(!all_logs(&fixture).contains(&token), "a token value reached a fixture log");
}

#[test]
fn the_fixture_certificate_is_trusted_only_through_the_extra_ca() {
    let fixture = MailFixture::start();
    let system_only = Trust::load(None).expect("system roots").client_config();
    let mut imap = tls(system_only, connect(fixture.imaps_port));
    let mut buf = [0u8; 16];
    let error = imap.read(&mut buf).expect_err("handshake must fail without the fixture CA");
    assert!(error.to_string().contains("UnknownIssuer"), "unexpected error: {error}");
}

#[test]
fn smtp_submission_refuses_auth_before_starttls_and_delivers_after_it() {
    let fixture = MailFixture::start();
    let mut plain = connect(fixture.smtp_port);
    let greeting = read_smtp_reply(&mut plain);
    assert!(greeting[0].starts_with("220 "), "greeting: {greeting:?}");
    plain.write_all(b"EHLO client.example.com\r\n").expect("EHLO");
    let ehlo = read_smtp_reply(&mut plain);
    assert!(ehlo.iter().any(|l| l.get(4..) == Some("STARTTLS")), "no STARTTLS: {ehlo:?}");
    assert!(
        !ehlo.iter().any(|l| l.get(4..).is_some_and(|s| s.starts_with("AUTH"))),
        "AUTH before TLS: {ehlo:?}"
    );
    plain.write_all(b"AUTH XOAUTH2\r\n").expect("AUTH");
    let refused = read_smtp_reply(&mut plain);
    assert!(refused[0].starts_with("530 5.7.0"), "AUTH before STARTTLS: {refused:?}");

    plain.write_all(b"STARTTLS\r\n").expect("STARTTLS");
    assert!(read_smtp_reply(&mut plain)[0].starts_with("220 "));
    let mut smtp = tls(fixture_trust(&fixture), plain);
    smtp.write_all(b"EHLO client.example.com\r\n").expect("EHLO");
    let ehlo = read_smtp_reply(&mut smtp);
    assert!(ehlo.iter().any(|l| l.contains("XOAUTH2")), "no XOAUTH2 after TLS: {ehlo:?}");

    // The token on its own line after 334 (RFC 4954), as mailgrant sends Entra-sized tokens.
    let token = fixture.mint(&fixture.mailbox, 300);
    smtp.write_all(b"AUTH XOAUTH2\r\n").expect("AUTH");
    assert!(read_smtp_reply(&mut smtp)[0].starts_with("334"));
    smtp.write_all(format!("{}\r\n", xoauth2(&fixture.mailbox, &token)).as_bytes())
        .expect("XOAUTH2 response");
    let auth = read_smtp_reply(&mut smtp);
    assert!(auth[0].starts_with("235 "), "good token refused: {auth:?}");

    let subject = "fixture smoke round trip 7f3a";
    let commands = [
        ("MAIL FROM:<alarms@example.com>\r\n".to_owned(), "250"),
        ("RCPT TO:<alarms@example.com>\r\n".to_owned(), "250"),
        ("DATA\r\n".to_owned(), "354"),
        (format!("Subject: {subject}\r\n\r\nhello\r\n.\r\n"), "250"),
    ];
    for (command, code) in commands {
        smtp.write_all(command.as_bytes()).expect("send");
        let reply = read_smtp_reply(&mut smtp);
        assert!(reply[0].starts_with(code), "{command:?} -> {reply:?}");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let messages = fixture.maildir_messages("alarms@example.com");
        if messages.iter().any(|m| m.contains(subject)) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "message never reached the Maildir");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(fixture.postfix_log().contains("status=sent"), "{}", fixture.postfix_log());
    assert!(!all_logs(&fixture).contains(&token), "a token value reached a fixture log");
}

/// A stand-in for mailgrant's loopback listener: answers the callback only after a delay (as
/// mailgrant answers after redeeming the code), 404 for anything else. Returns the query.
fn one_callback_listener() -> (u16, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the listener");
    let port = listener.local_addr().expect("addr").port();
    let handle = std::thread::spawn(move || {
        loop {
            let (mut stream, _) = listener.accept().expect("accept");
            stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
            let request_line = read_line(&mut stream);
            while !read_line(&mut stream).is_empty() {}
            let target = request_line.split_whitespace().nth(1).unwrap_or("").to_owned();
            if !target.contains("code=") {
                let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
                continue;
            }
            std::thread::sleep(Duration::from_millis(700));
            let page = "<html><body><h1>mailgrant test landing page</h1></body></html>";
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{page}",
                page.len()
            );
            stream.write_all(response.as_bytes()).expect("answer");
            return target;
        }
    });
    (port, handle)
}

/// Runs $BROWSER the way the `webbrowser` crate does on Linux: split on whitespace, `%s`
/// replaced by the URL. (It spawns without waiting; here the test waits.)
fn run_browser_like_webbrowser(browser: &str, url: &str) -> std::process::ExitStatus {
    let argv: Vec<String> =
        browser.split_ascii_whitespace().map(|a| a.replace("%s", url)).collect();
    Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run the headless browser")
}

#[test]
fn headless_chromium_follows_the_idp_redirect_to_the_loopback_listener() {
    let fixture = MailFixture::start();
    let (port, listener) = one_callback_listener();
    let redirect = format!("http://localhost:{port}/");
    let url = format!(
        "{}?client_id={}&response_type=code&redirect_uri={}&scope=openid%20offline_access\
         &state=smoke-state-1&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM\
         &code_challenge_method=S256&login_hint=alarms%40example.com&prompt=select_account",
        fixture.authorize_url(),
        fixture.client_id,
        url_encode(&redirect),
    );
    let (browser, dom_log) = fixture.browser_env();
    let status = run_browser_like_webbrowser(&browser, &url);
    assert!(
        status.success(),
        "headless browser failed: {}",
        std::fs::read_to_string(&dom_log).unwrap_or_default()
    );
    let query = listener.join().expect("listener thread");
    assert!(query.contains("state=smoke-state-1"), "callback without our state");
    let dom = std::fs::read_to_string(&dom_log).expect("DOM log written");
    assert!(dom.contains("mailgrant test landing page"), "landing page not logged: {dom}");
    assert!(dom.contains("headless-browser: end exit=0"), "{dom}");
    assert_eq!(fixture.last_authorize()["prompt"], "select_account");
    assert_eq!(fixture.stats()["authorize_requests"], 1);
    let code = query.split("code=").nth(1).and_then(|s| s.split('&').next()).unwrap_or("");
    assert!(code.len() > 100, "an authorization code came back");
    assert!(!all_logs(&fixture).contains(code), "the code reached a fixture log");
}

#[test]
fn a_missing_package_is_named_never_skipped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = Command::new("python3")
        .arg(fixtures_dir().join("mailfixture.py"))
        .args(["start", "--dir"])
        .arg(dir.path().join("fixture"))
        .env("MAILFIXTURE_PRETEND_MISSING", "postfix")
        .stdin(Stdio::null())
        .output()
        .expect("run mailfixture.py");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("apt-get install -y --no-install-recommends postfix"), "{stderr}");
    assert!(output.stdout.is_empty(), "no JSON on failure");
}

#[test]
fn fake_idp_selftest_passes() {
    let output = Command::new("python3")
        .arg(fixtures_dir().join("fake_idp.py"))
        .arg("--selftest")
        .stdin(Stdio::null())
        .output()
        .expect("run fake_idp.py --selftest");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success() && stdout.contains("selftest: ok"), "{stdout}");
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

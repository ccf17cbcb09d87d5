//! Every sign-in and token-endpoint diagnosis provoked through the real code path: the browser's
//! callback reaches the real loopback listener over TCP, and the token endpoint is a scripted
//! HTTP (or TLS) server on 127.0.0.1 that answers with the exact bytes of the field case. Each
//! test asserts the diagnosis id, that the fix names the remedy, and that no code, token or
//! secret of the scenario reaches any text the operator or a log could see.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use mailgrant::diagnose::{self, Diagnosis, Retry};
use mailgrant::oauth::{
    CertificateProblem, PendingSignIn, SignInError, TokenClient, TokenError, TokenSet,
    TransportKind,
};
use mailgrant::profile::{Profile, ProfileForm};
use mailgrant::provider::ProviderKind;
use mailgrant::session::{self, Freshness, SessionError};
use mailgrant::store::{self, ConfigPaths, Identities, Secrets, ServiceConfig};
use mailgrant::trust::Trust;
use mailgrant::verify::{self, CheckId, Outcome, VerifyInput};
use oauth2::{AccessToken, ClientSecret, RefreshToken};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use support::loopback::get;

const CLIENT_ID: &str = "00000000-0000-0000-0000-000000000001";
const CLIENT_SECRET: &str = "cs~Diagnoses.Secret_0123456789";
const CODE: &str = "M.C509_diagnoses-code.0.U.-abcdefghijklmnop";
const ACCESS_TOKEN: &str = "eyJ0eXAiOiJKV1QifQ.eyJ1cG4iOiJkaWFnbm9zZXMifQ.sig-AT-diagnoses";
const REFRESH_TOKEN: &str = "0.AAAA-refresh-token-diagnoses-RT1";
const OUTLOOK_SCOPES: &str = "https://outlook.office.com/IMAP.AccessAsUser.All \
                              https://outlook.office.com/SMTP.Send offline_access openid";
const GOOGLE_SCOPES: &str = "https://mail.google.com/ openid email";

// --- Profiles ----------------------------------------------------------------------------------

fn profile_with(token_url: &str, scopes: &str, secret: Option<&str>) -> Profile {
    let form = ProfileForm {
        provider: ProviderKind::Custom,
        client_id: CLIENT_ID.into(),
        client_secret: secret.unwrap_or_default().into(),
        authorize_url: "http://127.0.0.1:9/authorize".into(),
        token_url: token_url.into(),
        scopes: scopes.into(),
        mailbox: "alarms@example.com".into(),
        smtp_host: "127.0.0.1".into(),
        imap_host: "127.0.0.1".into(),
        timeout_secs: "2".into(),
        ..ProfileForm::for_provider(ProviderKind::Custom)
    };
    form.validate().expect("valid test profile").0
}

fn outlook(token_url: &str) -> Profile {
    profile_with(token_url, OUTLOOK_SCOPES, Some(CLIENT_SECRET))
}

fn google(token_url: &str) -> Profile {
    profile_with(token_url, GOOGLE_SCOPES, Some(CLIENT_SECRET))
}

fn system_trust() -> Trust {
    Trust::load(None).expect("system trust store")
}

// --- A scripted HTTP server --------------------------------------------------------------------

/// Answers each of `answers.len()` connections with the next raw HTTP answer, after reading the
/// request (headers and body). Returns the URL base and the requests it read.
struct Scripted {
    base: String,
    thread: JoinHandle<Vec<String>>,
}

impl Scripted {
    fn start(answers: Vec<String>) -> Scripted {
        Scripted::serve(answers, false)
    }

    /// Like [`Scripted::start`], but answers before reading anything (a server that speaks
    /// first, or one that does not wait for a TLS client's hello to end in a blank line).
    fn start_answering_first(answers: Vec<String>) -> Scripted {
        Scripted::serve(answers, true)
    }

    fn serve(answers: Vec<String>, answer_first: bool) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let thread = thread::spawn(move || {
            let mut requests = Vec::new();
            for answer in answers {
                let Ok((mut stream, _)) = listener.accept() else { break };
                stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
                if answer_first {
                    let _ = stream.write_all(answer.as_bytes());
                    let _ = stream.flush();
                    requests.push(read_request(&mut stream));
                } else {
                    requests.push(read_request(&mut stream));
                    let _ = stream.write_all(answer.as_bytes());
                    let _ = stream.flush();
                }
            }
            requests
        });
        Scripted { base: format!("http://127.0.0.1:{port}"), thread }
    }

    fn requests(self) -> Vec<String> {
        self.thread.join().expect("scripted server")
    }
}

fn read_request(stream: &mut impl Read) -> String {
    let mut request = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => request.extend_from_slice(&buffer[..n]),
        }
        let text = String::from_utf8_lossy(&request);
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let l = l.to_ascii_lowercase();
                    l.strip_prefix("content-length:").and_then(|v| v.trim().parse::<usize>().ok())
                })
                .unwrap_or(0);
            if request.len() >= end + 4 + length {
                break;
            }
        }
    }
    String::from_utf8_lossy(&request).into_owned()
}

fn http(status: &str, headers: &[&str], body: &str) -> String {
    let mut answer = format!("HTTP/1.1 {status}\r\n");
    for header in headers {
        answer.push_str(header);
        answer.push_str("\r\n");
    }
    answer.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()));
    answer
}

fn json(status: &str, body: &str) -> String {
    http(status, &["Content-Type: application/json; charset=utf-8"], body)
}

fn refresh(profile: &Profile, trust: &Trust) -> TokenError {
    TokenClient::new(profile, trust)
        .refresh(&RefreshToken::new(REFRESH_TOKEN.to_owned()))
        .expect_err("the refresh must fail")
}

/// Everything an operator or a log could see of a token failure.
fn visible_token(error: &TokenError, d: &Diagnosis) -> String {
    format!("{error}\n{error:?}\n{}\n{d:?}", d.to_text())
}

fn assert_no_secret(text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!text.contains(secret), "a secret value leaked into: {text}");
    }
}

// --- The browser's callback --------------------------------------------------------------------

struct Callback {
    outcome: Result<TokenSet, SignInError>,
    page: String,
    state: String,
}

/// Starts a sign-in, lets the "browser" come back with `query` plus the right `state`, and
/// returns how the sign-in ended and the page the browser was shown.
fn come_back_with(profile: &Profile, query: &str) -> Callback {
    let client = TokenClient::new(profile, &system_trust());
    let pending = PendingSignIn::start(profile).expect("listener");
    let address =
        pending.listening_on().into_iter().find(SocketAddr::is_ipv4).expect("127.0.0.1 listener");
    let url = url::Url::parse(pending.authorize_url()).expect("authorize url");
    let state =
        url.query_pairs().find(|(k, _)| k == "state").map(|(_, v)| v.into_owned()).expect("state");
    let waiter = thread::spawn(move || pending.wait(&client, Duration::from_secs(20)));
    let (status, page) = get(address, &format!("/?{query}&state={state}"));
    assert_eq!(status, 200, "{page}");
    let outcome = waiter.join().expect("sign-in thread");
    Callback { outcome, page, state }
}

fn callback_error(profile: &Profile, query: &str) -> (Diagnosis, Callback) {
    let callback = come_back_with(profile, query);
    let error = callback.outcome.as_ref().expect_err("the callback carries an error");
    assert!(matches!(error, SignInError::Callback(_)), "{error:?}");
    assert!(!error.is_transient(), "{error:?}");
    let d = diagnose::oauth::sign_in(error, profile);
    let seen = format!("{error}\n{error:?}\n{}\n{d:?}\n{}", d.to_text(), callback.page);
    assert_no_secret(&seen, &[&callback.state, CLIENT_SECRET]);
    (d, callback)
}

#[test]
fn declined_consent_on_the_callback_says_sign_in_again_and_accept() {
    let profile = outlook("http://127.0.0.1:9/token");
    let (d, callback) = callback_error(
        &profile,
        "error=access_denied&error_description=AADSTS65004%3a+User+declined+to+consent+to+access\
         +the+app.%0d%0aTrace+ID%3a+00000000-0000-0000-0000-000000000000",
    );
    assert_eq!(d.id, "consent-declined");
    assert_eq!(d.retry, Retry::Permanent);
    assert!(d.fix.contains("Sign in again and accept the permissions"), "{}", d.fix);
    assert!(callback.page.contains("The permissions page was declined"), "{}", callback.page);
}

#[test]
fn unauthorized_client_on_the_callback_says_register_a_desktop_client() {
    let profile = google("http://127.0.0.1:9/token");
    let (d, _) = callback_error(
        &profile,
        "error=unauthorized_client&error_description=Client+is+unauthorized+to+retrieve+\
         access+tokens+using+this+method.",
    );
    assert_eq!(d.id, "unauthorized-client");
    assert!(d.fix.contains("desktop (installed) app"), "{}", d.fix);
    assert!(d.fix.contains("http://localhost"), "{}", d.fix);
}

#[test]
fn google_workspace_blocking_the_app_names_the_admin_console_page_and_client_id() {
    let profile = google("http://127.0.0.1:9/token");
    let (d, callback) = callback_error(
        &profile,
        "error=admin_policy_enforced&error_description=The+user+account+is+not+allowed+by+\
         the+organization%27s+admin+policy.",
    );
    assert_eq!(d.id, "admin-policy-enforced");
    assert!(
        d.fix.contains("Security → Access and data control → API controls → Manage third-party"),
        "{}",
        d.fix
    );
    assert!(d.fix.contains(&format!("client ID {CLIENT_ID} as Trusted")), "{}", d.fix);
    assert!(callback.page.contains("administrator blocks this app"), "{}", callback.page);
}

#[test]
fn user_not_assigned_to_the_app_names_users_and_groups() {
    let profile = outlook("http://127.0.0.1:9/token");
    let (d, _) = callback_error(
        &profile,
        "error=access_denied&error_description=AADSTS50105%3a+Your+administrator+has+configured\
         +the+application+to+block+users+unless+they+are+specifically+granted+access.",
    );
    assert_eq!(d.id, "user-not-assigned");
    assert!(
        d.fix.contains(&format!(
            "Enterprise applications → the app ({CLIENT_ID}) → Users and groups → Add user/group"
        )),
        "{}",
        d.fix
    );
}

#[test]
fn disabled_app_names_the_enabled_for_users_setting() {
    let profile = outlook("http://127.0.0.1:9/token");
    let (d, _) = callback_error(
        &profile,
        "error=unauthorized_client&error_description=AADSTS7000112%3a+Application+%27\
         00000000-0000-0000-0000-000000000001%27(alarm-mailer)+is+disabled.",
    );
    // The AADSTS number wins over the generic error code.
    assert_eq!(d.id, "app-disabled");
    assert!(d.fix.contains("\"Enabled for users to sign-in?\" to Yes"), "{}", d.fix);
    assert!(d.fix.contains(CLIENT_ID), "{}", d.fix);
}

// --- Code redemption and refresh ---------------------------------------------------------------

#[test]
fn google_invalid_client_at_code_redemption_names_the_credentials_page() {
    let body =
        r#"{"error":"invalid_client","error_description":"The OAuth client was not found."}"#;
    let server = Scripted::start(vec![json("401 Unauthorized", body)]);
    let profile = google(&format!("{}/token", server.base));
    let callback = come_back_with(&profile, &format!("code={CODE}&scope=https://mail.google.com/"));
    let error = callback.outcome.as_ref().expect_err("refused");
    let d = diagnose::oauth::sign_in(error, &profile);
    let requests = server.requests();

    assert_eq!(d.id, "client-invalid");
    assert_eq!(d.retry, Retry::Permanent);
    assert!(d.fix.contains("APIs & Services → Credentials → the OAuth client"), "{}", d.fix);
    assert!(d.fix.contains(CLIENT_ID), "{}", d.fix);
    assert!(callback.page.contains("does not accept this client ID"), "{}", callback.page);
    assert_eq!(requests.len(), 1, "the code is redeemed once");
    assert!(requests[0].contains("client_secret="), "the secret was sent");
    let seen = format!("{error}\n{error:?}\n{}\n{d:?}\n{}", d.to_text(), callback.page);
    assert_no_secret(&seen, &[CODE, CLIENT_SECRET, &callback.state]);
}

#[test]
fn clock_skew_at_the_token_endpoint_says_to_set_the_time_automatically() {
    let body = serde_json::json!({
        "error": "invalid_client",
        "error_description": "AADSTS700024: Client assertion is not within its valid time range. \
            Current time: 2024-02-14T02:40:29Z, assertion valid from 2024-02-14T03:40:29Z.",
        "error_codes": [700024],
    })
    .to_string();
    let server = Scripted::start(vec![json("400 Bad Request", &body)]);
    let profile = outlook(&format!("{}/tenant/oauth2/v2.0/token", server.base));
    let error = refresh(&profile, &system_trust());
    server.requests();

    let d = diagnose::oauth::token(&error, &profile);
    assert_eq!(d.id, "clock-skew");
    assert!(d.fix.contains("Set time automatically"), "{}", d.fix);
    assert_no_secret(&visible_token(&error, &d), &[REFRESH_TOKEN, CLIENT_SECRET]);
}

#[test]
fn a_5xx_error_page_is_a_passing_outage_not_a_wrong_token_url() {
    // 503 is in oauth_loopback.rs; the gateways' answers are the same kind.
    for status in ["502 Bad Gateway", "504 Gateway Timeout"] {
        let page = "<html><head><title>Service Unavailable</title></head><body>x</body></html>";
        let server = Scripted::start(vec![http(status, &["Content-Type: text/html"], page)]);
        let profile = outlook(&format!("{}/token", server.base));
        let error = refresh(&profile, &system_trust());
        server.requests();

        assert!(error.is_transient(), "{status}");
        let d = diagnose::oauth::token(&error, &profile);
        assert_eq!(d.id, "provider-unavailable", "{status}");
        assert_eq!(d.retry, Retry::Transient);
        assert!(d.summary.contains(&status[..3]), "{}", d.summary);
        assert!(d.fix.contains("Wait a few minutes and try again"), "{}", d.fix);
        assert!(d.details.iter().any(|l| l.contains("Service Unavailable")), "{:?}", d.details);
        assert_no_secret(&visible_token(&error, &d), &[REFRESH_TOKEN, CLIENT_SECRET]);
    }
}

#[test]
fn an_html_page_instead_of_the_token_answer_points_at_the_token_url_and_the_proxy() {
    // A captive portal or a proxy's block page answers 200 (and 403) with HTML.
    for status in ["200 OK", "403 Forbidden"] {
        let page = "<html><head><title>Contoso Web Gateway - Access blocked</title></head></html>";
        let server = Scripted::start(vec![http(status, &["Content-Type: text/html"], page)]);
        let profile = outlook(&format!("{}/token", server.base));
        let error = refresh(&profile, &system_trust());
        server.requests();

        let d = diagnose::oauth::token(&error, &profile);
        assert_eq!(d.id, "token-endpoint-unexpected", "{status}");
        assert!(d.fix.contains(&format!("Check the Token URL ({}/token)", server_base(&d))));
        assert!(d.fix.contains("HTTPS_PROXY"), "{}", d.fix);
        assert!(d.details.iter().any(|l| l.contains("text/html")), "{:?}", d.details);
        assert_no_secret(&visible_token(&error, &d), &[REFRESH_TOKEN, CLIENT_SECRET]);
    }
}

/// The `http://127.0.0.1:<port>` the fix quotes.
fn server_base(d: &Diagnosis) -> String {
    let at = d.fix.find("http://127.0.0.1:").expect("the fix quotes the Token URL");
    let rest = &d.fix[at..];
    rest[..rest.find("/token").expect("path")].to_owned()
}

#[test]
fn a_json_answer_without_an_access_token_cannot_be_read() {
    let body = r#"{"token_type":"Bearer","expires_in":3599,"refresh_token":"0.AAAA-rotated-RT2"}"#;
    let server = Scripted::start(vec![json("200 OK", body)]);
    let profile = outlook(&format!("{}/token", server.base));
    let error = refresh(&profile, &system_trust());
    server.requests();

    assert!(matches!(error, TokenError::InvalidResponse { .. }), "{error:?}");
    let d = diagnose::oauth::token(&error, &profile);
    assert_eq!(d.id, "token-response-invalid");
    assert!(d.fix.contains("Check the Token URL"), "{}", d.fix);
    assert_eq!(d.details, ["the field `access_token` is missing"]);
    assert_no_secret(
        &visible_token(&error, &d),
        &[REFRESH_TOKEN, CLIENT_SECRET, "0.AAAA-rotated-RT2"],
    );
}

#[test]
fn a_redirect_from_the_token_url_names_the_field_to_correct() {
    let answer = http("302 Found", &["Location: https://login.invalid/signin?from=token"], "");
    let server = Scripted::start(vec![answer]);
    let profile = outlook(&format!("{}/token", server.base));
    let error = refresh(&profile, &system_trust());
    let requests = server.requests();

    assert_eq!(requests.len(), 1, "the redirect is not followed");
    let d = diagnose::oauth::token(&error, &profile);
    assert_eq!(d.id, "token-endpoint-redirected");
    assert!(d.fix.contains("into the Token URL field"), "{}", d.fix);
    assert!(d.details.iter().any(|l| l.contains("https://login.invalid/signin")), "{:?}", d);
    assert_no_secret(&visible_token(&error, &d), &[REFRESH_TOKEN, CLIENT_SECRET]);
}

#[test]
fn a_proxy_asking_for_a_login_is_a_proxy_problem() {
    // A transparent proxy answers the request itself with 407.
    let answer = http(
        "407 Proxy Authentication Required",
        &["Proxy-Authenticate: Basic realm=\"Contoso proxy\"", "Content-Type: text/html"],
        "<html><title>Proxy login</title></html>",
    );
    let server = Scripted::start(vec![answer]);
    let profile = outlook(&format!("{}/token", server.base));
    let error = refresh(&profile, &system_trust());
    server.requests();

    assert!(
        matches!(&error, TokenError::Transport { kind: TransportKind::Proxy, .. }),
        "{error:?}"
    );
    let d = diagnose::oauth::token(&error, &profile);
    assert_eq!(d.id, "token-endpoint-proxy");
    assert!(d.fix.contains("Set HTTPS_PROXY"), "{}", d.fix);
    assert!(d.fix.contains("http://user:password@proxy:port"), "{}", d.fix);
    assert_no_secret(&visible_token(&error, &d), &[REFRESH_TOKEN, CLIENT_SECRET]);
}

/// The site config `mailgrant check` reads, with a stored refresh token.
fn write_site(dir: &Path, token_url: &str) -> std::path::PathBuf {
    let config = dir.join("mailgrant.toml");
    let text = format!(
        r#"schema_version = 1
mailbox = "alarms@example.com"
imap_user = "alarms@example.com"
smtp_user = "alarms@example.com"
from = "alarms@example.com"
test_recipient = "alarms@example.com"
timeout_secs = 2

[oauth]
provider = "custom"
client_id = "{CLIENT_ID}"
authorize_url = "http://127.0.0.1:9/authorize"
token_url = "{token_url}"
scopes = ["https://outlook.office.com/SMTP.Send", "offline_access"]

[smtp]
host = "127.0.0.1"
port = 9
security = "start_tls"

[imap]
host = "127.0.0.1"
port = 9
security = "tls"

[secrets]
store = "file"
"#
    );
    std::fs::write(&config, text).expect("write config");
    let secrets = dir.join("mailgrant.secrets.toml");
    std::fs::write(&secrets, format!("schema_version = 1\nrefresh_token = \"{REFRESH_TOKEN}\"\n"))
        .expect("write secrets");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    config
}

#[test]
fn https_proxy_refusing_the_tunnel_with_407_is_a_proxy_problem() {
    // The proxy named in HTTPS_PROXY answers CONNECT with 407; the token endpoint itself is
    // never reached (nothing listens at its address).
    let proxy = Scripted::start(vec![http(
        "407 Proxy Authentication Required",
        &["Proxy-Authenticate: Basic realm=\"Contoso proxy\""],
        "",
    )]);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_site(dir.path(), "https://127.0.0.1:9/tenant/oauth2/v2.0/token");

    let output = Command::new(env!("CARGO_BIN_EXE_mailgrant"))
        .args(["check", "--json", "--config"])
        .arg(&config)
        .env("HTTPS_PROXY", &proxy.base)
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .env_remove("https_proxy")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .stdin(Stdio::null())
        .output()
        .expect("run mailgrant");
    let requests = proxy.requests();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);

    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(requests[0].starts_with("CONNECT 127.0.0.1:9 HTTP/1.1"), "{requests:?}");
    let answer: serde_json::Value = serde_json::from_str(&stdout).expect("JSON on stdout");
    let d = &answer["diagnosis"];
    assert_eq!(d["id"], "token-endpoint-proxy", "{answer:#}");
    assert!(d["fix"].as_str().is_some_and(|f| f.contains("Set HTTPS_PROXY")), "{answer:#}");
    assert!(d.to_string().contains("407"), "the status is in the details: {answer:#}");
    assert_no_secret(&format!("{stdout}\n{stderr}"), &[REFRESH_TOKEN]);
    assert_no_secret(&requests.join("\n"), &[REFRESH_TOKEN]);
}

#[test]
fn a_server_that_does_not_speak_http_is_a_network_failure() {
    let server = Scripted::start_answering_first(vec!["SSH-2.0-OpenSSH_9.6\r\n".to_owned()]);
    let server_url = format!("{}/token", server.base);
    let profile = outlook(&server_url);
    let error = refresh(&profile, &system_trust());
    server.requests();

    assert!(
        matches!(&error, TokenError::Transport { kind: TransportKind::Other, .. }),
        "{error:?}"
    );
    let d = diagnose::oauth::token(&error, &profile);
    assert_eq!(d.id, "token-endpoint-network");
    assert!(d.fix.contains(&format!("Check that the Token URL ({})", server_url)), "{}", d.fix);
    assert!(d.cause.contains("not a web server"), "{}", d.cause);
    assert_no_secret(&visible_token(&error, &d), &[REFRESH_TOKEN, CLIENT_SECRET]);
}

// --- TLS to the token endpoint -----------------------------------------------------------------

/// A throw-away CA (as a PEM file, for the Extra CA setting) and a leaf it signs.
struct Pki {
    ca_file: std::path::PathBuf,
    issuer: Issuer<'static, KeyPair>,
    _dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "mailgrant diagnoses test CA");
        let key = KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("CA");
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, cert.pem()).expect("write CA");
        Pki { ca_file, issuer: Issuer::new(params, key), _dir: dir }
    }

    fn trust(&self) -> Trust {
        Trust::load(Some(&self.ca_file)).expect("trust with the test CA")
    }

    /// A TLS server for one connection whose leaf names `names` and starts `from_days` from
    /// now; the client is expected to refuse it during the handshake.
    fn serve(&self, names: &[&str], from_days: i64) -> (u16, JoinHandle<()>) {
        let key = KeyPair::generate().expect("key");
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).expect("params");
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now + time::Duration::days(from_days);
        params.not_after = now + time::Duration::days(from_days + 300);
        let cert = params.signed_by(&key, &self.issuer).expect("leaf");
        let der_key =
            rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key der");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], der_key)
            .expect("server config");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let thread = thread::spawn(move || {
            let (tcp, _) = listener.accept().expect("accept");
            tcp.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
            let conn = rustls::ServerConnection::new(Arc::new(config)).expect("conn");
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let mut buffer = [0u8; 1024];
            let _ = tls.read(&mut buffer); // the client refuses the certificate
        });
        (port, thread)
    }
}

#[test]
fn a_token_endpoint_certificate_for_another_host_names_the_token_url() {
    let pki = Pki::new();
    let (port, server) = pki.serve(&["proxy.invalid"], -1);
    let profile = outlook(&format!("https://127.0.0.1:{port}/token"));
    let error = refresh(&profile, &pki.trust());
    server.join().expect("tls server");

    assert!(
        matches!(
            &error,
            TokenError::Transport {
                kind: TransportKind::Certificate(CertificateProblem::WrongHostName),
                ..
            }
        ),
        "{error:?}"
    );
    let d = diagnose::oauth::token(&error, &profile);
    assert_eq!(d.id, "token-endpoint-tls-wrong-host");
    assert!(d.fix.contains("exact host name") && d.fix.contains("Token URL"), "{}", d.fix);
    assert_no_secret(&visible_token(&error, &d), &[REFRESH_TOKEN, CLIENT_SECRET]);
}

#[test]
fn a_token_endpoint_certificate_not_valid_yet_says_the_clock_is_behind() {
    let pki = Pki::new();
    let (port, server) = pki.serve(&["127.0.0.1"], 30);
    let profile = outlook(&format!("https://127.0.0.1:{port}/token"));
    let error = refresh(&profile, &pki.trust());
    server.join().expect("tls server");

    let d = diagnose::oauth::token(&error, &profile);
    assert_eq!(d.id, "token-endpoint-tls-not-yet-valid");
    assert!(d.cause.contains("clock is behind"), "{}", d.cause);
    assert!(d.fix.contains("clock to synchronise automatically"), "{}", d.fix);
    assert_no_secret(&visible_token(&error, &d), &[REFRESH_TOKEN, CLIENT_SECRET]);
}

#[test]
fn an_https_token_url_on_a_plain_http_port_is_a_failed_handshake() {
    let answer = http("400 Bad Request", &[], "plain http here");
    let server = Scripted::start_answering_first(vec![answer]);
    let port = server.base.rsplit(':').next().expect("port").to_owned();
    let profile = outlook(&format!("https://127.0.0.1:{port}/token"));
    let error = refresh(&profile, &system_trust());
    server.requests();

    assert!(
        matches!(&error, TokenError::Transport { kind: TransportKind::TlsHandshake, .. }),
        "{error:?}"
    );
    let d = diagnose::oauth::token(&error, &profile);
    assert_eq!(d.id, "token-endpoint-tls-failed");
    assert!(d.fix.contains("Check the Token URL"), "{}", d.fix);
    assert!(d.cause.contains("not HTTPS on that port"), "{}", d.cause);
}

// --- What the token answer holds (the verification's first checks) ----------------------------

fn id_token(account: &str) -> String {
    use base64::Engine;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let payload = format!(r#"{{"preferred_username":"{account}","tid":"t-1"}}"#);
    format!("{}.{}.c2ln", engine.encode(r#"{"alg":"none"}"#), engine.encode(payload))
}

/// A 200 token answer: Bearer, 3599 s, and `fields`.
fn token_body(fields: &[(&str, &str)]) -> String {
    let mut body = serde_json::json!({ "token_type": "Bearer", "expires_in": 3599 });
    for (name, value) in fields {
        body[*name] = serde_json::Value::from(*value);
    }
    body.to_string()
}

/// Signs in through the loopback with the token endpoint answering `body`, then runs `check`
/// of the verification on the tokens; returns its outcome.
fn sign_in_then_check(body: &str, check: CheckId) -> (Outcome, TokenSet, Profile) {
    let server = Scripted::start(vec![json("200 OK", body)]);
    let profile = outlook(&format!("{}/token", server.base));
    let callback = come_back_with(&profile, &format!("code={CODE}"));
    server.requests();
    let tokens = callback.outcome.expect("the provider answered 200");
    let account = tokens.identity.as_ref().and_then(|i| i.account()).map(str::to_owned);
    let input = VerifyInput {
        identities: Identities::for_profile(&profile, account.as_deref()),
        profile: profile.clone(),
        trust: system_trust(),
        tokens: tokens.clone(),
        refresher: None,
        only: Some(vec![check]),
    };
    let (report, _) = verify::run(input, |_| {});
    let outcome = report.get(check).expect("row").outcome.clone();
    (outcome, tokens, profile)
}

fn failed(outcome: &Outcome) -> &Diagnosis {
    match outcome {
        Outcome::Failed(d) => d,
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn an_empty_access_token_in_the_answer_fails_the_token_check() {
    let body = token_body(&[("access_token", ""), ("refresh_token", REFRESH_TOKEN)]);
    let (outcome, _, _) = sign_in_then_check(&body, CheckId::TokenReceived);
    let d = failed(&outcome);
    assert_eq!(d.id, "token-empty");
    assert!(d.fix.contains("v2.0 token endpoint"), "{}", d.fix);
    assert_no_secret(&format!("{}\n{d:?}", d.to_text()), &[REFRESH_TOKEN, CODE]);
}

#[test]
fn no_refresh_token_in_the_answer_names_offline_access() {
    let scope = "https://outlook.office.com/IMAP.AccessAsUser.All \
                 https://outlook.office.com/SMTP.Send";
    let body = token_body(&[("scope", scope), ("access_token", ACCESS_TOKEN)]);
    let (outcome, tokens, _) = sign_in_then_check(&body, CheckId::Refresh);
    assert!(tokens.refresh_token.is_none());
    let d = failed(&outcome);
    assert_eq!(d.id, "no-refresh-token");
    assert!(d.fix.contains("Add offline_access to the scopes"), "{}", d.fix);
    assert_no_secret(&format!("{}\n{d:?}", d.to_text()), &[ACCESS_TOKEN, CODE]);
}

#[test]
fn a_scope_the_provider_did_not_grant_is_named_with_the_portal_page() {
    let body = token_body(&[
        ("scope", "https://outlook.office.com/IMAP.AccessAsUser.All"),
        ("access_token", ACCESS_TOKEN),
        ("refresh_token", REFRESH_TOKEN),
    ]);
    let (outcome, _, _) = sign_in_then_check(&body, CheckId::ScopesGranted);
    let d = failed(&outcome);
    assert_eq!(d.id, "scope-not-granted");
    assert!(d.summary.contains("https://outlook.office.com/SMTP.Send"), "{}", d.summary);
    assert!(!d.summary.contains("IMAP.AccessAsUser.All"), "{}", d.summary);
    assert!(d.fix.contains("API permissions → Add a permission"), "{}", d.fix);
    assert_no_secret(&format!("{}\n{d:?}", d.to_text()), &[ACCESS_TOKEN, REFRESH_TOKEN, CODE]);
}

#[test]
fn signing_in_with_another_account_warns_and_names_the_mailbox_to_pick() {
    let id_token = id_token("it-admin@example.com");
    let body = token_body(&[
        ("access_token", ACCESS_TOKEN),
        ("refresh_token", REFRESH_TOKEN),
        ("id_token", &id_token),
    ]);
    let (outcome, _, _) = sign_in_then_check(&body, CheckId::SignedInAccount);
    let Outcome::Warning(d) = &outcome else { panic!("expected a warning, got {outcome:?}") };
    assert_eq!(d.id, "account-mismatch");
    assert_eq!(
        d.summary,
        "Signed in as it-admin@example.com, but the mailbox is alarms@example.com"
    );
    assert!(d.fix.contains("choose Sign in again and pick alarms@example.com"), "{}", d.fix);
    assert_no_secret(&format!("{}\n{d:?}", d.to_text()), &[ACCESS_TOKEN, REFRESH_TOKEN, CODE]);
}

// --- F13, F14: an answer far too large, a plain-http port that times out ------------------------

/// A token endpoint that answers every request with HTTP 200 and a 100 MB body (sent until the
/// client stops reading). Returns the URL base, the request counter and the stop switch.
fn huge_answer_server() -> (String, Arc<AtomicUsize>, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    let (requests, stop) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
    let (seen, stopped) = (Arc::clone(&requests), Arc::clone(&stop));
    thread::spawn(move || {
        while !stopped.load(Ordering::SeqCst) {
            let Ok((mut stream, _)) = listener.accept() else {
                thread::sleep(Duration::from_millis(20));
                continue;
            };
            stream.set_nonblocking(false).expect("blocking");
            stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
            read_request(&mut stream);
            seen.fetch_add(1, Ordering::SeqCst);
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: \
                        104857600\r\nConnection: close\r\n\r\n{\"access_token\":\"";
            let chunk = [b'A'; 64 * 1024];
            let mut sent = stream.write_all(head.as_bytes());
            for _ in 0..1600 {
                if sent.is_err() {
                    break;
                }
                sent = stream.write_all(&chunk);
            }
        }
    });
    (format!("http://127.0.0.1:{port}"), requests, stop)
}

#[test]
fn f13_a_100_mb_token_answer_is_not_a_network_fault_and_is_not_retried() {
    let (base, requests, stop) = huge_answer_server();
    let profile = outlook(&format!("{base}/token"));
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = ConfigPaths::for_config(&dir.path().join("mailgrant.toml"));
    let config = ServiceConfig::from_profile(&profile, &Identities::for_profile(&profile, None));
    let signed_in = TokenSet {
        access_token: AccessToken::new(ACCESS_TOKEN.into()),
        access_expires_at: None,
        refresh_token: Some(RefreshToken::new(REFRESH_TOKEN.into())),
        granted_scopes: None,
        identity: None,
        obtained_at: time::OffsetDateTime::now_utc(),
    };
    let secrets = Secrets::from_sign_in(&signed_in, Some(ClientSecret::new(CLIENT_SECRET.into())));
    store::save(&paths, &config, &secrets).expect("saved setup");

    // The default policy retries a passing failure three times: one request proves none.
    let failure = session::tokens(&paths, &profile, &system_trust(), Freshness::ForceRefresh)
        .expect_err("no token in a 100 MB answer");
    stop.store(true, Ordering::SeqCst);

    assert_eq!(requests.load(Ordering::SeqCst), 1, "permanent: asked once, not retried");
    assert!(!failure.is_transient(), "{failure:?}");
    let SessionError::Token(error) = &failure else { panic!("{failure:?}") };
    assert!(
        matches!(error, TokenError::Transport { kind: TransportKind::Oversized, .. }),
        "{error:?}"
    );
    assert!(!error.is_transient());
    let d = failure.diagnosis(&profile);
    assert_eq!(d.id, "token-endpoint-answer-too-large");
    assert_eq!(d.retry, Retry::Permanent);
    assert!(d.summary.contains("far larger than any token answer (over 1024 KB)"), "{}", d.summary);
    assert!(!d.fix.contains("network connection"), "{}", d.fix);
    assert!(d.fix.contains(&format!("Check the Token URL ({base}/token)")), "{}", d.fix);
    assert_no_secret(&visible_token(error, &d), &[REFRESH_TOKEN, CLIENT_SECRET, ACCESS_TOKEN]);
}

#[test]
fn f14_a_plain_http_token_url_on_a_custom_port_timing_out_names_that_port() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let holder = thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        thread::sleep(Duration::from_secs(3));
        drop(stream);
    });
    let profile = outlook(&format!("http://127.0.0.1:{port}/token"));
    let error = refresh(&profile, &system_trust());
    holder.join().expect("holder");

    assert!(
        matches!(&error, TokenError::Transport { kind: TransportKind::Timeout, .. }),
        "{error:?}"
    );
    let d = diagnose::oauth::token(&error, &profile);
    assert_eq!(d.id, "token-endpoint-timeout");
    assert!(
        d.fix.contains(&format!("allow outbound HTTP (port {port}) to 127.0.0.1")),
        "{}",
        d.fix
    );
    assert!(!d.fix.contains("443"), "{}", d.fix);
    assert!(!d.fix.contains("HTTPS ("), "{}", d.fix);
}

// --- Every AADSTS code the issue lists, through a real token endpoint answer -----------------

/// Each Entra error code the issue names, answered by a scripted token endpoint exactly as Entra
/// shapes its error body, redeemed through the real token client and diagnosed: the id, and a
/// fix that names the remedy.
#[test]
fn every_listed_aadsts_code_at_the_token_endpoint_gets_its_diagnosis_and_remedy() {
    use mailgrant::diagnose::oauth as ids;

    let cases: [(u32, &str, &str, &str); 21] = [
        (50011, "invalid_request", ids::REDIRECT_URI_MISMATCH, "Mobile and desktop applications"),
        (500113, "invalid_request", ids::REDIRECT_URI_MISMATCH, "http://localhost"),
        (900971, "invalid_request", ids::REDIRECT_URI_MISMATCH, "http://localhost"),
        (700016, "unauthorized_client", ids::APP_NOT_FOUND_IN_TENANT, "Overview page"),
        (90002, "invalid_request", ids::TENANT_NOT_FOUND, "Directory (tenant) ID"),
        (7000218, "invalid_client", ids::CLIENT_SECRET_REQUIRED, "Mobile and desktop"),
        (7000215, "invalid_client", ids::CLIENT_SECRET_INVALID, "not the Secret ID"),
        (7000222, "invalid_client", ids::CLIENT_SECRET_EXPIRED, "client secret"),
        (65001, "invalid_grant", ids::ADMIN_CONSENT_REQUIRED, "Grant admin consent"),
        (90094, "invalid_grant", ids::ADMIN_CONSENT_REQUIRED, "Grant admin consent"),
        (50076, "invalid_grant", ids::MFA_REQUIRED, "complete the check"),
        (53003, "invalid_grant", ids::CONDITIONAL_ACCESS_BLOCKED, "Sign-in logs"),
        (50158, "invalid_grant", ids::MFA_REQUIRED, "complete the check"),
        (70043, "invalid_grant", ids::REFRESH_TOKEN_EXPIRED, "Sign in again"),
        (50173, "invalid_grant", ids::REFRESH_TOKEN_EXPIRED, "Sign in again"),
        (700082, "invalid_grant", ids::REFRESH_TOKEN_EXPIRED, "Sign in again"),
        (70008, "invalid_grant", ids::REFRESH_TOKEN_EXPIRED, "Sign in again"),
        (70011, "invalid_scope", ids::INVALID_SCOPE, "offline_access"),
        (50020, "invalid_grant", ids::ACCOUNT_FROM_OTHER_TENANT, "account picker"),
        (501481, "invalid_grant", ids::CODE_VERIFIER_MISMATCH, "start the sign-in again"),
        (54005, "invalid_grant", ids::CODE_ALREADY_REDEEMED, "Start the sign-in again"),
    ];
    let trust = system_trust();
    for (code, error, id, remedy) in cases {
        let body = serde_json::json!({
            "error": error,
            "error_description": format!(
                "AADSTS{code}: the words Entra uses here. Trace ID: \
                 00000000-0000-0000-0000-000000000000 Correlation ID: \
                 00000000-0000-0000-0000-000000000000 Timestamp: 2026-12-04 10:00:00Z"
            ),
            "error_codes": [code],
            "timestamp": "2026-12-04 10:00:00Z",
            "trace_id": "00000000-0000-0000-0000-000000000000",
            "correlation_id": "00000000-0000-0000-0000-000000000000",
        })
        .to_string();
        let server = Scripted::start(vec![json("400 Bad Request", &body)]);
        let profile = outlook(&format!("{}/token", server.base));
        let failure = refresh(&profile, &trust);
        let d = diagnose::oauth::token(&failure, &profile);
        assert_eq!(d.id, id, "AADSTS{code}: {d:?}");
        assert!(
            d.fix.to_lowercase().contains(&remedy.to_lowercase()),
            "AADSTS{code}: the fix does not name {remedy:?}: {}",
            d.fix
        );
        assert_eq!(server.requests().len(), 1, "AADSTS{code}: asked once");
        assert_no_secret(&visible_token(&failure, &d), &[REFRESH_TOKEN, CLIENT_SECRET]);
    }
}

//! The browser sign-in and the token client against real local servers: the loopback listener
//! is reached over real TCP (as the browser would), and the token endpoint is a tiny_http server
//! on 127.0.0.1 answering with the field cases' bodies (BR-03, BR-09, BR-11, BR-13, BR-17).
//! Nothing here leaves this machine.

mod support;

use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use mailgrant::diagnose::{self, Retry};
use mailgrant::oauth::{
    CertificateProblem, PendingSignIn, SignInError, TokenClient, TokenError, TokenSet,
    TransportKind,
};
use mailgrant::profile::{Profile, ProfileForm};
use mailgrant::provider::ProviderKind;
use mailgrant::trust::Trust;
use oauth2::RefreshToken;
use support::loopback::{get, port_released};

const CLIENT_SECRET: &str = "cs~Secret.Value_0123456789";
const CODE: &str = "M.C509_code-value.0.U.-abcdefghijklmnop";
const ACCESS_TOKEN: &str = "eyJ0eXAiOiJKV1QifQ.eyJ1cG4iOiJhbGFybXNAZXhhbXBsZS5jb20ifQ.sig-AT1";
const REFRESH_TOKEN: &str = "0.AAAA-refresh-token-RT1";

/// One canned answer of the fake token endpoint.
#[derive(Clone)]
struct Canned {
    status: u16,
    body: String,
}

impl Canned {
    fn json(status: u16, body: &str) -> Canned {
        Canned { status, body: body.to_owned() }
    }
}

/// A token endpoint on 127.0.0.1 that answers each request with the next canned answer and
/// records the request bodies (form-encoded) it received.
struct TokenServer {
    url: String,
    received: Arc<Mutex<Vec<String>>>,
    _server: Arc<tiny_http::Server>,
}

impl TokenServer {
    fn start(answers: Vec<Canned>) -> TokenServer {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind token server"));
        let port = server.server_addr().to_ip().expect("ip").port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let (srv, log) = (Arc::clone(&server), Arc::clone(&received));
        thread::spawn(move || {
            for answer in answers {
                let Ok(mut request) = srv.recv() else { return };
                let mut body = String::new();
                request.as_reader().read_to_string(&mut body).expect("read body");
                log.lock().expect("lock").push(body);
                let header: tiny_http::Header =
                    "Content-Type: application/json; charset=utf-8".parse().expect("header");
                let response = tiny_http::Response::from_string(answer.body)
                    .with_status_code(answer.status)
                    .with_header(header);
                request.respond(response).expect("respond");
            }
        });
        TokenServer {
            url: format!("http://127.0.0.1:{port}/tenant/oauth2/v2.0/token"),
            received,
            _server: server,
        }
    }

    fn received(&self) -> Vec<String> {
        self.received.lock().expect("lock").clone()
    }
}

fn profile(token_url: &str, secret: Option<&str>) -> Profile {
    let form = ProfileForm {
        provider: ProviderKind::Custom,
        client_id: "00000000-0000-0000-0000-000000000001".into(),
        client_secret: secret.unwrap_or_default().into(),
        authorize_url: "http://127.0.0.1:9/authorize".into(),
        token_url: token_url.into(),
        scopes: "https://outlook.office.com/IMAP.AccessAsUser.All \
                 https://outlook.office.com/SMTP.Send offline_access openid"
            .into(),
        mailbox: "alarms@example.com".into(),
        smtp_host: "127.0.0.1".into(),
        imap_host: "127.0.0.1".into(),
        timeout_secs: "2".into(),
        ..ProfileForm::for_provider(ProviderKind::Custom)
    };
    form.validate().expect("valid test profile").0
}

fn trust() -> Trust {
    Trust::load(None).expect("system trust store")
}

fn success_body(refresh: &str) -> String {
    let id_token = unsigned_jwt(r#"{"preferred_username":"alarms@example.com","tid":"t-1"}"#);
    format!(
        concat!(
            r#"{{"token_type":"Bearer","scope":"https://outlook.office.com/IMAP.AccessAsUser.All "#,
            r#"https://outlook.office.com/SMTP.Send","expires_in":3599,"ext_expires_in":3599,"#,
            r#""access_token":"{ACCESS_TOKEN}","id_token":"{id_token}"{refresh}}}"#
        ),
        ACCESS_TOKEN = ACCESS_TOKEN,
        id_token = id_token,
        refresh = refresh,
    )
}

fn unsigned_jwt(payload: &str) -> String {
    use base64::Engine;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!("{}.{}.c2ln", engine.encode(r#"{"alg":"none"}"#), engine.encode(payload))
}

fn v4(pending: &PendingSignIn) -> SocketAddr {
    pending.listening_on().into_iter().find(SocketAddr::is_ipv4).expect("127.0.0.1 listener")
}

fn state_of(pending: &PendingSignIn) -> String {
    let url = url::Url::parse(pending.authorize_url()).expect("authorize url");
    url.query_pairs().find(|(k, _)| k == "state").map(|(_, v)| v.into_owned()).expect("state")
}

/// Everything an operator or a log could see of an outcome.
fn visible_text(outcome: &Result<TokenSet, SignInError>, profile: &Profile) -> String {
    match outcome {
        Ok(tokens) => format!("{tokens:?}"),
        Err(e) => {
            let d = diagnose::oauth::sign_in(e, profile);
            format!("{e}\n{e:?}\n{}\n{d:?}", d.to_text())
        }
    }
}

fn assert_no_secret(text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!text.contains(secret), "secret value leaked into: {text}");
    }
}

#[test]
fn stray_and_foreign_requests_are_refused_then_the_code_is_redeemed_once() {
    let server = TokenServer::start(vec![Canned::json(
        200,
        &success_body(&format!(r#","refresh_token":"{REFRESH_TOKEN}""#)),
    )]);
    let profile = profile(&server.url, Some(CLIENT_SECRET));
    let client = TokenClient::new(&profile, &trust());
    let pending = PendingSignIn::start(&profile).expect("listener");
    assert!(pending.redirect_uri().starts_with("http://localhost:"));
    let address = v4(&pending);
    let state = state_of(&pending);
    let verifier_hint = pending.authorize_url().to_owned();
    let waiter = thread::spawn(move || pending.wait(&client, Duration::from_secs(30)));

    let (status, _) = get(address, "/favicon.ico");
    assert_eq!(status, 404);
    let (status, _) = get(address, "/");
    assert_eq!(status, 400);
    let (status, page) = get(address, &format!("/?code=stolen-code&state=not-{state}"));
    assert_eq!(status, 400);
    assert!(page.contains("This sign-in link is from another attempt"), "{page}");
    assert!(!waiter.is_finished(), "a foreign state must not end the wait");

    let (status, page) = get(address, &format!("/?code={CODE}&state={state}&session_state=x"));
    assert_eq!(status, 200);
    assert!(page.contains("Signed in as <strong>alarms@example.com</strong>"), "{page}");

    let tokens = waiter.join().expect("thread").expect("signed in");
    assert_eq!(tokens.access_token.secret(), ACCESS_TOKEN);
    assert_eq!(tokens.refresh_token.as_ref().map(|t| t.secret().as_str()), Some(REFRESH_TOKEN));
    assert_eq!(tokens.identity.as_ref().and_then(|i| i.account()), Some("alarms@example.com"));
    assert_eq!(tokens.granted_scopes.as_ref().map(Vec::len), Some(2));
    let expires = tokens.access_expires_at.expect("expiry") - tokens.obtained_at;
    assert_eq!(expires, time::Duration::seconds(3599));

    let received = server.received();
    assert_eq!(received.len(), 1, "the code is redeemed exactly once");
    let form: Vec<(String, String)> = url::form_urlencoded::parse(received[0].as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    assert_eq!(field("grant_type"), Some("authorization_code"));
    assert_eq!(field("code"), Some(CODE));
    assert_eq!(field("client_secret"), Some(CLIENT_SECRET), "client_secret_post");
    assert_eq!(
        field("redirect_uri"),
        Some(format!("http://localhost:{}/", address.port()).as_str())
    );
    let verifier = field("code_verifier").expect("PKCE verifier sent");
    assert!(verifier.len() >= 43);
    assert!(!verifier_hint.contains(verifier), "the verifier never appears in the URL");

    let outcome = Ok(tokens);
    assert_no_secret(
        &visible_text(&outcome, &profile),
        &[ACCESS_TOKEN, REFRESH_TOKEN, CLIENT_SECRET, CODE, verifier],
    );
}

#[test]
fn br11_a_failed_redemption_is_shown_in_the_browser_and_the_code_is_not_posted_again() {
    let body = include_str!("fixtures/replies/aadsts7000218-secret-required.json");
    let server = TokenServer::start(vec![Canned::json(401, body), Canned::json(401, body)]);
    let profile = profile(&server.url, None);
    let client = TokenClient::new(&profile, &trust());
    let pending = PendingSignIn::start(&profile).expect("listener");
    let address = v4(&pending);
    let state = state_of(&pending);
    let waiter = thread::spawn(move || pending.wait(&client, Duration::from_secs(30)));

    let (status, page) = get(address, &format!("/?code={CODE}&state={state}"));
    assert_eq!(status, 200);
    assert!(page.contains("Sign-in did not work"), "{page}");
    assert!(page.contains("Web (confidential) app"), "{page}");
    assert!(page.contains("Mobile and desktop applications"), "{page}");

    let outcome = waiter.join().expect("thread");
    let error = outcome.as_ref().expect_err("refused");
    assert!(matches!(error, SignInError::Token(_)), "{error:?}");
    assert_eq!(diagnose::oauth::sign_in(error, &profile).id, "client-secret-required");
    assert_eq!(server.received().len(), 1, "the code is never posted twice");
    assert!(!server.received()[0].contains("client_secret"), "no secret configured, none sent");
    assert_no_secret(&visible_text(&outcome, &profile), &[CODE]);
}

#[test]
fn br03_error_callback_ends_the_wait_with_the_decoded_error_and_a_page_that_explains_it() {
    let profile = profile("http://127.0.0.1:9/token", None);
    let client = TokenClient::new(&profile, &trust());
    let pending = PendingSignIn::start(&profile).expect("listener");
    let address = v4(&pending);
    let state = state_of(&pending);
    let waiter = thread::spawn(move || pending.wait(&client, Duration::from_secs(30)));

    let query = include_str!("fixtures/replies/aadsts50194-callback-query.txt");
    // The same error with a foreign state is refused first, and waiting goes on.
    let (status, _) = get(address, &format!("/?{query}&state=other"));
    assert_eq!(status, 400);
    let (status, page) = get(address, &format!("/?{query}&state={state}"));
    assert_eq!(status, 200);
    assert!(page.contains("only accepts accounts from one organization"), "{page}");
    assert!(page.contains("Directory (tenant) ID"), "{page}");

    let error = waiter.join().expect("thread").expect_err("error callback");
    let SignInError::Callback(callback) = &error else { panic!("{error:?}") };
    assert_eq!(callback.0.error, "invalid_request");
    assert_eq!(callback.0.aadsts, [50194]);
    assert_eq!(callback.0.trace_id.as_deref(), Some("00000000-0000-0000-0000-000000000000"));
    let d = diagnose::oauth::sign_in(&error, &profile);
    assert_eq!(d.id, "single-tenant-app-on-common");
    assert!(d.details.iter().any(|l| l == "trace id: 00000000-0000-0000-0000-000000000000"));
}

#[test]
fn cancel_wakes_the_wait_and_releases_the_port() {
    let profile = profile("http://127.0.0.1:9/token", None);
    let client = TokenClient::new(&profile, &trust());
    let pending = PendingSignIn::start(&profile).expect("listener");
    let addresses = pending.listening_on();
    let canceller = pending.canceller();
    let started = Instant::now();
    let waiter = thread::spawn(move || pending.wait(&client, Duration::from_secs(300)));

    thread::sleep(Duration::from_millis(100));
    canceller.cancel();
    let error = waiter.join().expect("thread").expect_err("cancelled");
    assert!(matches!(error, SignInError::Cancelled), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(diagnose::oauth::sign_in(&error, &profile).id, "sign-in-cancelled");

    for address in addresses {
        assert!(port_released(address), "{address} still bound after cancel");
    }
    canceller.cancel(); // after the end: harmless
}

#[test]
fn br02_timeout_returns_the_redirect_uri_sent_and_closes_the_listener() {
    let profile = profile("http://127.0.0.1:9/token", None);
    let client = TokenClient::new(&profile, &trust());
    let pending = PendingSignIn::start(&profile).expect("listener");
    let redirect_uri = pending.redirect_uri().to_owned();
    let addresses = pending.listening_on();

    let started = Instant::now();
    let error = pending.wait(&client, Duration::from_millis(300)).expect_err("times out");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(started.elapsed() < Duration::from_secs(5));
    let SignInError::TimedOut { redirect_uri: sent, .. } = &error else { panic!("{error:?}") };
    assert_eq!(sent, &redirect_uri);
    let d = diagnose::oauth::sign_in(&error, &profile);
    assert_eq!(d.id, "sign-in-timeout");
    assert!(d.fix.contains(&redirect_uri));
    for address in addresses {
        assert!(port_released(address));
    }
}

#[test]
fn only_foreign_callbacks_before_the_timeout_are_reported_as_a_state_mismatch() {
    let profile = profile("http://127.0.0.1:9/token", None);
    let client = TokenClient::new(&profile, &trust());
    let pending = PendingSignIn::start(&profile).expect("listener");
    let address = v4(&pending);
    let state = state_of(&pending);
    let waiter = thread::spawn(move || pending.wait(&client, Duration::from_secs(2)));
    let (status, page) = get(address, &format!("/?code={CODE}&state=from-another-attempt"));
    assert_eq!(status, 400);
    assert!(page.contains("This sign-in link is from another attempt"), "{page}");
    let outcome = waiter.join().expect("thread");
    let error = outcome.as_ref().expect_err("no valid callback");
    assert!(matches!(error, SignInError::StateMismatch { rejected: 1, .. }), "{error:?}");

    let d = diagnose::oauth::sign_in(error, &profile);
    assert_eq!(d.id, "sign-in-state-mismatch");
    assert_eq!(d.retry, Retry::Transient);
    assert!(d.fix.contains("Close the old sign-in tabs"), "{}", d.fix);
    assert!(d.fix.contains("\"Sign in with the browser…\" again"), "{}", d.fix);
    assert!(d.details.iter().any(|l| l.ends_with("refused 1 answer(s)")), "{:?}", d.details);
    assert_no_secret(&visible_text(&outcome, &profile), &[CODE, &state]);
}

#[test]
fn the_callback_is_reachable_on_ipv6_loopback_when_the_machine_has_it() {
    let machine_has_ipv6 = TcpListener::bind("[::1]:0").is_ok();
    let server = TokenServer::start(vec![Canned::json(200, &success_body(""))]);
    let profile = profile(&server.url, None);
    let client = TokenClient::new(&profile, &trust());
    let pending = PendingSignIn::start(&profile).expect("listener");
    let addresses = pending.listening_on();
    assert!(addresses.iter().all(|a| a.ip().is_loopback()), "{addresses:?}");
    let port = v4(&pending).port();
    assert!(addresses.iter().all(|a| a.port() == port), "{addresses:?}");

    let v6 = addresses.iter().find(|a| a.is_ipv6()).copied();
    assert_eq!(v6.is_some(), machine_has_ipv6, "{addresses:?}");
    let target = v6.unwrap_or(addresses[0]);
    let state = state_of(&pending);
    let waiter = thread::spawn(move || pending.wait(&client, Duration::from_secs(30)));
    let (status, _) = get(target, &format!("/?code={CODE}&state={state}"));
    assert_eq!(status, 200);
    let tokens = waiter.join().expect("thread").expect("signed in");
    assert!(tokens.refresh_token.is_none());
}

fn refresh_with(answer: Canned) -> (Result<TokenSet, TokenError>, Profile, Vec<String>) {
    let server = TokenServer::start(vec![answer]);
    let profile = profile(&server.url, Some(CLIENT_SECRET));
    let client = TokenClient::new(&profile, &trust());
    let result = client.refresh(&RefreshToken::new(REFRESH_TOKEN.to_owned()));
    (result, profile, server.received())
}

#[test]
fn br17_refresh_keeps_the_old_token_when_none_or_empty_or_null_comes_back() {
    for tail in ["", r#","refresh_token":"""#, r#","refresh_token":null"#] {
        let (result, _, received) = refresh_with(Canned::json(200, &success_body(tail)));
        let tokens = result.expect("refreshed");
        assert_eq!(
            tokens.refresh_token.as_ref().map(|t| t.secret().as_str()),
            Some(REFRESH_TOKEN),
            "answer tail {tail:?}"
        );
        assert!(received[0].contains("grant_type=refresh_token"));
        assert!(received[0].contains("scope=https"), "scopes are sent on refresh");
    }
    let (result, _, _) =
        refresh_with(Canned::json(200, &success_body(r#","refresh_token":"RT2-rotated""#)));
    let tokens = result.expect("refreshed");
    assert_eq!(tokens.refresh_token.as_ref().map(|t| t.secret().as_str()), Some("RT2-rotated"));
}

#[test]
fn br11_secret_required_and_public_client_are_told_apart() {
    let body_a = include_str!("fixtures/replies/aadsts7000218-secret-required-trace.json");
    let (result, profile, _) = refresh_with(Canned::json(401, body_a));
    let error = result.expect_err("refused");
    assert_eq!(error.status(), Some(401));
    assert_eq!(error.aadsts(), [7000218]);
    let provider = error.provider_error().expect("provider error");
    assert_eq!(provider.trace_id.as_deref(), Some("00000000-0000-0000-0000-000000000000"));
    assert_eq!(provider.timestamp.as_deref(), Some("2024-02-14 02:40:29Z"));
    assert!(!error.is_transient());
    let d = diagnose::oauth::token(&error, &profile);
    assert_eq!(d.id, "client-secret-required");
    assert!(d.summary.contains("Web (confidential)"));
    assert!(d.fix.contains("http://localhost under Mobile and desktop applications"));

    let body_b = include_str!("fixtures/replies/aadsts700025-public-client-secret.json");
    let (result, profile, _) = refresh_with(Canned::json(401, body_b));
    let error = result.expect_err("refused");
    let d = diagnose::oauth::token(&error, &profile);
    assert_eq!(d.id, "client-is-public");
    assert!(d.fix.contains("Clear the Client secret field"));
}

#[test]
fn br13_expired_client_secret_is_permanent_and_says_replace_the_secret() {
    let body = include_str!("fixtures/replies/aadsts7000222-secret-expired.json");
    let (result, profile, _) = refresh_with(Canned::json(401, body));
    let error = result.expect_err("refused");
    assert!(!error.is_transient());
    let d = diagnose::oauth::token(&error, &profile);
    assert_eq!(d.id, "client-secret-expired");
    assert_eq!(d.retry, Retry::Permanent);
    assert!(d.fix.contains("Replace client secret"));
    assert!(d.fix.contains("no new browser sign-in"));
    assert_no_secret(
        &format!("{error}\n{error:?}\n{}", d.to_text()),
        &[CLIENT_SECRET, REFRESH_TOKEN],
    );
}

#[test]
fn br09_mixed_resource_scopes_are_diagnosed_from_the_aadsts_number() {
    let body = include_str!("fixtures/replies/aadsts28000-scope-two-resources.json");
    let (result, profile, _) = refresh_with(Canned::json(400, body));
    let error = result.expect_err("refused");
    assert_eq!(error.aadsts(), [28000]);
    let d = diagnose::oauth::token(&error, &profile);
    assert_eq!(d.id, "invalid-scope");
    assert!(d.cause.contains("AADSTS28000"));
}

#[test]
fn a_server_echoing_our_secrets_does_not_put_them_in_errors() {
    let body = format!(
        concat!(
            r#"{{"error":"invalid_grant","error_description":"AADSTS70008: refresh token "#,
            r#"{REFRESH_TOKEN} for secret {CLIENT_SECRET} expired."}}"#
        ),
        REFRESH_TOKEN = REFRESH_TOKEN,
        CLIENT_SECRET = CLIENT_SECRET,
    );
    let (result, profile, _) = refresh_with(Canned::json(400, &body));
    let error = result.expect_err("refused");
    let d = diagnose::oauth::token(&error, &profile);
    assert_eq!(d.id, "refresh-token-expired");
    let text = format!("{error}\n{error:?}\n{}\n{d:?}", d.to_text());
    assert!(text.contains("[redacted]"), "{text}");
    assert_no_secret(&text, &[REFRESH_TOKEN, CLIENT_SECRET]);
}

#[test]
fn an_html_error_page_and_a_5xx_keep_their_status_and_are_transient() {
    let (result, profile, _) = refresh_with(Canned {
        status: 503,
        body: "<html><head><title>Service Unavailable</title></head></html>".into(),
    });
    let error = result.expect_err("5xx");
    assert_eq!(error.status(), Some(503));
    assert!(error.is_transient());
    assert!(error.to_string().contains("Service Unavailable"), "{error}");
    let d = diagnose::oauth::token(&error, &profile);
    assert_eq!(d.retry, Retry::Transient);
    // An error page from an overloaded front end is the same passing outage as a JSON 5xx.
    assert_eq!(d.id, "provider-unavailable");
    assert!(d.summary.ends_with("(HTTP 503)"), "{}", d.summary);
    assert!(d.fix.contains("Wait a few minutes and try again"), "{}", d.fix);

    let (result, _, _) = refresh_with(Canned::json(
        429,
        r#"{"error":"temporarily_unavailable","error_description":"slow down"}"#,
    ));
    let error = result.expect_err("429");
    assert!(error.is_transient());
}

#[test]
fn connection_refused_and_a_silent_server_are_transport_errors() {
    let unused = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = unused.local_addr().expect("addr").port();
    drop(unused);
    let profile_refused = profile(&format!("http://127.0.0.1:{port}/token"), None);
    let client = TokenClient::new(&profile_refused, &trust());
    let error = client.refresh(&RefreshToken::new(REFRESH_TOKEN.into())).expect_err("refused");
    let TokenError::Transport { kind, .. } = &error else { panic!("{error:?}") };
    assert_eq!(kind, &TransportKind::ConnectionRefused);
    assert!(error.is_transient());
    assert_eq!(diagnose::oauth::token(&error, &profile_refused).id, "token-endpoint-refused");

    // Accepts TCP, never answers: bounded by the profile's 2 s timeout.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let holder = thread::spawn(move || {
        let (stream, _) = silent.accept().expect("accept");
        thread::sleep(Duration::from_secs(4));
        drop(stream);
    });
    let profile_silent = profile(&format!("http://127.0.0.1:{port}/token"), None);
    let client = TokenClient::new(&profile_silent, &trust());
    let started = Instant::now();
    let error = client.refresh(&RefreshToken::new(REFRESH_TOKEN.into())).expect_err("timeout");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(2) && waited < Duration::from_secs(4), "{waited:?}");
    let TokenError::Transport { kind, .. } = &error else { panic!("{error:?}") };
    assert_eq!(kind, &TransportKind::Timeout);
    assert_eq!(diagnose::oauth::token(&error, &profile_silent).id, "token-endpoint-timeout");
    holder.join().expect("holder");
}

#[test]
fn a_certificate_from_an_unknown_ca_is_reported_as_such_and_the_extra_ca_fixes_it() {
    let ca = tls::TestCa::new();
    let server = tls::serve_once_twice(&ca, &success_body(""));
    let url = format!("https://127.0.0.1:{}/token", server.port);

    let without = profile(&url, None);
    let error = TokenClient::new(&without, &trust())
        .refresh(&RefreshToken::new(REFRESH_TOKEN.into()))
        .expect_err("untrusted");
    let TokenError::Transport { kind, .. } = &error else { panic!("{error:?}") };
    assert_eq!(kind, &TransportKind::Certificate(CertificateProblem::UnknownIssuer));
    let d = diagnose::oauth::token(&error, &without);
    assert_eq!(d.id, "token-endpoint-tls-untrusted");
    assert!(d.fix.contains("Extra CA certificate file"));

    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = dir.path().join("proxy-ca.pem");
    std::fs::write(&ca_file, ca.pem()).expect("write CA");
    let trusted = Trust::load(Some(&ca_file)).expect("trust with extra CA");
    let tokens = TokenClient::new(&without, &trusted)
        .refresh(&RefreshToken::new(REFRESH_TOKEN.into()))
        .expect("trusted through the extra CA file");
    assert_eq!(tokens.access_token.secret(), ACCESS_TOKEN);
    server.thread.join().expect("tls server");
}

/// A TLS token endpoint on 127.0.0.1 with a certificate from a throw-away CA.
mod tls {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::Arc;
    use std::thread::{self, JoinHandle};

    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

    pub struct TestCa {
        issuer: Issuer<'static, KeyPair>,
        pem: String,
    }

    impl TestCa {
        pub fn new() -> TestCa {
            let mut params = CertificateParams::new(Vec::new()).expect("params");
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.distinguished_name.push(rcgen::DnType::CommonName, "mailgrant test proxy CA");
            let key = KeyPair::generate().expect("key");
            let cert = params.self_signed(&key).expect("CA");
            TestCa { pem: cert.pem(), issuer: Issuer::new(params, key) }
        }

        pub fn pem(&self) -> &str {
            &self.pem
        }
    }

    pub struct Served {
        pub port: u16,
        pub thread: JoinHandle<()>,
    }

    /// Serves two connections: the first is expected to fail the handshake (untrusted), the
    /// second gets `body` as a 200 JSON answer.
    pub fn serve_once_twice(ca: &TestCa, body: &str) -> Served {
        let key = KeyPair::generate().expect("key");
        let params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("params");
        let cert = params.signed_by(&key, &ca.issuer).expect("leaf");
        let der_key =
            rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key der");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], der_key)
            .expect("server config");
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let body = body.to_owned();
        let thread = thread::spawn(move || {
            for _ in 0..2 {
                let (tcp, _) = listener.accept().expect("accept");
                let conn = rustls::ServerConnection::new(Arc::clone(&config)).expect("conn");
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                let mut buffer = [0u8; 8192];
                let mut request = Vec::new();
                // Read until the end of the form body (headers + short body).
                loop {
                    match tls.read(&mut buffer) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                    let text = String::from_utf8_lossy(&request);
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .and_then(|v| v.trim().parse::<usize>().ok())
                            })
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                if request.is_empty() {
                    continue; // the untrusted attempt: handshake refused by the client
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: \
                     {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(response.as_bytes());
                let _ = tls.flush();
                tls.conn.send_close_notify();
                let _ = tls.flush();
            }
        });
        Served { port, thread }
    }
}

//! Pre-flight checks on real parts and scripted TLS servers.
//!
//! The fixture (local identity provider over plain http, Dovecot, Postfix) must pass every
//! step, through the library and through `mailgrant check --preflight`. Scripted servers on
//! 127.0.0.1 with certificates made by rcgen provoke each certificate story of BR-22 (expired
//! certificate, unknown issuer, wrong clock in both directions) and the network failures
//! (hostname mismatch, refused, a `.invalid` name that can never resolve, a server that
//! accepts and never answers, a mail server without STARTTLS).

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use mailgrant::diagnose::Diagnosis;
use mailgrant::diagnose::preflight as ids;
use mailgrant::preflight::{
    self, PreflightReport, Status, Step, Target, TargetResult, TargetSpec, Transport,
};
use mailgrant::store::{self, ConfigPaths, Secrets};
use mailgrant::trust::Trust;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use support::MailFixture;
use support::site::{SiteConfig, mailgrant};
use time::{Duration as Days, OffsetDateTime};

const TIMEOUT: Duration = Duration::from_secs(5);

// --- TLS material ------------------------------------------------------------------------------

/// Validity of one certificate, relative to now, in days.
#[derive(Clone, Copy)]
struct Validity {
    from_days: i64,
    until_days: i64,
}

const CURRENT: Validity = Validity { from_days: -30, until_days: 300 };
const LONG_CURRENT: Validity = Validity { from_days: -1000, until_days: 2000 };
const EXPIRED: Validity = Validity { from_days: -400, until_days: -30 };

fn validity(params: &mut CertificateParams, v: Validity) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now + Days::days(v.from_days);
    params.not_after = now + Days::days(v.until_days);
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    validity(&mut params, Validity { from_days: -3000, until_days: 3000 });
    params
}

/// A root CA (its PEM file is what a test trusts), optionally an intermediate, and a leaf.
struct Pki {
    ca_file: PathBuf,
    server: Arc<ServerConfig>,
    _dir: tempfile::TempDir,
}

impl Pki {
    /// `intermediate`: the intermediate's validity, or `None` for a leaf signed by the root.
    fn new(root: &str, intermediate: Option<Validity>, leaf: Validity, names: &[&str]) -> Pki {
        let root_key = KeyPair::generate().expect("root key");
        let root_params = ca_params(root);
        let root_cert = root_params.self_signed(&root_key).expect("root cert");
        let root_issuer = Issuer::new(root_params, root_key);

        let mut chain: Vec<CertificateDer<'static>> = Vec::new();
        let leaf_key = KeyPair::generate().expect("leaf key");
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut leaf_params = CertificateParams::new(names.clone()).expect("leaf params");
        leaf_params.distinguished_name.push(DnType::CommonName, names[0].clone());
        validity(&mut leaf_params, leaf);
        match intermediate {
            Some(v) => {
                let key = KeyPair::generate().expect("intermediate key");
                let mut params = ca_params(&format!("{root} Intermediate"));
                validity(&mut params, v);
                let cert = params.signed_by(&key, &root_issuer).expect("intermediate");
                let issuer = Issuer::new(params, key);
                let leaf_cert = leaf_params.signed_by(&leaf_key, &issuer).expect("leaf");
                chain.push(leaf_cert.der().clone());
                chain.push(cert.der().clone());
            }
            None => {
                let leaf_cert = leaf_params.signed_by(&leaf_key, &root_issuer).expect("leaf");
                chain.push(leaf_cert.der().clone());
            }
        }

        let dir = tempfile::tempdir().expect("tempdir");
        let ca_file = dir.path().join("root.pem");
        std::fs::write(&ca_file, root_cert.pem()).expect("write root");
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server config");
        Pki { ca_file, server: Arc::new(server), _dir: dir }
    }

    fn trust(&self) -> Trust {
        Trust::load(Some(&self.ca_file)).expect("trust")
    }
}

/// A TLS server on 127.0.0.1 that completes (or fails) handshakes until the test ends.
fn tls_server(pki: &Pki) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let config = Arc::clone(&pki.server);
    thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let config = Arc::clone(&config);
            thread::spawn(move || {
                let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
                let Ok(conn) = ServerConnection::new(config) else { return };
                let mut tls = StreamOwned::new(conn, tcp);
                while tls.conn.is_handshaking() {
                    if tls.conn.complete_io(&mut tls.sock).is_err() {
                        return;
                    }
                }
                let mut rest = Vec::new();
                let _ = tls.read_to_end(&mut rest);
            });
        }
    });
    port
}

/// Accepts connections and never sends a byte.
fn silent_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    port
}

/// Plain-text SMTP that answers the greeting and EHLO with `ehlo`, and nothing else.
fn smtp_without_starttls(greeting: &'static str, ehlo: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    thread::spawn(move || {
        for mut tcp in listener.incoming().flatten() {
            let _ = tcp.write_all(greeting.as_bytes());
            let mut buf = [0u8; 512];
            if matches!(tcp.read(&mut buf), Ok(n) if n > 0) {
                let _ = tcp.write_all(ehlo.as_bytes());
            }
            let _ = tcp.read(&mut buf);
        }
    });
    port
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

fn spec(target: Target, host: &str, port: u16, transport: Transport) -> TargetSpec {
    TargetSpec { target, host: host.to_owned(), port, transport }
}

fn run_one(spec: TargetSpec, trust: &Trust, timeout: Duration) -> TargetResult {
    let report = preflight::run_targets(&[spec], trust, timeout);
    report.targets.into_iter().next().expect("one target")
}

/// The one failed step's diagnosis; panics when none or several failed.
fn failure(target: &TargetResult) -> (Step, Diagnosis) {
    let failed: Vec<_> = target.steps.iter().filter(|s| s.status == Status::Failed).collect();
    assert_eq!(failed.len(), 1, "exactly one failed step: {target:#?}");
    let step = failed[0];
    let d = step.diagnosis.clone().expect("a failed step has a diagnosis");
    let later = target.steps.iter().skip_while(|s| s.step != step.step).skip(1);
    assert!(later.clone().all(|s| s.status == Status::Skipped), "later steps skipped");
    (step.step, d)
}

fn assert_never_offers_to_ignore(d: &Diagnosis) {
    let text = d.to_text().to_lowercase();
    for word in ["ignore", "skip verification", "disable", "insecure", "accept the risk"] {
        assert!(!text.contains(word), "offers to {word}: {text}");
    }
}

fn today() -> String {
    let now = OffsetDateTime::now_utc();
    format!("{:04}-{:02}-{:02}", now.year(), u8::from(now.month()), now.day())
}

// --- BR-22: the three certificate stories ------------------------------------------------------

#[test]
fn br_22_expired_intermediate_is_an_expired_certificate() {
    let pki = Pki::new("Contoso Test Root", Some(EXPIRED), CURRENT, &["localhost"]);
    let port = tls_server(&pki);
    let target =
        run_one(spec(Target::Token, "localhost", port, Transport::Https), &pki.trust(), TIMEOUT);
    let (step, d) = failure(&target);
    assert_eq!(step, Step::Tls);
    assert_eq!(d.id, ids::PREFLIGHT_TLS_EXPIRED, "{d:#?}");
    assert!(
        d.summary.contains("CN=Contoso Test Root Intermediate"),
        "failing subject: {}",
        d.summary
    );
    assert!(d.summary.contains("localhost:"), "names the host: {}", d.summary);
    assert!(d.summary.contains("intermediate"), "{}", d.summary);
    let details = d.details.join("\n");
    assert!(details.contains("issuer CN=Contoso Test Root"), "{details}");
    assert!(d.fix.contains("certlm.msc"), "names the store to clean: {}", d.fix);
    assert_eq!(target.certificates.len(), 2, "the presented chain is kept");
    assert_never_offers_to_ignore(&d);
}

#[test]
fn br_22_expired_leaf_is_an_expired_certificate() {
    let pki = Pki::new("Contoso Test Root", Some(LONG_CURRENT), EXPIRED, &["localhost"]);
    let port = tls_server(&pki);
    let target =
        run_one(spec(Target::Token, "localhost", port, Transport::Https), &pki.trust(), TIMEOUT);
    let (_, d) = failure(&target);
    assert_eq!(d.id, ids::PREFLIGHT_TLS_EXPIRED, "{d:#?}");
    let expired_on = target.certificates[0].not_after;
    let date = format!(
        "{:04}-{:02}-{:02}",
        expired_on.year(),
        u8::from(expired_on.month()),
        expired_on.day()
    );
    assert!(d.summary.contains(&date), "names the expiry {date}: {}", d.summary);
    assert!(d.summary.contains("CN=localhost"), "{}", d.summary);
    assert!(d.cause.contains(&today()), "states this clock: {}", d.cause);
    assert_never_offers_to_ignore(&d);
}

#[test]
fn br_22_unknown_issuer_names_the_proxy_ca_and_the_setting() {
    let proxy = Pki::new("Contoso Inspection CA", None, CURRENT, &["localhost"]);
    let ours = Pki::new("Some Other Root", None, CURRENT, &["localhost"]);
    let port = tls_server(&proxy);
    let target =
        run_one(spec(Target::SignIn, "localhost", port, Transport::Https), &ours.trust(), TIMEOUT);
    let (_, d) = failure(&target);
    assert_eq!(d.id, ids::PREFLIGHT_TLS_UNTRUSTED, "{d:#?}");
    assert!(d.summary.contains("CN=Contoso Inspection CA"), "{}", d.summary);
    assert!(d.fix.contains("Extra CA certificate file"), "{}", d.fix);
    assert!(d.cause.contains("inspecting proxy"), "{}", d.cause);
    assert_never_offers_to_ignore(&d);

    // With the proxy's CA in the extra CA file the same server passes.
    let fixed =
        run_one(spec(Target::SignIn, "localhost", port, Transport::Https), &proxy.trust(), TIMEOUT);
    assert!(fixed.passed(), "{fixed:#?}");
}

#[test]
fn br_22_clock_behind_not_yet_valid_says_what_the_clock_says() {
    let future = Validity { from_days: 365, until_days: 700 };
    let pki = Pki::new("Contoso Test Root", None, future, &["localhost"]);
    let port = tls_server(&pki);
    let target =
        run_one(spec(Target::Token, "localhost", port, Transport::Https), &pki.trust(), TIMEOUT);
    let (_, d) = failure(&target);
    assert_eq!(d.id, ids::PREFLIGHT_CLOCK_WRONG, "{d:#?}");
    assert!(d.summary.starts_with(&format!("Your clock says {}", today())), "{}", d.summary);
    assert!(d.fix.contains("Set time automatically"), "{}", d.fix);
    assert_never_offers_to_ignore(&d);
}

/// A valid chain seen by a clock two years ahead looks like a chain whose every certificate
/// expired: leaf and intermediate both ended before "now".
#[test]
fn br_22_clock_ahead_every_certificate_expired() {
    let ended = Validity { from_days: -800, until_days: -400 };
    let leaf = Validity { from_days: -760, until_days: -670 };
    let pki = Pki::new("Contoso Test Root", Some(ended), leaf, &["localhost"]);
    let port = tls_server(&pki);
    let target =
        run_one(spec(Target::Token, "localhost", port, Transport::Https), &pki.trust(), TIMEOUT);
    let (_, d) = failure(&target);
    assert_eq!(d.id, ids::PREFLIGHT_CLOCK_WRONG, "{d:#?}");
    assert!(d.summary.contains(&today()), "{}", d.summary);
    assert!(d.cause.contains("ahead"), "{}", d.cause);
}

/// Two different servers whose leaf certificates both expired: the clock is the common factor.
#[test]
fn br_22_clock_ahead_seen_on_two_servers() {
    let a = Pki::new("Root A", None, EXPIRED, &["localhost"]);
    let b = Pki::new("Root B", None, Validity { from_days: -500, until_days: -90 }, &["127.0.0.1"]);
    let both = tempfile::tempdir().expect("tempdir");
    let ca_file = both.path().join("both.pem");
    let pem = format!(
        "{}{}",
        std::fs::read_to_string(&a.ca_file).expect("a"),
        std::fs::read_to_string(&b.ca_file).expect("b")
    );
    std::fs::write(&ca_file, pem).expect("write");
    let trust = Trust::load(Some(&ca_file)).expect("trust");
    let specs = [
        spec(Target::SignIn, "localhost", tls_server(&a), Transport::Https),
        spec(Target::Imap, "127.0.0.1", tls_server(&b), Transport::Tls),
    ];
    let report = preflight::run_targets(&specs, &trust, TIMEOUT);
    for target in &report.targets {
        let (_, d) = failure(target);
        assert_eq!(d.id, ids::PREFLIGHT_CLOCK_WRONG, "{d:#?}");
    }

    // Alone, the same single expired certificate is an expired certificate.
    let alone = preflight::run_targets(&specs[..1], &trust, TIMEOUT);
    assert_eq!(failure(&alone.targets[0]).1.id, ids::PREFLIGHT_TLS_EXPIRED);
}

// --- Other certificate and network failures ----------------------------------------------------

#[test]
fn hostname_mismatch_lists_the_names_the_certificate_holds() {
    let pki = Pki::new("Contoso Test Root", None, CURRENT, &["mail.example.net"]);
    let port = tls_server(&pki);
    let target =
        run_one(spec(Target::Imap, "localhost", port, Transport::Tls), &pki.trust(), TIMEOUT);
    let (_, d) = failure(&target);
    assert_eq!(d.id, ids::PREFLIGHT_TLS_HOSTNAME, "{d:#?}");
    assert!(d.summary.contains("mail.example.net"), "{}", d.summary);
    assert!(d.summary.contains("not localhost"), "{}", d.summary);
}

#[test]
fn connection_refused_is_diagnosed_at_the_connect_step() {
    let pki = Pki::new("Root", None, CURRENT, &["localhost"]);
    let port = free_port();
    let target = run_one(
        spec(Target::Smtp, "127.0.0.1", port, Transport::SmtpStartTls),
        &pki.trust(),
        TIMEOUT,
    );
    let (step, d) = failure(&target);
    assert_eq!((step, d.id), (Step::Connect, ids::PREFLIGHT_REFUSED));
    assert!(d.summary.contains(&format!("127.0.0.1:{port}")), "{}", d.summary);
    assert_eq!(target.steps[0].status, Status::Passed, "DNS passed first");
}

#[test]
fn an_invalid_name_fails_at_dns() {
    let pki = Pki::new("Root", None, CURRENT, &["localhost"]);
    let host = "mailgrant-preflight-test.invalid";
    let target = run_one(spec(Target::Token, host, 443, Transport::Https), &pki.trust(), TIMEOUT);
    let (step, d) = failure(&target);
    assert_eq!((step, d.id), (Step::Dns, ids::PREFLIGHT_DNS));
    assert!(d.summary.contains(host), "{}", d.summary);
}

#[test]
fn a_server_that_accepts_and_never_answers_times_out_within_the_timeout() {
    let pki = Pki::new("Root", None, CURRENT, &["localhost"]);
    let timeout = Duration::from_secs(2);
    let tls_port = silent_server();
    let smtp_port = silent_server();
    let ok_port = tls_server(&pki);
    let specs = [
        spec(Target::Imap, "127.0.0.1", tls_port, Transport::Tls),
        spec(Target::Smtp, "127.0.0.1", smtp_port, Transport::SmtpStartTls),
        spec(Target::Token, "localhost", ok_port, Transport::Https),
    ];
    let started = Instant::now();
    let report = preflight::run_targets(&specs, &pki.trust(), timeout);
    let took = started.elapsed();
    assert!(took < timeout + Duration::from_millis(900), "ran concurrently and bounded: {took:?}");
    assert!(took >= timeout - Duration::from_millis(200), "waited for the timeout: {took:?}");

    let imap = report.get(Target::Imap).expect("imap");
    let (step, d) = failure(imap);
    assert_eq!((step, d.id), (Step::Tls, ids::PREFLIGHT_TIMEOUT));
    let smtp = report.get(Target::Smtp).expect("smtp");
    let (step, d) = failure(smtp);
    assert_eq!((step, d.id), (Step::StartTls, ids::PREFLIGHT_TIMEOUT));
    assert!(d.summary.contains("within 2 s"), "{}", d.summary);
    assert!(report.get(Target::Token).expect("token").passed(), "one slow server hides no other");
    assert!(!report.all_passed());
}

#[test]
fn smtp_without_starttls_is_refused_before_tls() {
    let pki = Pki::new("Root", None, CURRENT, &["localhost"]);
    let port = smtp_without_starttls(
        "220 mail.example.net ESMTP\r\n",
        "250-mail.example.net\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n",
    );
    let target = run_one(
        spec(Target::Smtp, "127.0.0.1", port, Transport::SmtpStartTls),
        &pki.trust(),
        TIMEOUT,
    );
    let (step, d) = failure(&target);
    assert_eq!((step, d.id), (Step::StartTls, ids::PREFLIGHT_STARTTLS_UNAVAILABLE));
    assert!(d.details.join(" ").contains("250 8BITMIME"), "{:?}", d.details);
}

#[test]
fn a_port_that_is_not_a_mail_server_is_named_so() {
    let pki = Pki::new("Root", None, CURRENT, &["localhost"]);
    let port = smtp_without_starttls("554 5.7.1 No SMTP service here\r\n", "");
    let target = run_one(
        spec(Target::Smtp, "127.0.0.1", port, Transport::SmtpStartTls),
        &pki.trust(),
        TIMEOUT,
    );
    let (step, d) = failure(&target);
    assert_eq!((step, d.id), (Step::StartTls, ids::PREFLIGHT_NOT_MAIL_SERVER));
    assert!(d.details.join(" ").contains("554 5.7.1"), "{:?}", d.details);
}

// --- The real fixture ----------------------------------------------------------------------------

fn write_config(fx: &MailFixture, smtp_port: u16) -> PathBuf {
    SiteConfig { smtp_port, timeout_secs: 5, ..SiteConfig::on(fx) }.write(fx)
}

fn library_report(config: &Path) -> PreflightReport {
    let paths = ConfigPaths::for_config(config);
    let service = store::load_config(&paths).expect("config loads");
    let profile = service.to_profile(&Secrets::default()).expect("profile");
    let trust = Trust::load(profile.extra_ca_file.as_deref()).expect("trust");
    preflight::run(&profile, &trust)
}

#[test]
fn the_fixture_passes_every_preflight_step() {
    let fx = MailFixture::start();
    let config = write_config(&fx, fx.smtp_port);
    let report = library_report(&config);
    assert!(report.all_passed(), "{}", report.to_text());
    assert_eq!(report.targets.len(), 4);

    for target in [Target::SignIn, Target::Token] {
        let idp = report.get(target).expect("idp row");
        assert_eq!(idp.spec.transport, Transport::PlainHttp);
        let tls = idp.steps.iter().find(|s| s.step == Step::Tls).expect("tls row");
        assert_eq!(tls.status, Status::NotApplicable);
        assert_eq!(tls.summary, "plain http on this machine, no TLS");
    }

    let smtp = report.get(Target::Smtp).expect("smtp");
    let steps: Vec<Step> = smtp.steps.iter().map(|s| s.step).collect();
    assert_eq!(steps, [Step::Dns, Step::Connect, Step::StartTls, Step::Tls]);
    assert!(smtp.tls_version.as_deref().is_some_and(|v| v.starts_with("TLS 1.")), "{smtp:#?}");
    let leaf = smtp.certificates.first().expect("smtp chain");
    assert!(leaf.names.iter().any(|n| n == "127.0.0.1"), "{leaf:#?}");
    assert!(leaf.not_after > OffsetDateTime::now_utc());

    let imap = report.get(Target::Imap).expect("imap");
    assert_eq!(imap.spec.transport, Transport::Tls);
    let tls = imap.steps.iter().find(|s| s.step == Step::Tls).expect("tls");
    assert!(tls.summary.contains("subject") && tls.summary.contains("issuer"), "{}", tls.summary);
    assert!(imap.steps.iter().all(|s| s.status == Status::Passed));
    assert!(report.duration < Duration::from_secs(5), "{:?}", report.duration);
}

#[test]
fn check_preflight_runs_only_the_preflight_and_sets_the_exit_code() {
    let fx = MailFixture::start();
    let config = write_config(&fx, fx.smtp_port);

    let output = mailgrant(&fx, &["check", "--preflight", "--json"], &config);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(json["ok"], true);
    let targets = json["preflight"]["targets"].as_array().expect("targets");
    let names: Vec<&str> = targets.iter().filter_map(|t| t["target"].as_str()).collect();
    assert_eq!(names, ["sign_in", "token", "smtp", "imap"]);
    assert!(targets.iter().all(|t| t["steps"][0]["duration_ms"].is_u64()));
    assert_eq!(fx.stats()["token_requests"], serde_json::json!({}), "no sign-in, no token request");

    let output = mailgrant(&fx, &["check", "--preflight"], &config);
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(text.contains("N/A  TLS handshake"), "{text}");
    assert!(text.contains("All pre-flight checks passed"), "{text}");

    // Nothing listens on the SMTP port any more: exit 1 and the refusal explained.
    let closed = write_config(&fx, free_port());
    let output = mailgrant(&fx, &["check", "--preflight", "--json"], &closed);
    assert_eq!(output.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(json["ok"], false);
    let smtp = &json["preflight"]["targets"][2];
    assert_eq!(smtp["steps"][1]["status"], "failed");
    assert_eq!(smtp["steps"][1]["diagnosis"]["id"], ids::PREFLIGHT_REFUSED);
    assert_eq!(smtp["steps"][2]["status"], "skipped");
    assert_eq!(json["preflight"]["targets"][3]["steps"][2]["status"], "passed", "IMAP still ran");

    let connect = TcpStream::connect(("127.0.0.1", fx.smtp_port));
    assert!(connect.is_ok(), "the fixture still runs");
}

/// A server that answers a TLS port with a mail greeting in plain text.
fn plain_greeting_server(greeting: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    thread::spawn(move || {
        for mut tcp in listener.incoming().flatten() {
            let _ = tcp.write_all(greeting.as_bytes());
            let mut buf = [0u8; 512];
            let _ = tcp.read(&mut buf);
        }
    });
    port
}

#[test]
fn plain_text_on_a_tls_port_is_a_handshake_failure_not_a_certificate() {
    let pki = Pki::new("Root", None, CURRENT, &["localhost"]);
    let port = plain_greeting_server("220 mail.example.net ESMTP ready\r\n");
    let target =
        run_one(spec(Target::Smtp, "127.0.0.1", port, Transport::Tls), &pki.trust(), TIMEOUT);
    let (step, d) = failure(&target);
    assert_eq!((step, d.id), (Step::Tls, ids::PREFLIGHT_TLS_HANDSHAKE), "{d:#?}");
    assert!(d.fix.contains("587 and 143 use STARTTLS"), "{}", d.fix);
}

#[test]
fn a_server_that_hangs_up_at_once_is_a_closed_connection() {
    let pki = Pki::new("Root", None, CURRENT, &["localhost"]);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            drop(tcp);
        }
    });
    let target = run_one(
        spec(Target::Imap, "127.0.0.1", port, Transport::ImapStartTls),
        &pki.trust(),
        TIMEOUT,
    );
    let (step, d) = failure(&target);
    assert_eq!((step, d.id), (Step::StartTls, ids::PREFLIGHT_CLOSED), "{d:#?}");
}

/// Plain-text server that writes `chunk` to every connection again and again, or trickles it a
/// byte at a time when `every` is set, until the client goes away.
fn noisy_server(chunk: &'static [u8], every: Option<Duration>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    thread::spawn(move || {
        for mut tcp in listener.incoming().flatten() {
            thread::spawn(move || {
                for _ in 0..100_000 {
                    let sent = match every {
                        Some(pause) => chunk.iter().try_for_each(|b| {
                            thread::sleep(pause);
                            tcp.write_all(&[*b])
                        }),
                        None => tcp.write_all(chunk),
                    };
                    if sent.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

#[test]
fn f3_smtp_flooding_220_continuation_lines_is_a_reply_too_long_not_a_silent_server() {
    let pki = Pki::new("Root", None, CURRENT, &["localhost"]);
    let port = noisy_server(b"220-mail.example.net still greeting you\r\n", None);
    let started = Instant::now();
    let target = run_one(
        spec(Target::Smtp, "127.0.0.1", port, Transport::SmtpStartTls),
        &pki.trust(),
        TIMEOUT,
    );
    let took = started.elapsed();

    assert!(took < Duration::from_secs(2), "ended at the line limit, not the timeout: {took:?}");
    let (step, d) = failure(&target);
    assert_eq!((step, d.id), (Step::StartTls, ids::PREFLIGHT_REPLY_TOO_LONG));
    assert!(d.summary.contains("too long or never ended"), "{}", d.summary);
    assert!(!d.summary.contains("never answered"), "{}", d.summary);
    assert!(d.details.join(" ").contains("more than 100 lines"), "{:?}", d.details);
}

#[test]
fn f3_one_endless_greeting_line_is_a_reply_too_long() {
    let pki = Pki::new("Root", None, CURRENT, &["localhost"]);
    let port = noisy_server(&[b'x'; 512], None);
    let target = run_one(
        spec(Target::Imap, "127.0.0.1", port, Transport::ImapStartTls),
        &pki.trust(),
        TIMEOUT,
    );
    let (step, d) = failure(&target);
    assert_eq!((step, d.id), (Step::StartTls, ids::PREFLIGHT_REPLY_TOO_LONG));
    assert!(d.details.join(" ").contains("longer than 1024 bytes"), "{:?}", d.details);
}

#[test]
fn f3_a_trickled_greeting_ends_at_the_timeout() {
    let pki = Pki::new("Root", None, CURRENT, &["localhost"]);
    let port = noisy_server(b"220 mail.example.net trickling", Some(Duration::from_millis(100)));
    let timeout = Duration::from_secs(1);
    let started = Instant::now();
    let target = run_one(
        spec(Target::Smtp, "127.0.0.1", port, Transport::SmtpStartTls),
        &pki.trust(),
        timeout,
    );
    let took = started.elapsed();

    assert!(took < timeout + Duration::from_millis(900), "bounded by the timeout: {took:?}");
    let (step, d) = failure(&target);
    assert_eq!((step, d.id), (Step::StartTls, ids::PREFLIGHT_TIMEOUT));
}

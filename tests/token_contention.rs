//! Refresh under contention and under failure, through the real binary against the local
//! identity provider with strict rotation (a refresh token redeemed twice is refused, as
//! Entra does after rotation).
//!
//! - Eight processes each call `mailgrant token --config` fifty times at once. No call may
//!   fail, the provider must never see a refresh token twice, only one token request may be in
//!   flight at a time (the lock next to the config), and the refresh token left on disk must be
//!   the live one. Run twice: with access tokens that are usable for 1 s past the 5-minute
//!   refresh margin (cache hits and refreshes mixed: the re-read after the lock), and with
//!   access tokens shorter than the margin (every call refreshes).
//! - Failures: passing 503s are retried and the tokens kept; an expired client secret
//!   (AADSTS7000222, BR-13) keeps the grant; `invalid_grant` marks "needs sign-in" once and is
//!   not retried. No token value reaches any output but `token`'s stdout.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::MailFixture;
use support::site::{
    SiteConfig, login, mailgrant, output_text as text, secret_value, secrets_table,
};

const PROCESSES: usize = 8;
const ROUNDS: usize = 50;
/// mailgrant refreshes an access token this close to its expiry (session::REFRESH_MARGIN).
const MARGIN_SECS: u64 = 300;
/// In phase 1 an access token is usable this long before it is inside the margin.
const USABLE_SECS: u64 = 1;

fn stat(fx: &MailFixture, key: &str) -> u64 {
    fx.stats()[key].as_u64().unwrap_or_else(|| panic!("no {key} in the IdP's stats"))
}

/// No refresh token, code or JWT (access or ID token) in text that is not `token`'s stdout.
fn assert_no_token_in(text: &str, what: &str) {
    for marker in ["1.Afake.", "0.Afake.", "eyJ"] {
        assert!(!text.contains(marker), "a token ({marker}…) leaked into {what}");
    }
}

/// Redeems `refresh_token` at the IdP directly: true when it is accepted (it was live).
fn refresh_is_live(fx: &MailFixture, refresh_token: &str) -> bool {
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "refresh_token")
        .append_pair("client_id", &fx.client_id)
        .append_pair("refresh_token", refresh_token)
        .append_pair("scope", "https://outlook.office.com/SMTP.Send offline_access")
        .finish();
    let path = "/organizations/oauth2/v2.0/token";
    let (status, _body) = support::http_request(
        &fx.idp_url,
        "POST",
        path,
        "application/x-www-form-urlencoded",
        &form,
    );
    status == 200
}

/// What one contention run saw.
struct Figures {
    calls: usize,
    failures: usize,
    refreshes: u64,
    rejected_reuses: u64,
    max_concurrent: u64,
    wall: Duration,
    slowest_call: Duration,
}

/// `PROCESSES` threads, each running `mailgrant token` `ROUNDS` times; every access token
/// printed is checked, every stderr scanned.
fn contend(fx: &MailFixture, config: &Path) -> Figures {
    let refreshes_before = stat(fx, "refreshes");
    let reuses_before = stat(fx, "rejected_reuses");
    let started = Instant::now();

    let results: Vec<(usize, Duration, String)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..PROCESSES)
            .map(|_| {
                scope.spawn(|| {
                    let mut failures = 0;
                    let mut slowest = Duration::ZERO;
                    let mut stderr = String::new();
                    for _ in 0..ROUNDS {
                        let call = Instant::now();
                        let output = mailgrant(fx, &["token"], config);
                        slowest = slowest.max(call.elapsed());
                        let token = String::from_utf8_lossy(&output.stdout).trim().to_owned();
                        if !output.status.success() || token.len() < 1000 {
                            failures += 1;
                            eprintln!("a token call failed:\n{}", text(&output));
                        }
                        stderr.push_str(&String::from_utf8_lossy(&output.stderr));
                    }
                    (failures, slowest, stderr)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("worker thread")).collect()
    });

    let wall = started.elapsed();
    for (_, _, stderr) in &results {
        assert_no_token_in(stderr, "the stderr of a token call");
    }
    Figures {
        calls: PROCESSES * ROUNDS,
        failures: results.iter().map(|r| r.0).sum(),
        refreshes: stat(fx, "refreshes") - refreshes_before,
        rejected_reuses: stat(fx, "rejected_reuses") - reuses_before,
        max_concurrent: stat(fx, "max_concurrent_token_requests"),
        wall,
        slowest_call: results.iter().map(|r| r.1).max().unwrap_or_default(),
    }
}

fn print_figures(label: &str, f: &Figures) {
    eprintln!(
        "contention ({label}): {PROCESSES} processes x {ROUNDS} rounds = {} calls, {} failures, \
         0 lost tokens (final token live), {} refreshes, {} cache hits, {} rejected reuses, \
         max {} token request(s) in flight, wall {:.1} s, slowest call {:.2} s",
        f.calls,
        f.failures,
        f.refreshes,
        f.calls as u64 - f.refreshes,
        f.rejected_reuses,
        f.max_concurrent,
        f.wall.as_secs_f64(),
        f.slowest_call.as_secs_f64(),
    );
}

#[test]
fn eight_processes_share_one_rotating_refresh_token_without_losing_it() {
    let fx = MailFixture::start();
    let config = SiteConfig::on(&fx).write(&fx);
    // Phase 1: access tokens usable for 2 s past the margin: refreshes and cache hits mix.
    fx.admin_config(&format!(r#"{{"token_ttl_secs": {}}}"#, MARGIN_SECS + USABLE_SECS));
    login(&fx, &config);
    // A little delay at the token endpoint widens any race window there is.
    fx.admin_config(r#"{"strict_rotation": true, "token_delay_ms": 20}"#);
    let mixed = contend(&fx, &config);
    print_figures("access usable 1 s past the margin", &mixed);
    assert_eq!(mixed.failures, 0);
    assert_eq!(mixed.rejected_reuses, 0, "a refresh token was redeemed twice");
    assert_eq!(mixed.max_concurrent, 1, "two token requests ran at once: the lock failed");
    assert!(mixed.refreshes >= 1, "the cached token never expired: the run proved nothing");
    let upper = mixed.wall.as_secs() / USABLE_SECS + 2;
    assert!(
        mixed.refreshes <= upper,
        "{} refreshes in {:?}: calls refreshed although a fresh token was on disk",
        mixed.refreshes,
        mixed.wall
    );

    // Phase 2: access tokens shorter than the margin: every call must refresh, in turn.
    fx.admin_config(r#"{"token_ttl_secs": 2}"#);
    // The last token of phase 1 is usable for up to USABLE_SECS more: let it run out.
    std::thread::sleep(Duration::from_secs(USABLE_SECS + 1));
    let every = contend(&fx, &config);
    print_figures("every call refreshes", &every);
    assert_eq!(every.failures, 0);
    assert_eq!(every.rejected_reuses, 0, "a refresh token was redeemed twice");
    assert_eq!(every.max_concurrent, 1, "two token requests ran at once: the lock failed");
    assert_eq!(every.refreshes, (PROCESSES * ROUNDS) as u64, "one refresh per call");

    // The refresh token on disk is the live one: the provider accepts it.
    let on_disk = secret_value(&config, "refresh_token");
    assert!(on_disk.starts_with("1.Afake."), "no refresh token on disk");
    let table = secrets_table(&config);
    assert!(table.get("needs_sign_in").is_none(), "{:?}", table.get("needs_sign_in"));
    assert!(refresh_is_live(&fx, &on_disk), "the refresh token on disk was not the live one");
    assert_no_token_in(&fx.idp_log(), "the identity provider's log");
}

#[test]
fn refresh_failures_keep_the_grant_unless_the_provider_says_it_is_dead() {
    let fx = MailFixture::start();
    let config = SiteConfig::on(&fx).write(&fx);
    fx.admin_config(r#"{"token_ttl_secs": 2}"#);
    login(&fx, &config);
    let mut printed = String::new();

    // Two passing 503s, then success: retried after 1 s and 2 s, the rotation saved.
    let unavailable = r#"{"status": 503, "body": {"error": "temporarily_unavailable", "error_description": "AADSTS90033: A transient error has occurred."}}"#;
    fx.admin_config(&format!(r#"{{"next_token_error": [{unavailable}, {unavailable}]}}"#));
    let before = secret_value(&config, "refresh_token");
    let started = Instant::now();
    let output = mailgrant(&fx, &["token"], &config);
    let took = started.elapsed();
    printed.push_str(&String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{}", text(&output));
    assert!(took >= Duration::from_secs(3), "no backoff between retries: {took:?}");
    assert!(took < Duration::from_secs(15), "{took:?}");
    assert_ne!(secret_value(&config, "refresh_token"), before, "rotation not saved");
    eprintln!("retry: 2 x 503 then success in {:.1} s", took.as_secs_f64());

    // Only 503s: the call fails after 4 tries, the stored tokens are untouched.
    let all_down = [unavailable; 4].join(", ");
    fx.admin_config(&format!(r#"{{"next_token_error": [{all_down}]}}"#));
    let secrets_before = secrets_table(&config);
    let output = mailgrant(&fx, &["token"], &config);
    printed.push_str(&String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert_eq!(secrets_table(&config), secrets_before, "a passing failure changed the secrets");
    assert!(fx.admin_get("/admin/config")["next_token_error"].is_null(), "not 4 tries");

    // BR-13: the client secret expired. Permanent (one request), the grant is kept.
    let expired = r#"{"status": 401, "body": {"error": "invalid_client", "error_description": "AADSTS7000222: The provided client secret keys for app '00000000-0000-0000-0000-000000000000' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret. Trace ID: 00000000-0000-0000-0000-000000000000", "error_codes": [7000222]}}"#;
    fx.admin_config(&format!(r#"{{"next_token_error": {expired}}}"#));
    let requests_before = stat(&fx, "token_errors");
    let output = mailgrant(&fx, &["token"], &config);
    printed.push_str(&String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert_eq!(stat(&fx, "token_errors"), requests_before + 1, "retried a permanent failure");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("Replace client secret"), "{stderr}");
    assert!(stderr.contains("refresh token was kept"), "{stderr}");
    assert!(secrets_table(&config).get("needs_sign_in").is_none(), "the grant was marked dead");
    assert_eq!(secrets_table(&config), secrets_before, "the secrets changed");
    // The same grant still works (here the secret "was replaced" by clearing the fault).
    let output = mailgrant(&fx, &["token"], &config);
    assert!(output.status.success(), "the grant was lost:\n{}", text(&output));

    // invalid_grant: marked once, then no request reaches the provider.
    fx.expire_refresh_tokens();
    let output = mailgrant(&fx, &["token"], &config);
    printed.push_str(&String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let reason = secrets_table(&config)
        .get("needs_sign_in")
        .and_then(|v| v.as_str().map(str::to_owned))
        .expect("needs_sign_in recorded");
    assert!(reason.contains("AADSTS700082"), "{reason}");
    let requests = fx.stats()["token_requests"].clone();
    let output = mailgrant(&fx, &["token"], &config);
    printed.push_str(&String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert_eq!(fx.stats()["token_requests"], requests, "a dead grant was redeemed again");

    // status says so, for monitoring: exit 1, ok false, the finding with its fix.
    let output = mailgrant(&fx, &["status", "--json"], &config);
    printed.push_str(&text(&output));
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(status["ok"], false);
    assert_eq!(status["health"], "failed");
    assert_eq!(status["forecast"]["findings"][0]["id"], "needs-sign-in");

    assert_no_token_in(&printed, "the output of the failure cases");
}

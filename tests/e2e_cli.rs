//! End to end through the headless commands, on real parts: the local identity provider,
//! Dovecot (IMAP, oauth2 passdb), Postfix (submission, STARTTLS required) and headless
//! Chromium as the browser. `login` → `check` → the test message is found over IMAP →
//! `token` after the access token expired refreshes and rotates. Then the failures an
//! operator meets, each asserting the cause and fix shown, and that no secret leaked.

mod support;

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use support::MailFixture;
use support::site::{
    MAILBOX, SiteConfig, assert_no_secret, login, mailgrant, output_text as text, secret_value,
    secrets_path, secrets_table as secrets,
};

/// `mailgrant.toml` on the fixture's servers with the given SMTP port and timeout.
fn write_config(fx: &MailFixture, smtp_port: u16, timeout_secs: u64) -> PathBuf {
    SiteConfig { smtp_port, timeout_secs, ..SiteConfig::on(fx) }.write(fx)
}

/// The page the browser showed: the script writes it after Chromium exits, which can be a
/// moment after our listener answered.
fn landing_page(fx: &MailFixture) -> String {
    let (_, dom_log) = fx.browser_env();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let dom = std::fs::read_to_string(&dom_log).unwrap_or_default();
        if dom.contains("end exit=") || Instant::now() > deadline {
            return dom;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn login_check_round_trip_then_token_refreshes_and_rotates() {
    let fx = MailFixture::start();
    let config = write_config(&fx, fx.smtp_port, 20);
    let mut everything_printed = String::new();

    // login: headless Chromium follows the IdP's redirect to the loopback listener.
    let started = Instant::now();
    let output = login(&fx, &config);
    everything_printed.push_str(&text(&output));
    let login_secs = started.elapsed().as_secs_f64();
    let dom = landing_page(&fx);
    assert!(
        dom.contains("Signed in as <strong>alarms@example.com</strong>"),
        "landing page: {dom}"
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("Signed in as alarms@example.com"));

    let first_refresh = secret_value(&config, "refresh_token");
    assert!(!first_refresh.is_empty(), "login saved no refresh token");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(secrets_path(&config)).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "secrets file mode");
    }
    let last_authorize = fx.last_authorize();
    assert_eq!(last_authorize["prompt"], "select_account");
    assert_eq!(last_authorize["login_hint"], MAILBOX);
    assert_eq!(last_authorize["code_challenge_method"], "S256");

    // check: every scope proven, the message found over IMAP.
    let started = Instant::now();
    let output = mailgrant(&fx, &["check", "--json"], &config);
    let check_secs = started.elapsed().as_secs_f64();
    everything_printed.push_str(&text(&output));
    assert!(output.status.success(), "check failed:\n{}", text(&output));
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("check --json prints JSON");
    assert_eq!(report["ok"], true);
    let checks = report["report"]["checks"].as_array().expect("checks");
    let outcome = |id: &str| {
        checks.iter().find(|c| c["id"] == id).map(|c| c["outcome"].clone()).unwrap_or_default()
    };
    for id in [
        "preflight",
        "token_received",
        "scopes_granted",
        "signed_in_account",
        "refresh",
        "smtp",
        "imap",
        "round_trip",
    ] {
        assert_eq!(outcome(id), "passed", "check {id}: {report:#}");
    }
    let subject_line = fx
        .maildir_messages(MAILBOX)
        .into_iter()
        .find(|m| m.contains("mailgrant test"))
        .expect("the test message was delivered to the Maildir");
    assert!(subject_line.contains(report["report"]["run_id"].as_str().expect("run id")));

    // The refresh check rotated the refresh token and saved the new one.
    let after_check = secret_value(&config, "refresh_token");
    assert_ne!(after_check, first_refresh, "the rotated refresh token was not saved");

    // token: after the access token expired, it refreshes once and saves the rotation.
    fx.expire_access_tokens();
    let config_text = std::fs::read_to_string(&config).expect("config");
    let mut cached: toml::Table = secrets(&config);
    cached.insert("access_expires_at".into(), toml::Value::String("2000-01-01T00:00:00Z".into()));
    std::fs::write(secrets_path(&config), toml::to_string(&cached).expect("toml")).expect("write");
    let refreshes_before = fx.stats()["refreshes"].as_u64().expect("refreshes");
    let output = mailgrant(&fx, &["token"], &config);
    everything_printed.push_str(&String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "token failed:\n{}", String::from_utf8_lossy(&output.stderr));
    let access = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert!(access.len() > 1000, "an Entra-like access token is long, got {}", access.len());
    assert_eq!(fx.stats()["refreshes"].as_u64(), Some(refreshes_before + 1));
    let after_token = secret_value(&config, "refresh_token");
    assert_ne!(after_token, after_check, "token did not save the rotated refresh token");
    assert_eq!(
        std::fs::read_to_string(&config).expect("config"),
        config_text,
        "plain config changed"
    );

    // A second token call reuses the cached access token: no refresh.
    let output = mailgrant(&fx, &["token"], &config);
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), access);
    assert_eq!(fx.stats()["refreshes"].as_u64(), Some(refreshes_before + 1));

    // status --json is machine-readable and shows the account.
    let output = mailgrant(&fx, &["status", "--json"], &config);
    everything_printed.push_str(&text(&output));
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).expect("status JSON");
    assert_eq!(status["signed_in_account"], MAILBOX);
    assert_eq!(status["has_refresh_token"], true);

    // No secret reached any output or server log.
    let secrets_seen = vec![
        first_refresh,
        after_check,
        after_token,
        access,
        secret_value(&config, "access_token"),
    ];
    assert_no_secret(&everything_printed, &secrets_seen, "the commands' output");
    assert_no_secret(&fx.idp_log(), &secrets_seen, "the identity provider's log");
    assert!(!everything_printed.contains("code="), "an authorization code reached the output");
    eprintln!("measured: login {login_secs:.2} s, check {check_secs:.2} s");
}

#[test]
fn token_endpoint_error_at_login_is_explained_and_nothing_is_saved() {
    let fx = MailFixture::start();
    let config = write_config(&fx, fx.smtp_port, 10);
    let body = include_str!("fixtures/replies/aadsts7000218-short-trace.json");
    fx.admin_config(&format!(r#"{{"next_token_error": {{"status": 401, "body": {body}}}}}"#));

    let output = mailgrant(&fx, &["login"], &config);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("Mobile and desktop applications"), "fix names the platform: {stderr}");
    assert!(!secrets_path(&config).exists(), "a failed sign-in wrote secrets");
    let dom = landing_page(&fx);
    assert!(dom.contains("Sign-in did not work"), "the browser page reports the failure: {dom}");
}

#[test]
fn access_denied_callback_is_reported_in_plain_words() {
    let fx = MailFixture::start();
    let config = write_config(&fx, fx.smtp_port, 10);
    fx.admin_config(concat!(
        r#"{"next_authorize_error": {"error": "access_denied", "error_description": "#,
        r#""AADSTS65004: User declined to consent to access the app."}}"#
    ));
    let output = mailgrant(&fx, &["login"], &config);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    // AADSTS65004 is consent-declined: its summary and fix, in the operator's words.
    assert!(stderr.contains("The permissions page was declined"), "{stderr}");
    assert!(stderr.contains("Fix: Sign in again and accept the permissions"), "{stderr}");
    assert!(!secrets_path(&config).exists());
}

#[test]
fn servers_refusing_the_token_are_diagnosed_and_exit_nonzero() {
    let fx = MailFixture::start();
    let config = write_config(&fx, fx.smtp_port, 10);
    login(&fx, &config);
    fx.revoke_all();
    // Keep the cached (now revoked) access token valid on our side so no refresh hides it.
    let output = mailgrant(&fx, &["check", "--json"], &config);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let checks = report["report"]["checks"].as_array().expect("checks");
    let imap = checks.iter().find(|c| c["id"] == "imap").expect("imap row");
    let smtp = checks.iter().find(|c| c["id"] == "smtp").expect("smtp row");
    // The refresh check passed (a new token), but revoke_all made the IdP forget... either the
    // mail servers refused the token or the refresh was refused: both must be explained.
    let refused: Vec<&serde_json::Value> =
        checks.iter().filter(|c| c["outcome"] == "failed").collect();
    assert!(!refused.is_empty(), "{report:#}");
    for row in refused {
        let d = &row["diagnosis"];
        assert!(d["summary"].as_str().is_some_and(|s| !s.is_empty()), "{row:#}");
        assert!(d["fix"].as_str().is_some_and(|s| !s.is_empty()), "{row:#}");
        let text = d.to_string();
        assert!(!text.contains("does not expect a challenge"), "{text}");
    }
    let _ = (imap, smtp);
}

#[test]
fn a_server_that_accepts_and_never_answers_is_bounded_by_the_timeout() {
    let fx = MailFixture::start();
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_port = silent.local_addr().expect("addr").port();
    let config = write_config(&fx, silent_port, 3);
    login(&fx, &config);
    let _keep = std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming().flatten() {
            held.push(stream);
        }
    });
    let started = Instant::now();
    let output = mailgrant(&fx, &["check", "--json"], &config);
    let took = started.elapsed();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(took < Duration::from_secs(30), "check hung for {took:?}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let smtp = report["report"]["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["id"] == "smtp").cloned())
        .expect("smtp row");
    assert_eq!(smtp["outcome"], "failed");
    let d = smtp["diagnosis"].to_string().to_lowercase();
    assert!(d.contains("time") || d.contains("answer"), "timeout diagnosis: {d}");
    // IMAP still passed: one bad server does not hide the other's result.
    let imap = report["report"]["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["id"] == "imap").cloned())
        .expect("imap row");
    assert_eq!(imap["outcome"], "passed");
}

#[test]
fn a_config_that_does_not_parse_is_reported_with_line_and_left_untouched() {
    let fx = MailFixture::start();
    let config = write_config(&fx, fx.smtp_port, 10);
    let broken = std::fs::read_to_string(&config).expect("read").replace("port = ", "port = = ");
    std::fs::write(&config, &broken).expect("write");
    for args in [&["check"][..], &["login"], &["token"], &["status"]] {
        let output = mailgrant(&fx, args, &config);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", text(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("mailgrant.toml:19:"), "file and line named: {stderr}");
        assert!(stderr.contains("smtp.port"), "key named: {stderr}");
        assert_eq!(std::fs::read_to_string(&config).expect("read"), broken, "config was changed");
    }
}

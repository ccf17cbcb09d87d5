//! The support bundle after a real sign-in and check on real parts (local identity provider
//! with a confidential client, Dovecot, Postfix, headless Chromium): it holds the facts a
//! helper needs and not one secret value. The values looked for are the real ones, read from
//! the secrets file: refresh tokens, access tokens, the client secret and the XOAUTH2 strings
//! the mail checks built from them.

mod support;

use std::path::{Path, PathBuf};

use mailgrant::bundle;
use mailgrant::cli;
use mailgrant::mail::Xoauth2Credentials;
use mailgrant::store::ConfigPaths;
use oauth2::AccessToken;
use support::MailFixture;
use support::site::{
    MAILBOX, SiteConfig, assert_no_secret, login, mailgrant, output_text as text, secret_value,
};

const CLIENT_SECRET: &str = "Bq8~bundle-test.secret_0f3a9c2e7d41";
/// A custom-provider config pointing at the fixture, and a secrets file holding only the
/// client secret (as the wizard writes it before the first sign-in).
fn write_setup(fx: &MailFixture) -> PathBuf {
    SiteConfig { client_secret: Some(CLIENT_SECRET), ..SiteConfig::on(fx) }.write(fx)
}

/// Every secret value of the setup right now, with the XOAUTH2 strings built from it.
fn secret_values(config: &Path) -> Vec<String> {
    let access = secret_value(config, "access_token");
    let mut values = vec![
        secret_value(config, "refresh_token"),
        access.clone(),
        secret_value(config, "client_secret"),
    ];
    let credentials =
        Xoauth2Credentials::new(MAILBOX, &AccessToken::new(access)).expect("xoauth2 string");
    values.push(credentials.base64_secret().to_owned());
    values.push(credentials.raw_secret().to_owned());
    assert!(values.iter().all(|v| v.len() >= 20), "every secret value was read");
    values
}

fn read_json(path: &Path) -> (String, serde_json::Value) {
    let text = std::fs::read_to_string(path).expect("bundle written");
    let json = serde_json::from_str(&text).expect("the bundle is JSON");
    (text, json)
}

#[test]
fn bundle_after_a_real_check_holds_the_facts_and_no_secret() {
    let fx = MailFixture::start();
    let client = serde_json::json!({ &fx.client_id: {
        "redirect_uris": ["http://localhost"], "public": false, "secret": CLIENT_SECRET,
        "secret_expired": false, "single_tenant": false,
    }});
    fx.admin_config(&serde_json::json!({ "clients": client }).to_string());
    let config = write_setup(&fx);

    login(&fx, &config);
    let output = mailgrant(&fx, &["check", "--json"], &config);
    assert!(output.status.success(), "check failed:\n{}", text(&output));
    let mut secrets = secret_values(&config);
    assert_eq!(
        secret_value(&config, "client_secret"),
        CLIENT_SECRET,
        "the client was confidential"
    );

    // The command, in its own process.
    let out = fx.dir.path().join("bundle-cli.json");
    let output = mailgrant(&fx, &["bundle", "--out", out.to_str().expect("utf-8")], &config);
    assert!(output.status.success(), "bundle failed:\n{}", text(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("Support bundle written"));
    let (cli_text, json) = read_json(&out);
    assert_no_secret(&cli_text, &secrets, "the bundle written by `mailgrant bundle`");
    assert_no_secret(&text(&output), &secrets, "the bundle command's output");

    assert_eq!(json["bundle_format"], 1);
    assert_eq!(json["mailgrant_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(json["os"]["os"], std::env::consts::OS);
    assert_eq!(json["config"]["mailbox"], MAILBOX);
    assert_eq!(json["config"]["smtp"]["port"], fx.smtp_port);
    let facts = &json["secrets"];
    assert_eq!(facts["present"], true);
    assert_eq!(facts["has_refresh_token"], true);
    assert_eq!(facts["has_client_secret"], true);
    assert_eq!(facts["signed_in_account"], MAILBOX);
    assert!(facts["refresh_token_issued_at"].is_string(), "{facts:#}");
    assert!(facts["refresh_token_last_used_at"].is_string(), "the check refreshed: {facts:#}");
    let scopes = facts["granted_scopes"].to_string();
    assert!(scopes.contains("SMTP.Send") && scopes.contains("IMAP.AccessAsUser.All"), "{scopes}");
    let last = &json["last_verification"]["recorded"];
    assert_eq!(last["all_passed"], true, "{:#}", json["last_verification"]);
    let ids: Vec<&str> = last["checks"]
        .as_array()
        .map(|checks| checks.iter().filter_map(|c| c["id"].as_str()).collect())
        .unwrap_or_default();
    let expected = [
        "preflight",
        "token_received",
        "scopes_granted",
        "signed_in_account",
        "refresh",
        "smtp",
        "imap",
        "round_trip",
    ];
    assert_eq!(ids, expected, "{last:#}");
    assert_eq!(json["preflight"]["targets"].as_array().map(Vec::len), Some(4));
    let preflight_ok = json["preflight"]["targets"].as_array().is_some_and(|targets| {
        targets.iter().all(|t| {
            t["steps"].as_array().is_some_and(|steps| {
                steps.iter().all(|s| s["status"] == "passed" || s["status"] == "not_applicable")
            })
        })
    });
    assert!(preflight_ok, "{:#}", json["preflight"]);
    assert_eq!(json["scrubbed_values"], 0, "nothing secret needed scrubbing");
    assert!(json["log"].as_array().is_some_and(|l| !l.is_empty()), "the bundle run's own log");

    // In this process, after a check run by the same library: the log holds the whole check.
    let code = cli::run(
        Some(config.clone()),
        cli::Command::Check { json: true, send_to: None, preflight: false },
    );
    assert_eq!(code, std::process::ExitCode::SUCCESS);
    secrets.extend(secret_values(&config));
    let out = fx.dir.path().join("bundle-lib.json");
    let written = bundle::write(&ConfigPaths::for_config(&config), &out).expect("bundle");
    let (lib_text, json) = read_json(&out);
    assert_no_secret(&lib_text, &secrets, "the bundle written by the library");
    assert_no_secret(&format!("{written:?}"), &secrets, "the bundle's Debug text");
    let log = json["log"].to_string();
    assert!(log.contains("verification started"), "the check's log is in: {log}");
    assert!(log.contains("check passed"), "{log}");
    assert_eq!(json["scrubbed_values"], 0);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&out).expect("meta").permissions().mode();
        assert_eq!(mode & 0o077, 0, "the bundle is readable by its owner only");
    }
}

#[test]
fn a_broken_config_still_gives_a_bundle_that_explains_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("mailgrant.toml");
    let secret_line = "client_secret = \"pasted-here-by-mistake-0123456789\"";
    std::fs::write(&config, format!("schema_version = 1\nmailbox = \n{secret_line}\n")).expect("w");
    let out = dir.path().join("bundle.json");
    bundle::write(&ConfigPaths::for_config(&config), &out).expect("bundle");
    let (text, json) = read_json(&out);
    assert_eq!(json["config"], serde_json::Value::Null);
    assert_eq!(json["config_problem"]["id"], "config-invalid-toml", "{:#}", json["config_problem"]);
    assert_eq!(json["secrets"]["present"], false);
    assert_eq!(json["secrets"]["note"], "not read: the config could not be used");
    assert!(json["last_verification"]["none_stored"].is_string(), "says none is stored");
    assert_eq!(json["preflight"], serde_json::Value::Null);
    assert!(!text.contains("pasted-here-by-mistake"), "the raw config text is never copied");
}

#[test]
fn a_bundle_that_cannot_be_written_is_explained() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("mailgrant.toml");
    let out = dir.path().join("no-such-folder").join("bundle.json");
    let error = bundle::write(&ConfigPaths::for_config(&config), &out).expect_err("no folder");
    let d = mailgrant::diagnose::preflight::bundle_write(&error);
    assert_eq!(d.id, "bundle-write-failed");
    assert!(d.summary.contains("no-such-folder"), "{}", d.summary);
}

#[test]
fn a_bundle_never_replaces_the_setup_or_an_unrelated_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = dir.path().join("site");
    std::fs::create_dir_all(site.join("backups")).expect("dirs");
    let config = site.join("mailgrant.toml");
    let paths = ConfigPaths::for_config(&config);
    std::fs::write(&config, "schema_version = 1\n# the operator's config\n").expect("config");
    std::fs::write(&paths.secrets, "schema_version = 1\nrefresh_token = \"RT-precious-1\"\n")
        .expect("secrets");
    let notes = site.join("notes.txt");
    std::fs::write(&notes, "the operator's notes\n").expect("notes");
    let before = |p: &Path| std::fs::read(p).unwrap_or_default();
    let (config_before, secrets_before) = (before(&config), before(&paths.secrets));

    let other_spelling = site.join("backups").join("..").join("mailgrant.secrets.toml");
    for (out, what) in [
        (config.clone(), "the service config"),
        (paths.secrets.clone(), "the secrets file"),
        (other_spelling, "the secrets file"),
        (paths.lock.clone(), "the lock file"),
        (site.join("mailgrant.last-check.json"), "the last check record"),
        (site.join("backups").join("bundle.json"), "inside the backups folder"),
        (notes.clone(), "an existing file, not a support bundle"),
        (site.clone(), "not a regular file"),
    ] {
        let error = bundle::write(&paths, &out).expect_err("refused");
        let d = mailgrant::diagnose::preflight::bundle_write(&error);
        assert_eq!(d.id, "bundle-would-replace", "{}", out.display());
        assert!(d.cause.contains(what), "{}: {}", out.display(), d.cause);
        assert!(d.fix.contains("new file name"), "{}", d.fix);
    }
    assert_eq!(before(&config), config_before);
    assert_eq!(before(&paths.secrets), secrets_before);
    assert_eq!(std::fs::read_to_string(&notes).expect("notes"), "the operator's notes\n");

    // The command line refuses too, and says so.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_mailgrant"))
        .args(["bundle", "--out"])
        .arg(&paths.secrets)
        .arg("--config")
        .arg(&config)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run mailgrant");
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("the secrets file"), "{}", text(&output));
    assert_eq!(before(&paths.secrets), secrets_before);

    // A new file, and then an earlier bundle, are fine.
    let out = site.join("support.json");
    bundle::write(&paths, &out).expect("new file");
    bundle::write(&paths, &out).expect("an earlier bundle is replaced");
    assert!(read_json(&out).1["bundle_format"].is_number());
}

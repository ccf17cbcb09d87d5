//! One site's setup for the headless-command tests: a custom-provider config pointing at a
//! running [`MailFixture`], the `mailgrant` binary run against it with the fixture's headless
//! browser, and reading back what it stored in the secrets file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::MailFixture;

/// The mailbox every fixture serves.
pub const MAILBOX: &str = "alarms@example.com";

/// The scopes the Microsoft 365 preset asks for, as a TOML array.
pub const SCOPES_TOML: &str = concat!(
    r#"["https://outlook.office.com/IMAP.AccessAsUser.All", "#,
    r#""https://outlook.office.com/SMTP.Send", "offline_access", "openid", "profile", "email"]"#
);

/// What varies between the tests' configs.
pub struct SiteConfig<'a> {
    /// The config's file name inside `<fixture dir>/site/`; the secrets file is
    /// `<stem>.secrets.toml` beside it.
    pub file_name: &'a str,
    /// SMTP port (the fixture's submission port unless a test points it at its own server).
    pub smtp_port: u16,
    /// `timeout_secs` of the config.
    pub timeout_secs: u64,
    /// When set, a secrets file (0600) holding only this client secret is written too, as the
    /// wizard does before the first sign-in.
    pub client_secret: Option<&'a str>,
}

impl SiteConfig<'_> {
    /// `mailgrant.toml` on the fixture's own servers, 20 s timeout, public client.
    pub fn on(fx: &MailFixture) -> SiteConfig<'static> {
        SiteConfig {
            file_name: "mailgrant.toml",
            smtp_port: fx.smtp_port,
            timeout_secs: 20,
            client_secret: None,
        }
    }

    /// Writes the config (and the secrets file when a client secret is set); returns the
    /// config's path.
    pub fn write(&self, fx: &MailFixture) -> PathBuf {
        let path = fx.dir.path().join("site").join(self.file_name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("config dir");
        let text = format!(
            r#"schema_version = 1
mailbox = "{MAILBOX}"
imap_user = "{MAILBOX}"
smtp_user = "{MAILBOX}"
from = "{MAILBOX}"
test_recipient = "{MAILBOX}"
timeout_secs = {timeout_secs}
extra_ca_file = "{ca}"

[oauth]
provider = "custom"
client_id = "{client_id}"
authorize_url = "{authorize}"
token_url = "{token}"
scopes = {SCOPES_TOML}

[smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "start_tls"

[imap]
host = "localhost"
port = {imaps}
security = "tls"

[secrets]
store = "file"
"#,
            timeout_secs = self.timeout_secs,
            ca = fx.ca_file.display(),
            client_id = fx.client_id,
            authorize = fx.authorize_url(),
            token = fx.token_url(),
            smtp_port = self.smtp_port,
            imaps = fx.imaps_port,
        );
        std::fs::write(&path, text).expect("write config");

        if let Some(client_secret) = self.client_secret {
            let secrets = secrets_path(&path);
            let body = format!("schema_version = 1\nclient_secret = \"{client_secret}\"\n");
            std::fs::write(&secrets, body).expect("write secrets");
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let private = std::fs::Permissions::from_mode(0o600);
                std::fs::set_permissions(&secrets, private).expect("chmod");
            }
        }
        path
    }
}

/// The secrets file beside `config`: `<stem>.secrets.toml`.
pub fn secrets_path(config: &Path) -> PathBuf {
    let stem = config.file_stem().and_then(|s| s.to_str()).expect("config file stem");
    config.with_file_name(format!("{stem}.secrets.toml"))
}

/// The secrets file as a TOML table.
pub fn secrets_table(config: &Path) -> toml::Table {
    let text = std::fs::read_to_string(secrets_path(config)).expect("secrets file");
    text.parse().expect("secrets parse")
}

/// One string value of the secrets file, empty when absent.
pub fn secret_value(config: &Path, key: &str) -> String {
    secrets_table(config).get(key).and_then(|v| v.as_str()).unwrap_or_default().to_owned()
}

/// Runs the `mailgrant` binary on `config` with the fixture's headless browser as `$BROWSER`
/// and debug logging on (so the secret scans see everything the code logs).
pub fn mailgrant(fx: &MailFixture, args: &[&str], config: &Path) -> Output {
    let (browser, _log) = fx.browser_env();
    Command::new(env!("CARGO_BIN_EXE_mailgrant"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env("BROWSER", browser)
        .env("RUST_LOG", "mailgrant=debug")
        .stdin(Stdio::null())
        .output()
        .expect("run mailgrant")
}

/// Exit status, stdout and stderr of a run, for assertion messages.
pub fn output_text(output: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `mailgrant login`, which must succeed.
pub fn login(fx: &MailFixture, config: &Path) -> Output {
    let output = mailgrant(fx, &["login"], config);
    assert!(output.status.success(), "login failed:\n{}", output_text(&output));
    output
}

/// Fails when any of `values` (those of at least 8 characters), or its first 40 characters
/// (a cut-off copy is still a leak), or any XOAUTH2 string appears in `haystack`; the message
/// names `what`, never the value.
pub fn assert_no_secret(haystack: &str, values: &[String], what: &str) {
    for value in values.iter().filter(|v| v.len() >= 8) {
        assert!(!haystack.contains(value.as_str()), "a secret value leaked into {what}");
        let head: String = value.chars().take(40).collect();
        assert!(!haystack.contains(&head), "the start of a secret value leaked into {what}");
    }
    assert!(!haystack.contains("auth=Bearer"), "an XOAUTH2 string leaked into {what}");
}

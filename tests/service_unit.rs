//! The example systemd unit under `packaging/systemd/` works: its `ExecStart=` command line,
//! read from the file with the binary and config paths put in, prints an access token from the
//! local identity provider after the cached one expired, saves the rotated refresh token, and
//! the unit keeps that token out of the journal.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use support::MailFixture;
use support::site::{SiteConfig, login, secret_value, secrets_path};

const UNIT_BINARY: &str = "/usr/bin/mailgrant";
const UNIT_CONFIG: &str = "/etc/mailgrant/alarm.toml";

fn unit_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/systemd").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The value of `key=` in the unit's `[Service]` section (the last one wins, as in systemd).
fn service_setting(unit: &str, key: &str) -> Option<String> {
    let mut in_service = false;
    let mut value = None;
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') {
            in_service = line == "[Service]";
        } else if in_service && let Some(rest) = line.strip_prefix(&format!("{key}=")) {
            value = Some(rest.trim().to_owned());
        }
    }
    value
}

fn write_config(fx: &MailFixture) -> PathBuf {
    SiteConfig { file_name: "alarm.toml", ..SiteConfig::on(fx) }.write(fx)
}

fn refresh_token_on_disk(config: &Path) -> String {
    secret_value(config, "refresh_token")
}

#[test]
fn the_example_unit_runs_the_token_command_against_the_identity_provider() {
    let unit = unit_file("mailgrant-alarm.service");
    let exec = service_setting(&unit, "ExecStart").expect("ExecStart= in [Service]");
    assert_eq!(service_setting(&unit, "StandardOutput").as_deref(), Some("null"));
    assert_eq!(service_setting(&unit, "Type").as_deref(), Some("oneshot"));
    let timer = unit_file("mailgrant-alarm.timer");
    assert!(timer.contains("OnCalendar=daily"), "{timer}");

    let words: Vec<&str> = exec.split_whitespace().collect();
    assert_eq!(words.first(), Some(&UNIT_BINARY), "{exec}");
    assert!(words.contains(&UNIT_CONFIG), "{exec}");

    // Sign in once (as the operator would with the GUI), then let the access token expire.
    let fx = MailFixture::start();
    let config = write_config(&fx);
    login(&fx, &config);
    let signed_in_token = refresh_token_on_disk(&config);
    fx.admin_config(r#"{"token_ttl_secs": 2}"#);
    fx.expire_access_tokens();
    let secrets = secrets_path(&config);
    let text = std::fs::read_to_string(&secrets).expect("secrets");
    let mut table: toml::Table = text.parse().expect("parse");
    table.insert("access_expires_at".into(), toml::Value::String("2000-01-01T00:00:00Z".into()));
    std::fs::write(&secrets, toml::to_string(&table).expect("toml")).expect("write");
    let refreshes_before = fx.stats()["refreshes"].as_u64().expect("refreshes");

    // The unit's command line, with this build and this config put in.
    let config_arg = config.display().to_string();
    let args: Vec<&str> = words[1..]
        .iter()
        .map(|w| if *w == UNIT_CONFIG { config_arg.as_str() } else { w })
        .collect();
    let output = Command::new(env!("CARGO_BIN_EXE_mailgrant"))
        .args(&args)
        .env(
            "RUST_LOG",
            service_setting(&unit, "Environment").map_or(String::new(), |e| {
                e.strip_prefix("RUST_LOG=").unwrap_or_default().to_owned()
            }),
        )
        .stdin(Stdio::null())
        .output()
        .expect("run the unit's command");

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let access = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert!(access.starts_with("eyJ") && access.len() > 1000, "no access token came out");
    assert_eq!(fx.stats()["refreshes"].as_u64(), Some(refreshes_before + 1));
    let rotated = refresh_token_on_disk(&config);
    assert!(rotated.starts_with("1.Afake.") && rotated != signed_in_token, "rotation not saved");
    for value in [&access, &rotated, &signed_in_token] {
        assert!(!stderr.contains(value.as_str()), "a token reached the journal (stderr)");
    }
    eprintln!("service unit: `{exec}` printed a {}-character access token", access.len());
}

//! The service config store on real files: round trip, backups, permissions, refused saves,
//! newer schemas, refresh-token keeping (BR-17), redaction, and a writer killed mid-save.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration as StdDuration, Instant};

use mailgrant::diagnose;
use mailgrant::oauth::{IdentityClaims, TokenSet};
use mailgrant::profile::ProfileForm;
use mailgrant::store::{
    self, BACKUPS_KEPT, ConfigPaths, Identities, ParseProblemKind, SaveOptions, Secrets,
    ServiceConfig, StoreError, UpdateError,
};
use oauth2::{AccessToken, ClientSecret, RefreshToken};
use time::{Duration, OffsetDateTime, macros::datetime};

const ACCESS: &str = "eyJ0eXAi.access-token-value-Zq81";
const REFRESH: &str = "0.AAAA.refresh-token-value-Xk42";
const CLIENT_SECRET: &str = "client~secret~value~Pw93";

fn config() -> ServiceConfig {
    let form = ProfileForm {
        tenant: "00000000-0000-0000-0000-000000000000".into(),
        client_id: "00000000-0000-0000-0000-000000000000".into(),
        mailbox: "alarms@example.com".into(),
        ..ProfileForm::default()
    };
    let (profile, _) = form.validate().expect("valid form");
    let identities = Identities {
        imap_user: "alarms@example.com".into(),
        smtp_user: "operator@example.com".into(),
        from: "alarms@example.com".into(),
    };
    ServiceConfig::from_profile(&profile, &identities)
}

fn tokens(access: &str, refresh: Option<&str>, at: OffsetDateTime) -> TokenSet {
    TokenSet {
        access_token: AccessToken::new(access.into()),
        access_expires_at: Some(at + Duration::hours(1)),
        refresh_token: refresh.map(|r| RefreshToken::new(r.into())),
        granted_scopes: Some(vec!["https://outlook.office.com/SMTP.Send".into()]),
        identity: Some(IdentityClaims {
            preferred_username: Some("operator@example.com".into()),
            ..IdentityClaims::default()
        }),
        obtained_at: at,
    }
}

fn secrets() -> Secrets {
    let at = datetime!(2025-03-01 08:00 UTC);
    Secrets::from_sign_in(
        &tokens(ACCESS, Some(REFRESH), at),
        Some(ClientSecret::new(CLIENT_SECRET.into())),
    )
}

fn refresh_of(secrets: &Secrets) -> Option<String> {
    secrets.refresh_token.as_ref().map(|t| t.secret().clone())
}

fn setup() -> (tempfile::TempDir, ConfigPaths) {
    let dir = tempfile::tempdir().expect("temp dir");
    let paths = ConfigPaths::for_config(&dir.path().join("mailgrant.toml"));
    (dir, paths)
}

#[test]
fn save_then_load_gives_back_the_same_setup() {
    let (_dir, paths) = setup();
    let mut config = config();
    config.oauth.client_secret_expires_on = Some(time::macros::date!(2027 - 06 - 30));
    store::save(&paths, &config, &secrets()).expect("saved");

    let loaded = store::load(&paths).expect("loads");
    let mut expected = config.clone();
    expected.secrets.path = Some("mailgrant.secrets.toml".into());
    assert_eq!(loaded.config, expected);
    assert_eq!(refresh_of(&loaded.secrets).as_deref(), Some(REFRESH));
    assert_eq!(
        loaded.secrets.client_secret.as_ref().map(|s| s.secret().as_str()),
        Some(CLIENT_SECRET)
    );
    assert_eq!(loaded.secrets.refresh_token_issued_at, Some(datetime!(2025-03-01 08:00 UTC)));
    assert_eq!(loaded.secrets.signed_in_account.as_deref(), Some("operator@example.com"));

    let profile = loaded.config.to_profile(&loaded.secrets).expect("valid profile");
    assert_eq!(profile.client_secret.map(|s| s.secret().clone()).as_deref(), Some(CLIENT_SECRET));

    // The secrets stay out of the plain config.
    let plain = fs::read_to_string(&paths.config).expect("config text");
    for value in [ACCESS, REFRESH, CLIENT_SECRET] {
        assert!(!plain.contains(value), "{value} in the plain config");
    }
    assert!(plain.starts_with("schema_version = 1\n"), "{plain}");
}

#[test]
fn backups_rotate_and_the_newest_five_are_kept() {
    let (_dir, paths) = setup();
    let mut config = config();
    for round in 1..=8u64 {
        config.timeout_secs = round;
        store::save(&paths, &config, &secrets()).expect("saved");
    }

    let backups = store::backup::list(&paths).expect("listed");
    let numbers: Vec<u32> = backups.iter().map(|b| b.number).collect();
    assert_eq!(numbers, [3, 4, 5, 6, 7]);
    assert_eq!(backups.len() as u32, BACKUPS_KEPT);

    // Backup n holds the config of save n (whose timeout was n).
    let newest =
        fs::read_to_string(backups[4].config.as_ref().expect("config half")).expect("backup text");
    assert!(newest.contains("timeout_secs = 7\n"), "{newest}");
    assert!(backups.iter().all(|b| b.secrets.is_some()));
    let current = fs::read_to_string(&paths.config).expect("config");
    assert!(current.contains("timeout_secs = 8\n"));
}

#[cfg(unix)]
#[test]
fn secrets_are_0600_and_refused_when_readable_by_others() {
    use std::os::unix::fs::PermissionsExt;

    let (_dir, paths) = setup();
    store::save(&paths, &config(), &secrets()).expect("saved");
    let mode = |p: &Path| fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode(&paths.secrets), 0o600);
    store::save(&paths, &config(), &secrets()).expect("saved again");
    for backup in store::backup::list(&paths).expect("listed") {
        assert_eq!(mode(backup.secrets.as_deref().expect("secrets half")), 0o600);
    }

    fs::set_permissions(&paths.secrets, fs::Permissions::from_mode(0o644)).expect("chmod");
    let error = store::load(&paths).expect_err("refused");
    assert!(
        matches!(&error, StoreError::SecretsPermissionsTooOpen { mode: 0o644, path }
            if *path == paths.secrets),
        "{error:?}"
    );
    let diagnosis = diagnose::config::store(&error);
    assert_eq!(diagnosis.id, "secrets-permissions-too-open");
    assert!(diagnosis.fix.contains(&format!("chmod 600 {}", paths.secrets.display())));

    // A save replaces it with a 0600 file again.
    store::save(&paths, &config(), &secrets()).expect("saved");
    assert_eq!(mode(&paths.secrets), 0o600);
    store::load(&paths).expect("loads after the fix");
}

#[test]
fn invalid_toml_is_reported_with_line_and_key_and_a_refused_save_leaves_it_untouched() {
    let (_dir, paths) = setup();
    store::save(&paths, &config(), &secrets()).expect("saved");

    let good = fs::read_to_string(&paths.config).expect("config");
    let broken = good.replace("port = 587", "port = 587x");
    assert_ne!(good, broken);
    fs::write(&paths.config, &broken).expect("broken by hand");
    let line = broken.lines().position(|l| l == "port = 587x").expect("line") + 1;

    let error = store::load(&paths).expect_err("invalid");
    let problem = error.parse_problem().expect("parse problem");
    assert_eq!(problem.kind, ParseProblemKind::Syntax);
    assert_eq!(problem.line, Some(line));
    assert_eq!(problem.key.as_deref(), Some("smtp.port"));
    assert_eq!(problem.file, paths.config);
    let diagnosis = diagnose::config::store(&error);
    assert_eq!(diagnosis.id, "config-invalid-toml");
    assert!(
        diagnosis.summary.contains(&format!("{}:{line}:", paths.config.display())),
        "{}",
        diagnosis.summary
    );

    let before = fs::read(&paths.config).expect("bytes");
    let refused = store::save(&paths, &config(), &secrets()).expect_err("refused");
    assert!(matches!(refused, StoreError::ExistingUnparsable(_)), "{refused:?}");
    assert_eq!(diagnose::config::store(&refused).id, "save-refused-unparsable");
    assert_eq!(fs::read(&paths.config).expect("bytes"), before, "file must be untouched");

    // With the operator's say-so it is replaced, and the broken file is kept as a backup.
    let options = SaveOptions { overwrite_unparsable: true };
    let saved = store::save_with(&paths, &config(), &secrets(), options).expect("overwritten");
    let backup = store::backup::list(&paths).expect("listed").pop().expect("a backup");
    assert_eq!(Some(backup.number), saved.backup);
    assert_eq!(fs::read(backup.config.expect("config half")).expect("bytes"), before);
    store::load(&paths).expect("loads");
}

#[test]
fn missing_file_and_missing_key_are_told_apart() {
    let (_dir, paths) = setup();
    let error = store::load(&paths).expect_err("missing");
    assert_eq!(diagnose::config::store(&error).id, "config-missing");

    store::save(&paths, &config(), &secrets()).expect("saved");
    let text = fs::read_to_string(&paths.config).expect("config");
    let without: String =
        text.lines().filter(|l| !l.starts_with("smtp_user")).map(|l| format!("{l}\n")).collect();
    fs::write(&paths.config, without).expect("written");
    let error = store::load(&paths).expect_err("missing key");
    let problem = error.parse_problem().expect("parse problem");
    assert_eq!(problem.kind, ParseProblemKind::MissingKey);
    assert_eq!(problem.key.as_deref(), Some("smtp_user"));
    assert_eq!(diagnose::config::store(&error).id, "config-missing-key");
}

#[test]
fn a_newer_schema_is_refused_and_not_overwritten() {
    let (_dir, paths) = setup();
    store::save(&paths, &config(), &secrets()).expect("saved");
    let newer = fs::read_to_string(&paths.config)
        .expect("config")
        .replace("schema_version = 1", "schema_version = 2\nnew_feature = true");
    fs::write(&paths.config, &newer).expect("written");

    let error = store::load(&paths).expect_err("newer");
    assert!(matches!(error, StoreError::NewerSchema { found: 2, supported: 1, .. }), "{error:?}");
    assert_eq!(diagnose::config::store(&error).id, "config-newer-schema");

    store::save(&paths, &config(), &secrets()).expect_err("refused");
    assert_eq!(fs::read_to_string(&paths.config).expect("config"), newer);
}

#[test]
fn br_17_an_empty_or_missing_refresh_token_never_replaces_a_stored_one() {
    let (_dir, paths) = setup();
    store::save(&paths, &config(), &secrets()).expect("saved");

    // A save whose secrets lost the refresh token keeps the stored one.
    let mut without = secrets();
    without.refresh_token = None;
    let saved =
        store::save_with(&paths, &config(), &without, SaveOptions::default()).expect("saved");
    assert!(saved.kept_newer_refresh_token);
    assert_eq!(refresh_of(&store::load(&paths).expect("loads").secrets).as_deref(), Some(REFRESH));

    let mut empty = secrets();
    empty.refresh_token = Some(RefreshToken::new(String::new()));
    store::save(&paths, &config(), &empty).expect("saved");
    assert_eq!(refresh_of(&store::load(&paths).expect("loads").secrets).as_deref(), Some(REFRESH));

    // A refresh answered without a refresh token (Google) or with "" keeps it too.
    for answer in [None, Some("")] {
        let at = datetime!(2025-03-02 08:00 UTC);
        store::update_secrets_locked(&paths, |s| {
            s.apply_refresh(&tokens("AT-new", answer, at));
            Ok::<(), ()>(())
        })
        .expect("updated");
        let loaded = store::load(&paths).expect("loads").secrets;
        assert_eq!(refresh_of(&loaded).as_deref(), Some(REFRESH), "after {answer:?}");
        assert_eq!(loaded.refresh_token_last_used_at, Some(at));
    }

    // A closure that clears the field without signing out cannot drop it either.
    store::update_secrets_locked(&paths, |s| {
        s.refresh_token = None;
        Ok::<(), ()>(())
    })
    .expect("updated");
    assert_eq!(refresh_of(&store::load(&paths).expect("loads").secrets).as_deref(), Some(REFRESH));

    // Signing out is the one way to remove it.
    store::sign_out(&paths).expect("signed out");
    let loaded = store::load(&paths).expect("loads").secrets;
    assert!(loaded.refresh_token.is_none());
    assert_eq!(loaded.client_secret.as_ref().map(|s| s.secret().as_str()), Some(CLIENT_SECRET));
}

#[test]
fn a_stale_copy_never_overwrites_a_rotated_refresh_token() {
    let (_dir, paths) = setup();
    let stale = secrets();
    store::save(&paths, &config(), &stale).expect("saved");

    // The service rotates the token (RFC 6749 §6), ten times.
    for round in 1..=10 {
        let at = datetime!(2025-03-01 08:00 UTC) + Duration::hours(round);
        let rotated = format!("RT-rotated-{round}");
        let value = store::update_secrets_locked(&paths, |s| {
            s.apply_refresh(&tokens(&format!("AT-{round}"), Some(&rotated), at));
            Ok::<u32, ()>(7)
        })
        .expect("rotated");
        assert_eq!(value, 7);
    }

    // The GUI saves with the secrets it read before: the newest token survives.
    let saved = store::save_with(&paths, &config(), &stale, SaveOptions::default()).expect("saved");
    assert!(saved.kept_newer_refresh_token);
    let loaded = store::load(&paths).expect("loads").secrets;
    assert_eq!(refresh_of(&loaded).as_deref(), Some("RT-rotated-10"));
}

#[test]
fn an_update_error_still_saves_what_the_closure_marked() {
    let (_dir, paths) = setup();
    store::save(&paths, &config(), &secrets()).expect("saved");
    let result = store::update_secrets_locked(&paths, |s| {
        s.needs_sign_in = Some("invalid_grant AADSTS700082".into());
        Err::<(), _>("refused")
    });
    assert!(matches!(result, Err(UpdateError::Update("refused"))), "{result:?}");
    let loaded = store::load(&paths).expect("loads").secrets;
    assert_eq!(loaded.needs_sign_in.as_deref(), Some("invalid_grant AADSTS700082"));
    assert_eq!(refresh_of(&loaded).as_deref(), Some(REFRESH));
}

#[test]
fn debug_of_secrets_config_and_setup_shows_no_secret_value() {
    let (_dir, paths) = setup();
    store::save(&paths, &config(), &secrets()).expect("saved");
    let setup = store::load(&paths).expect("loads");
    let shown = format!("{setup:?} {:#?} {:?} {:?}", setup.secrets, setup.config, secrets());
    for value in [ACCESS, REFRESH, CLIENT_SECRET] {
        assert!(!shown.contains(value), "{value} leaked: {shown}");
    }
    assert!(shown.contains("ClientSecret([redacted])"), "{shown}");
    assert!(shown.contains("alarms@example.com"), "the settings themselves are shown");
}

#[cfg(unix)]
#[test]
fn secrets_file_errors_never_quote_a_value() {
    let (_dir, paths) = setup();
    store::save(&paths, &config(), &secrets()).expect("saved");
    let text = fs::read_to_string(&paths.secrets).expect("secrets");
    let broken = text.replace(&format!("\"{REFRESH}\""), &format!("[\"{REFRESH}\"]"));
    assert_ne!(text, broken);
    fs::write(&paths.secrets, broken).expect("written");

    let error = store::load(&paths).expect_err("invalid");
    let diagnosis = diagnose::config::store(&error);
    assert_eq!(diagnosis.id, "secrets-invalid");
    assert_eq!(error.parse_problem().and_then(|p| p.key.as_deref()), Some("refresh_token"));
    let shown = format!("{error} {error:?} {}", diagnosis.to_text());
    assert!(!shown.contains(REFRESH), "{shown}");
}

/// Child side of the kill test: saves in a loop until killed. Run only by the test below.
#[test]
#[ignore = "helper process for a_writer_killed_mid_save_leaves_a_loadable_setup"]
fn kill_helper_save_forever() {
    let Ok(config_path) = std::env::var("MAILGRANT_KILL_HELPER_CONFIG") else {
        panic!("run only by a_writer_killed_mid_save_leaves_a_loadable_setup");
    };
    let paths = ConfigPaths::for_config(Path::new(&config_path));
    let mut config = config();
    let mut secrets = secrets();
    for round in 0u64.. {
        config.timeout_secs = 1 + round % 600;
        let at = datetime!(2025-03-01 08:00 UTC) + Duration::seconds(round as i64);
        secrets.apply_refresh(&tokens(&format!("AT-{round}"), Some(&format!("RT-{round}")), at));
        store::save(&paths, &config, &secrets).expect("save in helper");
    }
}

#[cfg(unix)]
#[test]
fn a_writer_killed_mid_save_leaves_a_loadable_setup() {
    let (_dir, paths) = setup();
    store::save(&paths, &config(), &secrets()).expect("first save");
    let exe = std::env::current_exe().expect("test binary");

    let rounds = 20;
    let mut helper_saves_seen = 0;
    for round in 0..rounds {
        let mut child = Command::new(&exe)
            .args(["--ignored", "--exact", "kill_helper_save_forever", "--test-threads=1"])
            .env("MAILGRANT_KILL_HELPER_CONFIG", &paths.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("helper started");

        // Let it save a while (a different moment each round), then SIGKILL it.
        let deadline = Instant::now() + StdDuration::from_millis(30 + (round * 17) % 90);
        while Instant::now() < deadline {
            std::thread::sleep(StdDuration::from_millis(5));
        }
        child.kill().expect("SIGKILL");
        let status = child.wait().expect("reaped");
        assert!(!status.success(), "round {round}: the helper must have been killed");

        let setup = store::load(&paths).unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert!(setup.secrets.has_refresh_token(), "round {round}");
        if refresh_of(&setup.secrets).is_some_and(|t| t.starts_with("RT-")) {
            helper_saves_seen += 1;
        }
    }
    let temps_left = fs::read_dir(paths.dir())
        .expect("dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .count();
    eprintln!(
        "kill test: {rounds} kills, {helper_saves_seen} loads after helper saves, \
               {temps_left} temp files left by killed writers"
    );
    assert!(helper_saves_seen > 0, "the helper never got to save; the test proved nothing");

    store::save(&paths, &config(), &secrets()).expect("a save after the kills");
    let leftovers: Vec<_> = fs::read_dir(paths.dir())
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    // Killed writers leave temp files; the next save under the lock removes them.
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_config_that_is_not_utf8_is_refused_and_backed_up_byte_for_byte() {
    let (_dir, paths) = setup();
    store::save(&paths, &config(), &secrets()).expect("saved");
    let latin1 = b"schema_version = 1\nmailbox = \"caf\xe9@example.com\"\n".to_vec();
    fs::write(&paths.config, &latin1).expect("written");

    let error = store::load(&paths).expect_err("not UTF-8");
    assert_eq!(diagnose::config::store(&error).id, "config-unreadable");
    let refused = store::save(&paths, &config(), &secrets()).expect_err("refused");
    assert!(matches!(refused, StoreError::ExistingUnparsable(_)), "{refused:?}");
    assert_eq!(fs::read(&paths.config).expect("bytes"), latin1);

    let options = SaveOptions { overwrite_unparsable: true };
    store::save_with(&paths, &config(), &secrets(), options).expect("overwritten");
    let backup = store::backup::list(&paths).expect("listed").pop().expect("a backup");
    assert_eq!(fs::read(backup.config.expect("config half")).expect("bytes"), latin1);
}

/// Everything the operator sees of a store diagnosis; must hold no secret value.
fn shown(d: &diagnose::Diagnosis) -> String {
    format!("{}\n{d:?}", d.to_text())
}

fn assert_no_secret_value(text: &str) {
    for value in [ACCESS, REFRESH, CLIENT_SECRET] {
        assert!(!text.contains(value), "a secret value leaked into: {text}");
    }
}

#[test]
fn a_deleted_secrets_file_says_to_sign_in_again() {
    let (_dir, paths) = setup();
    store::save(&paths, &config(), &secrets()).expect("saved");
    fs::remove_file(&paths.secrets).expect("deleted");

    let error = store::load(&paths).expect_err("no secrets");
    let d = diagnose::config::store(&error);
    assert_eq!(d.id, "secrets-missing");
    assert!(d.summary.contains(&paths.secrets.display().to_string()), "{}", d.summary);
    assert!(d.fix.contains("`mailgrant login`"), "{}", d.fix);
}

#[test]
fn a_secrets_file_that_is_not_utf8_is_unreadable_and_names_the_fix() {
    let (_dir, paths) = setup();
    store::save(&paths, &config(), &secrets()).expect("saved");
    let mut bytes = fs::read(&paths.secrets).expect("secrets");
    bytes.extend_from_slice(b"# \xff\xfe saved by an editor in UTF-16\n");
    fs::write(&paths.secrets, &bytes).expect("written");

    let error = store::load(&paths).expect_err("unreadable");
    let d = diagnose::config::store(&error);
    assert_eq!(d.id, "secrets-unreadable");
    assert!(d.cause.contains("not UTF-8"), "{}", d.cause);
    assert!(d.fix.contains("Save it as UTF-8, or restore a backup"), "{}", d.fix);
    assert_no_secret_value(&shown(&d));
}

#[test]
fn a_secrets_file_from_a_newer_mailgrant_says_to_update() {
    let (_dir, paths) = setup();
    store::save(&paths, &config(), &secrets()).expect("saved");
    let newer = fs::read_to_string(&paths.secrets)
        .expect("secrets")
        .replace("schema_version = 1", "schema_version = 3");
    fs::write(&paths.secrets, &newer).expect("written");

    let error = store::load(&paths).expect_err("newer");
    assert!(matches!(error, StoreError::NewerSchema { found: 3, supported: 1, .. }), "{error:?}");
    let d = diagnose::config::store(&error);
    assert_eq!(d.id, "secrets-newer-schema");
    assert!(d.fix.contains("Update mailgrant (and the service)"), "{}", d.fix);
    assert_no_secret_value(&shown(&d));
    assert_eq!(fs::read_to_string(&paths.secrets).expect("secrets"), newer, "left as it is");
}

#[test]
fn a_misspelt_config_key_is_named_with_its_line() {
    let (_dir, paths) = setup();
    store::save(&paths, &config(), &secrets()).expect("saved");
    let text = fs::read_to_string(&paths.config).expect("config");
    let typo = text.replacen("timeout_secs = ", "timout_secs = ", 1);
    assert_ne!(typo, text, "the config has timeout_secs");
    fs::write(&paths.config, &typo).expect("written");
    let line = typo.lines().position(|l| l.starts_with("timout_secs")).expect("line") + 1;

    let error = store::load(&paths).expect_err("unknown key");
    let d = diagnose::config::store(&error);
    assert_eq!(d.id, "config-unknown-key");
    assert!(d.summary.contains("`timout_secs`"), "{}", d.summary);
    assert!(d.fix.starts_with("Correct the key's spelling or remove it at "), "{}", d.fix);
    assert!(d.fix.contains(&format!("mailgrant.toml:{line}")), "{}", d.fix);
}

#[test]
fn an_invalid_config_value_is_named_with_its_key_and_line() {
    let (_dir, paths) = setup();
    store::save(&paths, &config(), &secrets()).expect("saved");
    let text = fs::read_to_string(&paths.config).expect("config");
    let line = text.lines().position(|l| l.starts_with("timeout_secs = ")).expect("line") + 1;
    let bad: String = text
        .lines()
        .map(|l| if l.starts_with("timeout_secs = ") { "timeout_secs = \"ten\"" } else { l })
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(&paths.config, &bad).expect("written");

    let error = store::load(&paths).expect_err("invalid value");
    let d = diagnose::config::store(&error);
    assert_eq!(d.id, "config-invalid-value");
    assert!(d.summary.contains("`timeout_secs`"), "{}", d.summary);
    assert!(d.fix.starts_with("Correct the value at "), "{}", d.fix);
    assert!(d.fix.contains(&format!("mailgrant.toml:{line}")), "{}", d.fix);
}

#[cfg(unix)]
#[test]
fn secrets_in_a_world_writable_folder_are_refused_with_the_chmod_to_run() {
    use std::os::unix::fs::PermissionsExt;

    let (dir, paths) = setup();
    store::save(&paths, &config(), &secrets()).expect("saved");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).expect("chmod");

    let error = store::load(&paths).expect_err("refused");
    let d = diagnose::config::store(&error);
    assert_eq!(d.id, "secrets-folder-world-writable");
    assert!(d.fix.contains(&format!("chmod o-w {}", dir.path().display())), "{}", d.fix);
    assert_no_secret_value(&shown(&d));

    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).expect("chmod");
    store::load(&paths).expect("loads after the fix");
}

#[test]
fn an_extra_ca_file_that_is_not_a_certificate_or_missing_names_the_setting() {
    use mailgrant::trust::Trust;

    let dir = tempfile::tempdir().expect("temp dir");
    let not_pem = dir.path().join("proxy-ca.der.txt");
    fs::write(&not_pem, "This is the proxy's root CA, export it as Base-64.\n").expect("write");
    let error = Trust::load(Some(&not_pem)).expect_err("no certificate");
    let d = diagnose::trust(&error);
    assert_eq!(d.id, "ca-file-invalid");
    assert!(d.summary.contains(&not_pem.display().to_string()), "{}", d.summary);
    assert!(d.fix.contains("Base-64 encoded X.509 (.pem or .cer)"), "{}", d.fix);

    let missing = dir.path().join("no-such-ca.pem");
    let error = Trust::load(Some(&missing)).expect_err("missing");
    let d = diagnose::trust(&error);
    assert_eq!(d.id, "ca-file-unreadable");
    assert!(d.summary.contains(&missing.display().to_string()), "{}", d.summary);
    assert!(d.cause.contains("There is no file at that path"), "{}", d.cause);
    assert!(d.fix.contains("extra_ca_file in the config), or clear that setting"), "{}", d.fix);
}

#[test]
fn a_secrets_path_that_is_not_a_plain_secrets_file_is_refused_without_harmful_advice() {
    use std::os::unix::fs::{PermissionsExt, symlink};

    let (dir, paths) = setup();
    store::save(&paths, &config(), &secrets()).expect("saved");
    let real = dir.path().join("real.secrets");
    fs::rename(&paths.secrets, &real).expect("moved");

    let refused = |what: &str| {
        let error = store::load(&paths).expect_err(what);
        let d = diagnose::config::store(&error);
        assert_eq!(d.id, "secrets-not-a-file", "{what}: {error}");
        assert!(d.cause.contains(what), "{what}: {}", d.cause);
        assert!(!d.fix.contains("chmod"), "no permission advice for another file: {}", d.fix);
        assert!(d.fix.contains("[secrets] path"), "{}", d.fix);
        assert_no_secret_value(&shown(&d));
    };

    // A symbolic link: a save would replace the link and leave its target with a dead token.
    symlink(&real, &paths.secrets).expect("symlink");
    refused("a symbolic link to");

    fs::remove_file(&paths.secrets).expect("unlink");
    fs::create_dir(&paths.secrets).expect("dir");
    refused("a folder");

    // Someone else's file, readable by all: never advise to chmod it.
    fs::remove_dir(&paths.secrets).expect("rmdir");
    fs::write(&paths.secrets, "root:x:0:0:root:/root:/bin/bash\n").expect("file");
    fs::set_permissions(&paths.secrets, fs::Permissions::from_mode(0o644)).expect("chmod");
    refused("not a mailgrant secrets file");

    fs::set_permissions(&paths.secrets, fs::Permissions::from_mode(0o600)).expect("chmod");
    fs::write(&paths.secrets, vec![b'#'; 2 * 1024 * 1024]).expect("big");
    refused("larger than 1024 KiB");

    // The link's target was never touched.
    let kept = fs::read_to_string(&real).expect("target");
    assert!(kept.contains("refresh_token"), "the real secrets are still there");
}

/// `mailgrant status` on `paths` after `edit` changed the saved config text.
fn status_after_edit(paths: &ConfigPaths, edit: impl Fn(&str) -> String) -> (Option<i32>, String) {
    store::save(paths, &config(), &secrets()).expect("saved");
    let text = fs::read_to_string(&paths.config).expect("config");
    fs::write(&paths.config, edit(&text)).expect("edited");
    let output = Command::new(env!("CARGO_BIN_EXE_mailgrant"))
        .args(["status", "--config"])
        .arg(&paths.config)
        .stdin(Stdio::null())
        .output()
        .expect("run mailgrant");
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn settings_that_parse_but_are_invalid_name_the_file_key_and_line() {
    let (_dir, paths) = setup();
    let (code, stderr) = status_after_edit(&paths, |text| text.replace("port = 587", "port = 0"));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains(&paths.config.display().to_string()), "{stderr}");
    let line = fs::read_to_string(&paths.config)
        .expect("config")
        .lines()
        .position(|l| l.trim() == "port = 0")
        .expect("edited line")
        + 1;
    assert!(stderr.contains(&format!("smtp.port (line {line})")), "{stderr}");
}

#[test]
fn an_unusable_extra_ca_file_is_a_config_problem_naming_the_setting() {
    let (dir, paths) = setup();
    let missing = dir.path().join("no-such-ca.pem");
    let (code, stderr) = status_after_edit(&paths, |text| {
        format!("extra_ca_file = \"{}\"\n{text}", missing.display())
            .replacen("schema_version = 1\n", "", 1)
            .replacen("extra_ca_file", "schema_version = 1\nextra_ca_file", 1)
    });
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("extra_ca_file (line 2): There is no file at that path"), "{stderr}");
}

#[test]
fn a_huge_file_at_the_config_path_is_refused_without_reading_it_all() {
    let (_dir, paths) = setup();
    fs::write(&paths.config, vec![b'#'; 3 * 1024 * 1024]).expect("big");
    let error = store::load_config(&paths).expect_err("too large");
    let d = diagnose::config::store(&error);
    assert_eq!(d.id, "config-unreadable");
    assert!(d.cause.contains("larger than 1 MiB"), "{}", d.cause);
    assert!(d.fix.contains("--config"), "{}", d.fix);
    assert_eq!(fs::metadata(&paths.config).expect("kept").len(), 3 * 1024 * 1024, "untouched");
}

#[test]
fn a_missing_backup_number_and_invalid_settings_have_their_own_diagnoses() {
    let (_dir, paths) = setup();
    store::save(&paths, &config(), &secrets()).expect("saved");

    let error = store::restore_backup(&paths, 99).expect_err("no backup 99");
    let d = diagnose::config::store(&error);
    assert_eq!(d.id, "backup-not-found", "{d:?}");
    assert!(d.to_text().contains("99"), "{}", d.to_text());

    let mut invalid = config();
    invalid.smtp.port = 0;
    let error = invalid.to_profile(&secrets()).expect_err("port 0").in_config_file(&paths.config);
    let d = diagnose::config::store(&error);
    assert_eq!(d.id, "config-invalid-settings");
    assert!(d.summary.contains(&paths.config.display().to_string()), "{}", d.summary);
    assert!(d.cause.contains("smtp.port"), "{}", d.cause);
}

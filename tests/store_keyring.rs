//! The `keyring` secrets store on the real OS keyring (on Linux the kernel keyring, keyutils):
//! round trip, rotation by many writers under the lock, a stale save keeping the newer token,
//! backups without secrets, restore, sign-out, switching between file and keyring, and a
//! support bundle that exports no secret.
//!
//! These tests fail, never skip, when the keyring is not usable here; the message says what is
//! needed.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use mailgrant::bundle;
use mailgrant::oauth::TokenSet;
use mailgrant::profile::ProfileForm;
use mailgrant::provider::ProviderKind;
use mailgrant::store::{
    self, ConfigPaths, Identities, KeyringEntry, Secrets, SecretsBackend, SecretsStore,
    ServiceConfig, StoreError,
};
use oauth2::{AccessToken, ClientSecret, RefreshToken};
use time::{Duration, OffsetDateTime, macros::datetime};

const CLIENT_SECRET: &str = "keyring~client~secret~Qm27";

/// Removes the entry when a test ends, pass or fail.
struct EntryGuard(KeyringEntry);

impl Drop for EntryGuard {
    fn drop(&mut self) {
        let _ = self.0.delete();
    }
}

/// A port nothing listens on, so the bundle's pre-flight checks reach only this machine.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

fn config(store: SecretsStore) -> ServiceConfig {
    let port = closed_port();
    let form = ProfileForm {
        provider: ProviderKind::Custom,
        client_id: "00000000-0000-0000-0000-00000000beef".into(),
        authorize_url: format!("http://127.0.0.1:{port}/authorize"),
        token_url: format!("http://127.0.0.1:{port}/token"),
        scopes: "offline_access".into(),
        mailbox: "alarms@example.com".into(),
        smtp_host: "127.0.0.1".into(),
        smtp_port: port.to_string(),
        imap_host: "127.0.0.1".into(),
        imap_port: port.to_string(),
        test_recipient: "alarms@example.com".into(),
        timeout_secs: "2".into(),
        ..ProfileForm::default()
    };
    let (profile, _) = form.validate().expect("valid form");
    let mut config =
        ServiceConfig::from_profile(&profile, &Identities::for_profile(&profile, None));
    config.secrets.store = store;
    config
}

fn tokens(n: u32, at: OffsetDateTime) -> TokenSet {
    TokenSet {
        access_token: AccessToken::new(format!("AT-keyring-{n:03}-Hs81")),
        access_expires_at: Some(at + Duration::hours(1)),
        refresh_token: Some(RefreshToken::new(format!("RT-keyring-{n:03}-Lw55"))),
        granted_scopes: Some(vec!["offline_access".into()]),
        identity: None,
        obtained_at: at,
    }
}

fn signed_in(n: u32) -> Secrets {
    let at = datetime!(2025-03-01 08:00 UTC);
    Secrets::from_sign_in(&tokens(n, at), Some(ClientSecret::new(CLIENT_SECRET.into())))
}

fn refresh_number(secrets: &Secrets) -> Option<u32> {
    let token = secrets.refresh_token.as_ref()?.secret();
    token.strip_prefix("RT-keyring-")?.get(..3)?.parse().ok()
}

/// Fails the test, saying what is needed, when the OS keyring does not work here.
fn require_keyring(paths: &ConfigPaths) -> EntryGuard {
    let entry = KeyringEntry::for_config(paths);
    let probe = ConfigPaths::for_config(&paths.dir().join("keyring-probe.toml"));
    let probe_entry = KeyringEntry::for_config(&probe);
    let mut config = config(SecretsStore::Keyring);
    config.test_recipient = "probe@example.com".into();
    let result = store::save(&probe, &config, &signed_in(0)).and_then(|()| store::load(&probe));
    let _ = probe_entry.delete();
    if let Err(error) = result {
        panic!(
            "the OS keyring is not usable here: {error}. The keyring store needs, on Linux, a \
             kernel with keyutils (CONFIG_KEYS) and a sandbox that allows the add_key and keyctl \
             system calls (Docker's default seccomp profile blocks them); on Windows, a user \
             profile with Credential Manager"
        );
    }
    EntryGuard(entry)
}

/// Waits (2 s at most) until a removed entry is gone: keyutils may still find an invalidated
/// key for a few milliseconds in the process that removed it.
fn gone(entry: &KeyringEntry) -> bool {
    let deadline = Instant::now() + StdDuration::from_secs(2);
    loop {
        match entry.exists() {
            Ok(false) => return true,
            Ok(true) if Instant::now() < deadline => {
                std::thread::sleep(StdDuration::from_millis(20))
            }
            Ok(true) => return false,
            Err(failure) => panic!("keyring read failed: {failure}"),
        }
    }
}

fn setup() -> (tempfile::TempDir, ConfigPaths) {
    let dir = tempfile::tempdir().expect("temp dir");
    let paths = ConfigPaths::for_config(&dir.path().join("alarm.toml"));
    (dir, paths)
}

#[test]
fn keyring_round_trip_rotation_under_the_lock_backups_restore_and_sign_out() {
    let (_dir, paths) = setup();
    let guard = require_keyring(&paths);

    let saved = store::save_with(
        &paths,
        &config(SecretsStore::Keyring),
        &signed_in(0),
        store::SaveOptions::default(),
    )
    .expect("saved");
    assert_eq!(saved.secrets_store, SecretsBackend::Keyring(guard.0.clone()));
    assert!(!paths.secrets.exists(), "a keyring setup wrote a secrets file");
    let config_text = std::fs::read_to_string(&paths.config).expect("config");
    assert!(config_text.contains("store = \"keyring\""), "{config_text}");
    assert!(!config_text.contains("path ="), "{config_text}");
    assert!(!config_text.contains("RT-keyring"), "{config_text}");

    let setup = store::load(&paths).expect("loads");
    assert_eq!(refresh_number(&setup.secrets), Some(0));
    assert_eq!(
        setup.secrets.client_secret.as_ref().map(|c| c.secret().as_str()),
        Some(CLIENT_SECRET)
    );

    // Four writers rotate ten times each. Under the lock each one re-reads the keyring, so every
    // rotation starts from the token the previous one stored: 40 distinct steps, none lost.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (paths, seen) = (paths.clone(), Arc::clone(&seen));
            std::thread::spawn(move || {
                for _ in 0..10 {
                    store::update_secrets_locked(&paths, |secrets| {
                        let n = refresh_number(secrets).ok_or("no refresh token")?;
                        let at = datetime!(2025-03-01 09:00 UTC) + Duration::minutes(i64::from(n));
                        secrets.apply_refresh(&tokens(n + 1, at));
                        seen.lock().map_err(|_| "poisoned")?.push(n);
                        Ok::<(), &str>(())
                    })
                    .expect("rotated");
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("worker");
    }
    let seen: BTreeSet<u32> = seen.lock().expect("seen").iter().copied().collect();
    assert_eq!(seen, (0..40).collect::<BTreeSet<u32>>(), "a rotation was lost or repeated");
    assert_eq!(refresh_number(&store::load(&paths).expect("loads").secrets), Some(40));

    // A save carrying the stale sign-in keeps the newer token in the keyring.
    let mut second = config(SecretsStore::Keyring);
    second.test_recipient = "second@example.com".into();
    let saved = store::save_with(&paths, &second, &signed_in(0), store::SaveOptions::default())
        .expect("saved again");
    assert!(saved.kept_newer_refresh_token);
    assert_eq!(refresh_number(&store::load(&paths).expect("loads").secrets), Some(40));

    // Backups of a keyring setup hold the config only; restoring one keeps the live token.
    let backups = store::list_backups(&paths).expect("backups");
    assert_eq!(backups.len(), 1);
    assert!(backups[0].backup.secrets.is_none(), "{:?}", backups[0].backup);
    assert!(!backups[0].has_refresh_token);
    let restored = store::restore_backup(&paths, backups[0].backup.number).expect("restored");
    assert_eq!(restored.config.test_recipient, "alarms@example.com");
    assert_eq!(refresh_number(&store::load(&paths).expect("loads").secrets), Some(40));
    for entry in std::fs::read_dir(&paths.backups).expect("backups folder") {
        let name = entry.expect("entry").file_name().to_string_lossy().into_owned();
        assert!(!name.contains("secrets"), "a keyring backup wrote {name}");
    }

    store::sign_out(&paths).expect("signed out");
    let after = store::load(&paths).expect("loads");
    assert!(after.secrets.refresh_token.is_none());
    assert_eq!(
        after.secrets.client_secret.as_ref().map(|c| c.secret().as_str()),
        Some(CLIENT_SECRET)
    );
}

#[test]
fn switching_between_file_and_keyring_moves_the_secrets_and_leaves_no_copy() {
    let (_dir, paths) = setup();
    let guard = require_keyring(&paths);

    store::save(&paths, &config(SecretsStore::File), &signed_in(7)).expect("file save");
    assert!(paths.secrets.exists());

    // The operator switches to the keyring and saves settings only (no tokens in hand): the
    // live token moves into the keyring and the plain file goes (its copy is backup 1).
    store::save(&paths, &config(SecretsStore::Keyring), &Secrets::default()).expect("to keyring");
    assert!(!paths.secrets.exists(), "the plain secrets file was left behind");
    assert_eq!(refresh_number(&store::load(&paths).expect("loads").secrets), Some(7));
    let backups = store::list_backups(&paths).expect("backups");
    assert!(backups[0].has_refresh_token, "the file's secrets were not kept in the backup");

    // A save from the wizard's form (default `[secrets]`) keeps the configured keyring.
    store::save(&paths, &config(SecretsStore::File), &Secrets::default()).expect("form save");
    let kept = store::load_config(&paths).expect("config");
    assert_eq!(kept.secrets.store, SecretsStore::Keyring);
    assert!(!paths.secrets.exists());

    // Back to a file, said explicitly: the file holds the token again, the entry is gone.
    let mut to_file = config(SecretsStore::File);
    to_file.secrets.path = Some("alarm.secrets.toml".into());
    store::save(&paths, &to_file, &Secrets::default()).expect("to file");
    assert!(paths.secrets.exists());
    assert_eq!(refresh_number(&store::load(&paths).expect("loads").secrets), Some(7));
    assert!(gone(&guard.0), "the keyring entry was left behind");
}

#[test]
fn a_missing_entry_is_told_apart_and_the_bundle_exports_no_secret() {
    let (_dir, paths) = setup();
    let guard = require_keyring(&paths);

    store::save(&paths, &config(SecretsStore::Keyring), &signed_in(3)).expect("saved");
    let json = bundle::build(&paths).to_json();
    for value in ["RT-keyring-003-Lw55", "AT-keyring-003-Hs81", CLIENT_SECRET] {
        assert!(!json.contains(value), "{value} is in the bundle");
    }
    assert!(json.contains("\"has_refresh_token\": true"), "{json}");
    assert!(json.contains("keyring entry service \\\"mailgrant\\\""), "{json}");

    assert_eq!(guard.0.delete(), Ok(true));
    assert!(gone(&guard.0), "the deleted entry is still found");
    let error = store::load(&paths).expect_err("no entry");
    assert!(matches!(error, StoreError::KeyringEntryMissing { .. }), "{error:?}");
    assert!(error.is_missing_secrets());
    let diagnosis = mailgrant::diagnose::config::store(&error);
    assert_eq!(diagnosis.id, "keyring-entry-missing");
    assert!(diagnosis.fix.contains("Sign in again"), "{}", diagnosis.fix);
}

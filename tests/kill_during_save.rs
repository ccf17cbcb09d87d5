//! A writer killed with SIGKILL at random points never leaves a broken setup (BR-17).
//!
//! A helper process (this test binary, re-run on its ignored helper test) writes a setup in a
//! loop, alternating the two writers the product has: a full `store::save` (config, secrets
//! and a numbered backup) and `store::update_secrets_locked` (a refresh rotating the token).
//! Each write is numbered: the config's test recipient says `round-N`, the secrets hold
//! `RT-N` and `AT-N`. The parent kills the helper at a random moment, hundreds of times, and
//! after every kill checks that config and secrets load cleanly and every backup file parses,
//! that the
//! secrets are one complete version (`AT-N` with `RT-N`), that the config is one that was
//! saved (it may lag: the secrets are renamed into place first, and refreshes touch only the
//! secrets), and that neither went back in time.

#![cfg(unix)]

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration as StdDuration, Instant};

use mailgrant::oauth::{IdentityClaims, TokenSet};
use mailgrant::profile::ProfileForm;
use mailgrant::store::{self, ConfigPaths, Identities, Secrets, ServiceConfig};
use oauth2::{AccessToken, ClientSecret, RefreshToken};
use time::{Duration, macros::datetime};

const ROUNDS: u32 = 300;
const HELPER_ENV: &str = "MAILGRANT_KILL_DURING_SAVE_CONFIG";

fn config(round: u64) -> ServiceConfig {
    let form = ProfileForm {
        tenant: "00000000-0000-0000-0000-000000000000".into(),
        client_id: "00000000-0000-0000-0000-000000000000".into(),
        mailbox: "alarms@example.com".into(),
        ..ProfileForm::default()
    };
    let (profile, _) = form.validate().expect("valid form");
    let mut config =
        ServiceConfig::from_profile(&profile, &Identities::for_profile(&profile, None));
    config.test_recipient = format!("round-{round}@example.com");
    config
}

fn tokens(round: u64) -> TokenSet {
    let at = datetime!(2025-03-01 08:00 UTC) + Duration::seconds(round as i64);
    TokenSet {
        access_token: AccessToken::new(format!("AT-{round}")),
        access_expires_at: Some(at + Duration::hours(1)),
        refresh_token: Some(RefreshToken::new(format!("RT-{round}"))),
        granted_scopes: Some(vec!["https://outlook.office.com/SMTP.Send".into()]),
        identity: Some(IdentityClaims {
            preferred_username: Some("alarms@example.com".into()),
            ..IdentityClaims::default()
        }),
        obtained_at: at,
    }
}

/// The write numbers a loaded setup carries: (config round, secrets round).
fn rounds_of(config: &ServiceConfig, secrets: &Secrets) -> (u64, u64) {
    let config_round = config
        .test_recipient
        .strip_prefix("round-")
        .and_then(|r| r.strip_suffix("@example.com"))
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("config is no version: {}", config.test_recipient));
    let refresh = secrets.refresh_token.as_ref().expect("a refresh token").secret();
    let access = secrets.access_token.as_ref().expect("an access token").secret();
    let secrets_round: u64 = refresh
        .strip_prefix("RT-")
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("secrets are no version"));
    assert_eq!(access, &format!("AT-{secrets_round}"), "secrets mix two versions");
    (config_round, secrets_round)
}

/// Child side: continues the numbering from what is on disk and writes until killed.
#[test]
#[ignore = "helper process for a_writer_killed_hundreds_of_times_always_leaves_a_whole_setup"]
fn kill_helper_write_forever() {
    let Ok(config_path) = std::env::var(HELPER_ENV) else {
        panic!("run only by a_writer_killed_hundreds_of_times_always_leaves_a_whole_setup");
    };
    let paths = ConfigPaths::for_config(Path::new(&config_path));
    let setup = store::load(&paths).expect("helper load");
    let (_, mut round) = rounds_of(&setup.config, &setup.secrets);
    let mut secrets = setup.secrets;
    #[allow(clippy::print_stdout, reason = "the parent waits for this line on the pipe")]
    {
        println!("ready");
    }

    loop {
        round += 1;
        if round % 2 == 0 {
            secrets.apply_refresh(&tokens(round));
            store::save(&paths, &config(round), &secrets).expect("save in helper");
        } else {
            let fresh = tokens(round);
            store::update_secrets_locked(&paths, |s| {
                s.apply_refresh(&fresh);
                Ok::<(), std::convert::Infallible>(())
            })
            .expect("update in helper");
            secrets.apply_refresh(&fresh);
        }
    }
}

fn spawn_helper(exe: &Path, paths: &ConfigPaths) -> Child {
    let mut child = Command::new(exe)
        .args(["--ignored", "--exact", "kill_helper_write_forever", "--test-threads=1"])
        .args(["--nocapture", "-q"])
        .env(HELPER_ENV, &paths.config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("helper started");
    // Wait until it has loaded the setup and is about to write.
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let ready = lines.any(|l| l.is_ok_and(|l| l.trim() == "ready"));
    assert!(ready, "the helper did not start");
    child
}

#[test]
fn a_writer_killed_hundreds_of_times_always_leaves_a_whole_setup() {
    let dir = tempfile::tempdir().expect("temp dir");
    let paths = ConfigPaths::for_config(&dir.path().join("mailgrant.toml"));
    let mut secrets = Secrets::from_sign_in(&tokens(0), Some(ClientSecret::new("CS-1".into())));
    secrets.apply_refresh(&tokens(0));
    store::save(&paths, &config(0), &secrets).expect("first save");
    let exe = std::env::current_exe().expect("test binary");

    let started = Instant::now();
    let (mut advanced, mut unchanged, mut mid_write, mut backups_checked) = (0u32, 0, 0u32, 0);
    let mut config_behind = std::collections::BTreeSet::new();
    let mut last = 0;
    let mut last_config = 0;
    let mut half_backups = std::collections::BTreeSet::new();
    for round in 0..ROUNDS {
        let mut child = spawn_helper(&exe, &paths);
        // A random moment within the write loop (a write with its fsyncs takes a few milliseconds).
        let delay = StdDuration::from_micros(rand::random_range(0..80_000));
        std::thread::sleep(delay);
        child.kill().expect("SIGKILL");
        let status = child.wait().expect("reaped");
        assert!(!status.success(), "round {round}: the helper must have been killed");
        if !temp_files(&paths).is_empty() {
            mid_write += 1;
        }

        let setup = store::load(&paths).unwrap_or_else(|e| panic!("round {round}: {e}"));
        let (config_round, secrets_round) = rounds_of(&setup.config, &setup.secrets);
        assert!(secrets_round >= last, "round {round}: went back from {last} to {secrets_round}");
        assert!(
            config_round <= secrets_round && config_round % 2 == 0,
            "round {round}: config {config_round} was never saved with secrets {secrets_round}"
        );
        assert!(config_round >= last_config, "round {round}: the config went back in time");
        // Killed between the secrets rename and the config rename of a save.
        if secrets_round % 2 == 0 && config_round < secrets_round {
            config_behind.insert(secrets_round);
        }
        last_config = config_round;
        if secrets_round > last {
            advanced += 1;
        } else {
            unchanged += 1;
        }
        last = secrets_round;

        // Every backup half present is whole. A kill between the two halves of a backup
        // leaves one half only; that is counted, not hidden.
        for info in store::list_backups(&paths).unwrap_or_else(|e| panic!("round {round}: {e}")) {
            let number = info.backup.number;
            if let Some(path) = &info.backup.config {
                let text = fs::read_to_string(path).expect("backup config");
                toml::from_str::<ServiceConfig>(&text)
                    .unwrap_or_else(|_| panic!("round {round}: backup {number} config is torn"));
            }
            if let Some(path) = &info.backup.secrets {
                let text = fs::read_to_string(path).expect("backup secrets");
                toml::from_str::<Secrets>(&text)
                    .unwrap_or_else(|_| panic!("round {round}: backup {number} secrets are torn"));
            }
            if info.backup.config.is_none() || info.backup.secrets.is_none() {
                half_backups.insert(number);
            }
            backups_checked += 1;
        }
    }
    let temps_left = temp_files(&paths).len();
    let took = started.elapsed();
    eprintln!(
        "kill during save: {ROUNDS} SIGKILLs, {ROUNDS} clean loads, 0 torn or mixed files; \
         {mid_write} kills left a half-written temp file, {advanced} came after a new write, \
         {unchanged} changed nothing; {} saves killed between the secrets and the config \
         rename (config one save behind); {last} writes in all; {backups_checked} backup \
         checks, {} backups with one half; {temps_left} temp files left; {:.1} s",
        config_behind.len(),
        half_backups.len(),
        took.as_secs_f64()
    );
    assert!(mid_write >= ROUNDS / 10, "too few kills hit a write: the test proved little");
    assert!(advanced >= ROUNDS / 10, "too few writes finished between kills");

    // The next writer under the lock removes the temp files killed writers left.
    store::save(&paths, &config(last + 2), &secrets_after(&paths)).expect("save after kills");
    assert!(temp_files(&paths).is_empty(), "{:?}", temp_files(&paths));
}

fn secrets_after(paths: &ConfigPaths) -> Secrets {
    store::load(paths).expect("load").secrets
}

fn temp_files(paths: &ConfigPaths) -> Vec<String> {
    [paths.dir(), paths.backups.clone()]
        .iter()
        .flat_map(|dir| fs::read_dir(dir).into_iter().flatten().filter_map(Result::ok))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect()
}

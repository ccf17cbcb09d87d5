//! The status view driven like a returning operator would: a setup written with the library
//! into a temporary folder, the window opened on it, widgets found by their labels and
//! clicked, and what the screen and the files on disk then hold asserted.
//!
//! Jobs run on the window's real worker threads, so the tests run frames until the worker's
//! report has arrived. Every host in these setups is 127.0.0.1 on a port nothing listens on,
//! or a provider host nothing here contacts (the forecast needs no network).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use egui::accesskit::Role;
use egui::{Key, Modifiers};
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use mailgrant::gui::wizard::sign_in::SignInState;
use mailgrant::gui::{GuiOptions, MailgrantApp, Step, View};
use mailgrant::oauth::{IdentityClaims, TokenSet};
use mailgrant::profile::ProfileForm;
use mailgrant::provider::ProviderKind;
use mailgrant::store::{self, ConfigPaths, Identities, Secrets, ServiceConfig};
use oauth2::{AccessToken, ClientSecret, RefreshToken};
use time::OffsetDateTime;

const MAILBOX: &str = "alarms@example.com";
const CLIENT_SECRET: &str = "Qx7~status-test.client_secret_51d0";
/// Wall-clock budget for each wait on a worker.
const DEADLINE: Duration = Duration::from_secs(60);

/// Whose token rules the setup follows.
#[derive(Clone, Copy)]
enum Provider {
    /// Microsoft 365 (nothing contacts it: no button that refreshes is pressed).
    Microsoft,
    /// A custom provider whose token endpoint is Google's (forecast only).
    Google,
    /// A custom provider on 127.0.0.1, on a port nothing listens on.
    LocalClosed,
}

/// One saved sign-in.
struct Setup<'a> {
    provider: Provider,
    mailbox: &'a str,
    account: &'a str,
    refresh: &'a str,
    access: &'a str,
    issued_at: OffsetDateTime,
    last_used_at: Option<OffsetDateTime>,
}

impl Setup<'_> {
    fn microsoft(issued_at: OffsetDateTime) -> Setup<'static> {
        Setup {
            provider: Provider::Microsoft,
            mailbox: MAILBOX,
            account: MAILBOX,
            refresh: "rt-status-test-0001-microsoft",
            access: "at-status-test-0001-microsoft",
            issued_at,
            last_used_at: None,
        }
    }
}

/// A port on 127.0.0.1 nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// Saves `setup` with the library, as the wizard's Save does.
fn save(paths: &ConfigPaths, setup: &Setup<'_>) {
    let port = closed_port().to_string();
    let local = format!("http://127.0.0.1:{port}/organizations/oauth2/v2.0");
    let mut form = match setup.provider {
        Provider::Microsoft => {
            ProfileForm { tenant: "contoso.onmicrosoft.com".into(), ..ProfileForm::default() }
        }
        Provider::Google | Provider::LocalClosed => ProfileForm {
            authorize_url: format!("{local}/authorize"),
            token_url: format!("{local}/token"),
            scopes: "https://outlook.office.com/SMTP.Send offline_access".into(),
            ..ProfileForm::for_provider(ProviderKind::Custom)
        },
    };
    form.client_id = "1b2c3d4e-0000-4000-8000-00000000abcd".into();
    form.mailbox = setup.mailbox.into();
    form.test_recipient = setup.mailbox.into();
    // No check runs against these unless a test presses a button that does.
    for (host, port_text) in
        [(&mut form.smtp_host, &mut form.smtp_port), (&mut form.imap_host, &mut form.imap_port)]
    {
        *host = "127.0.0.1".into();
        *port_text = port.clone();
    }
    let (profile, _) = form.validate().expect("valid test form");
    let identities = Identities {
        imap_user: setup.mailbox.into(),
        smtp_user: setup.account.into(),
        from: setup.mailbox.into(),
    };
    let mut config = ServiceConfig::from_profile(&profile, &identities);
    if let Provider::Google = setup.provider {
        config.oauth.token_url = "https://oauth2.googleapis.com/token".into();
    }

    let tokens = TokenSet {
        access_token: AccessToken::new(setup.access.into()),
        access_expires_at: Some(OffsetDateTime::now_utc() + time::Duration::hours(1)),
        refresh_token: Some(RefreshToken::new(setup.refresh.into())),
        granted_scopes: Some(vec!["https://outlook.office.com/SMTP.Send".into()]),
        identity: Some(IdentityClaims {
            preferred_username: Some(setup.account.into()),
            ..IdentityClaims::default()
        }),
        obtained_at: setup.issued_at,
    };
    let mut secrets = Secrets::from_sign_in(&tokens, Some(ClientSecret::new(CLIENT_SECRET.into())));
    secrets.refresh_token_last_used_at = setup.last_used_at;
    store::save(paths, &config, &secrets).expect("save the test setup");
}

/// A temporary folder with `mailgrant.toml` paths in it.
fn folder() -> (tempfile::TempDir, ConfigPaths) {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = ConfigPaths::for_config(&dir.path().join("mailgrant.toml"));
    (dir, paths)
}

/// The window opened on the config at `paths`, as `mailgrant --config PATH` opens it.
fn window(paths: &ConfigPaths) -> Harness<'static, MailgrantApp> {
    let config_path = Some(paths.config.clone());
    let mut harness = Harness::builder()
        .with_size([1100.0, 1600.0])
        .with_max_steps(10_000)
        .build_eframe(move |cc| MailgrantApp::new(cc, GuiOptions { config_path }));
    harness.run_steps(3);
    harness
}

/// Clicks a button, then lets the layout settle.
fn click(harness: &mut Harness<'_, MailgrantApp>, label: &str) {
    harness.get_by_role_and_label(Role::Button, label).click();
    harness.run_steps(4);
}

/// Runs frames with short sleeps (workers need real time) until `label` is on screen.
fn wait_for_label(harness: &mut Harness<'_, MailgrantApp>, label: &str) {
    let deadline = Instant::now() + DEADLINE;
    while harness.query_by_label_contains(label).is_none() {
        assert!(Instant::now() < deadline, "gave up waiting for {label:?}:\n{}", text(harness));
        harness.step();
        std::thread::sleep(Duration::from_millis(30));
    }
    harness.run_steps(3);
}

/// Every label and value in the accessibility tree.
fn text(harness: &Harness<'_, MailgrantApp>) -> String {
    let mut shown = String::new();
    for node in harness.root().children_recursive() {
        let node = node.accesskit_node();
        for part in [node.label(), node.value()].into_iter().flatten() {
            shown.push_str(&part);
            shown.push('\n');
        }
    }
    shown
}

/// Fails when any of `secrets` is on screen.
fn assert_no_secret_shown(harness: &Harness<'_, MailgrantApp>, secrets: &[&str]) {
    let shown = text(harness);
    for secret in secrets {
        assert!(!shown.contains(secret), "a secret value is on screen");
    }
}

/// `2025-03-01 08:00 UTC`, as the status view writes dates.
fn date_time(at: OffsetDateTime) -> String {
    format!("{} {:02}:{:02} UTC", at.date(), at.hour(), at.minute())
}

fn read_toml(path: &Path) -> toml::Table {
    let text = std::fs::read_to_string(path).expect("file written");
    text.parse().expect("file parses")
}

fn secrets_file(paths: &ConfigPaths) -> PathBuf {
    paths.dir().join("mailgrant.secrets.toml")
}

#[test]
fn microsoft_token_unused_for_80_days_is_warned_with_its_death_date_and_what_to_do() {
    let (_dir, paths) = folder();
    let now = OffsetDateTime::now_utc();
    let issued = now - time::Duration::days(80) - time::Duration::hours(1);
    save(&paths, &Setup::microsoft(issued));
    let mut harness = window(&paths);

    assert_eq!(harness.state().view(), View::Status, "a returning operator lands on Status");
    let death = issued + time::Duration::days(90);
    harness.get_by_label(&format!("{} (80 days ago)", date_time(issued)));
    harness.get_by_label("not yet: only the sign-in so far");
    harness.get_by_label(&format!("{} (in 9 days)", date_time(death)));
    harness.get_by_label("Microsoft: 90 days after its last use");
    harness.get_by_label(&format!("Warning: act before {} (see below)", death.date()));
    harness.get_by_label(&format!(
        "The refresh token dies on {} unless it is used before then (9 days left)",
        death.date()
    ));
    harness.get_by_label_contains("fetches a token at least weekly");
    // The access token's countdown: by the minute while more than ten minutes are left.
    harness.get_by_label_contains("valid for 60 min (until ");
    harness.get_by_label("not entered"); // client secret expiry

    // The countdown repaints when its text changes, never continuously: the window settles.
    let steps = harness.run();
    assert!(steps <= 4, "took {steps} frames to settle");
    assert_no_secret_shown(&harness, &[CLIENT_SECRET, "rt-status-test", "at-status-test"]);
}

#[test]
fn microsoft_token_redeemed_yesterday_is_healthy_and_dies_90_days_after_that() {
    let (_dir, paths) = folder();
    let now = OffsetDateTime::now_utc();
    let mut setup = Setup::microsoft(now - time::Duration::days(20));
    let redeemed = now - time::Duration::hours(30);
    setup.last_used_at = Some(redeemed);
    save(&paths, &setup);
    let harness = window(&paths);

    harness.get_by_label("Healthy: nothing to do");
    harness.get_by_label(&format!("{} (1 day ago)", date_time(redeemed)));
    let death = redeemed + time::Duration::days(90);
    harness.get_by_label(&format!("{} (in 88 days)", date_time(death)));
    assert!(harness.query_by_label_contains("Warning:").is_none(), "{}", text(&harness));
}

#[test]
fn br_15_google_app_in_testing_is_warned_from_day_5_with_the_day_7_limit() {
    let (_dir, paths) = folder();
    let issued = OffsetDateTime::now_utc() - time::Duration::days(5) - time::Duration::hours(2);
    let setup = Setup { provider: Provider::Google, ..Setup::microsoft(issued) };
    save(&paths, &setup);
    let harness = window(&paths);

    let death = issued + time::Duration::days(7);
    harness.get_by_label(&format!("{} (in 1 day)", date_time(death)));
    harness.get_by_label("Google: 7 days after issue if the app is in \"Testing\"");
    harness.get_by_label(&format!(
        "If the Google app is in \"Testing\", the refresh token dies on {} (7 days after sign-in)",
        death.date()
    ));
    harness.get_by_label_contains("set the publishing status to \"In production\"");
}

#[test]
fn backups_are_listed_and_restore_happens_only_after_confirmation() {
    let (_dir, paths) = folder();
    let now = OffsetDateTime::now_utc();
    // Three saves, three accounts: two backups. The first sign-in's refresh token is given the
    // newest issue date so the store's rule "never put back an older refresh token" (tested in
    // the store) does not come into play here; this test is about the window.
    let sites = [("a", 1), ("b", 3), ("c", 2)];
    for (name, hours_ago) in sites {
        let mailbox = format!("alarms-{name}@example.com");
        let account = format!("operator-{name}@example.com");
        let refresh = format!("rt-status-test-restore-{name}");
        let access = format!("at-status-test-restore-{name}");
        let setup = Setup {
            provider: Provider::LocalClosed,
            mailbox: &mailbox,
            account: &account,
            refresh: &refresh,
            access: &access,
            issued_at: now - time::Duration::hours(hours_ago),
            last_used_at: None,
        };
        save(&paths, &setup);
    }
    let mut harness = window(&paths);
    wait_for_label(&mut harness, "Backup 2");

    harness.get_by_label("Backup 1");
    harness.get_by_label("Backup 2");
    assert!(harness.query_by_label("Backup 3").is_none(), "3 saves keep 2 backups");
    harness.get_by_label("alarms-a@example.com");
    harness.get_by_label("operator-b@example.com");
    harness.get_by_label("operator-c@example.com"); // the current account

    // Restore… only asks; Cancel changes nothing.
    click(&mut harness, "Restore backup 1…");
    harness.get_by_label_contains("Restore backup 1, taken ");
    click(&mut harness, "Cancel the restore");
    assert!(harness.query_by_label_contains("Restore backup 1, taken ").is_none());
    harness.run_steps(20);
    assert_eq!(read_toml(&paths.config)["mailbox"].as_str(), Some("alarms-c@example.com"));
    assert_eq!(store::list_backups(&paths).expect("listed").len(), 2);

    // Confirmed: backup 1 is back on disk and on screen, and the replaced files are backup 3.
    click(&mut harness, "Restore backup 1…");
    click(&mut harness, "Restore backup 1");
    wait_for_label(&mut harness, "Backup 1 restored");
    harness.get_by_label("Backup 1 restored; the files it replaced are now backup 3");
    assert_eq!(read_toml(&paths.config)["mailbox"].as_str(), Some("alarms-a@example.com"));
    let secrets = read_toml(&secrets_file(&paths));
    assert_eq!(secrets["signed_in_account"].as_str(), Some("operator-a@example.com"));
    assert_eq!(secrets["refresh_token"].as_str(), Some("rt-status-test-restore-a"));
    wait_for_label(&mut harness, "Backup 3");
    let shown = text(&harness);
    assert!(shown.contains("Signed-in account\noperator-a@example.com"), "{shown}");
    assert_eq!(harness.state().form().mailbox, "alarms-a@example.com");
    assert_no_secret_shown(&harness, &[CLIENT_SECRET, "rt-status-test", "at-status-test"]);
}

#[test]
fn sign_out_asks_removes_the_refresh_token_on_disk_and_says_how_to_revoke() {
    let (_dir, paths) = folder();
    let issued = OffsetDateTime::now_utc() - time::Duration::days(3);
    save(&paths, &Setup::microsoft(issued));
    let mut harness = window(&paths);

    click(&mut harness, "Sign out…");
    harness.get_by_label(&mailgrant::diagnose::sign_out::question(MAILBOX));
    click(&mut harness, "Cancel the sign-out");
    harness.run_steps(20);
    let on_disk = read_toml(&secrets_file(&paths));
    assert_eq!(on_disk["refresh_token"].as_str(), Some("rt-status-test-0001-microsoft"));

    click(&mut harness, "Sign out…");
    click(&mut harness, "Remove the stored tokens");
    wait_for_label(&mut harness, "Signed out: the stored tokens of");

    let on_disk = read_toml(&secrets_file(&paths));
    assert!(!on_disk.contains_key("refresh_token"), "refresh token still on disk: {on_disk:?}");
    assert!(!on_disk.contains_key("access_token"), "access token still on disk");
    assert_eq!(on_disk["client_secret"].as_str(), Some(CLIENT_SECRET), "client secret kept");
    harness.get_by_label(&format!("Signed out: the stored tokens of {MAILBOX} were removed."));
    let revoke = harness.get_by_label_contains("https://myaccount.microsoft.com");
    let revoke = revoke.value().unwrap_or_default();
    assert!(revoke.contains("Sign out everywhere"), "{revoke}");
    assert!(revoke.contains("Enterprise applications"), "{revoke}");
    harness.get_by_role_and_label(Role::Button, "Copy revoke instructions");

    // The view now says nobody is signed in, and the wizard wants a new sign-in.
    harness.get_by_label_contains("Action needed now");
    harness.get_by_label("No refresh token is stored");
    assert!(!harness.state().is_done(Step::SignIn));
    let sign_out = harness.get_by_role_and_label(Role::Button, "Sign out…");
    assert!(sign_out.accesskit_node().is_disabled(), "Sign out… enabled with nothing to remove");
    assert_no_secret_shown(&harness, &[CLIENT_SECRET, "rt-status-test", "at-status-test"]);
}

#[test]
fn support_bundle_is_written_where_the_operator_says_and_holds_no_secret() {
    let (dir, paths) = folder();
    let issued = OffsetDateTime::now_utc() - time::Duration::days(2);
    let setup = Setup { provider: Provider::LocalClosed, ..Setup::microsoft(issued) };
    save(&paths, &setup);
    let mut harness = window(&paths);

    click(&mut harness, "Save support bundle…");
    let default = harness.get_by_label("Bundle file").value().unwrap_or_default();
    let prefix = format!("{}/mailgrant.support-", dir.path().display());
    assert!(default.starts_with(&prefix) && default.ends_with(".json"), "{default}");
    let stamp = &default[prefix.len()..default.len() - ".json".len()];
    assert_eq!(stamp.len(), "20250301-080000".len(), "{default}");

    let out = dir.path().join("for-support.json");
    harness.get_by_label("Bundle file").focus();
    harness.run_steps(2);
    harness.key_press_modifiers(Modifiers::COMMAND, Key::A);
    harness.get_by_label("Bundle file").type_text(&out.display().to_string());
    harness.run_steps(2);
    click(&mut harness, "Save bundle");
    wait_for_label(&mut harness, "Support bundle written to");

    harness.get_by_label(&format!("Support bundle written to {}", out.display()));
    let written = std::fs::read_to_string(&out).expect("bundle file exists");
    let json: serde_json::Value = serde_json::from_str(&written).expect("bundle parses as JSON");
    assert_eq!(json["bundle_format"], 1);
    assert_eq!(json["config"]["mailbox"], MAILBOX);
    assert_eq!(json["secrets"]["has_refresh_token"], true);
    for secret in [CLIENT_SECRET, setup.refresh, setup.access] {
        assert!(!written.contains(secret), "a secret value is in the bundle");
    }

    // A folder that does not exist: the diagnosis, with its fix, beside the button.
    click(&mut harness, "Save support bundle…");
    harness.get_by_label("Bundle file").focus();
    harness.run_steps(2);
    harness.key_press_modifiers(Modifiers::COMMAND, Key::A);
    let nowhere = dir.path().join("no-such-folder").join("b.json");
    harness.get_by_label("Bundle file").type_text(&nowhere.display().to_string());
    harness.run_steps(2);
    click(&mut harness, "Save bundle");
    wait_for_label(&mut harness, "The support bundle was not written");
    harness
        .get_by_label(&format!("The support bundle could not be written to {}", nowhere.display()));
    harness.get_by_label_contains("Choose a folder this user may write to");
}

#[test]
fn a_failing_check_shows_its_summary_cause_and_fix_in_verify_and_in_status() {
    let (_dir, paths) = folder();
    let issued = OffsetDateTime::now_utc() - time::Duration::days(2);
    let setup = Setup { provider: Provider::LocalClosed, ..Setup::microsoft(issued) };
    save(&paths, &setup);
    let mut harness = window(&paths);

    // Status: the refresh goes to a token endpoint nothing listens on.
    click(&mut harness, "Refresh token now");
    wait_for_label(&mut harness, "Token refresh failed");
    let shown = text(&harness);
    assert!(shown.contains("Cause:") && shown.contains("Fix:"), "{shown}");

    // Verify, from the saved setup: the SMTP check cannot connect.
    click(&mut harness, "4. Verify");
    assert_eq!(harness.state().view(), View::Wizard(Step::Verify));
    click(&mut harness, "Run the checks");
    let deadline = Instant::now() + DEADLINE;
    while harness.state().verify_running() {
        assert!(Instant::now() < deadline, "the checks did not finish");
        harness.step();
        std::thread::sleep(Duration::from_millis(30));
    }
    harness.run_steps(4);
    let failed: Vec<_> = harness
        .state()
        .verify_rows()
        .iter()
        .filter(|r| r.state.word() == "Failed")
        .cloned()
        .collect();
    assert!(!failed.is_empty(), "no check failed against closed ports");
    for row in &failed {
        let mailgrant::gui::wizard::verify::RowState::Failed(problem) = &row.state else {
            unreachable!()
        };
        let mailgrant::gui::wizard::verify::Problem::Diagnosed(d) = problem else {
            panic!("a fresh run has fresh diagnoses");
        };
        // The same cause may stand under several rows (every server on a closed port).
        for text in [&d.summary, &d.cause, &d.fix] {
            let shown = text.replace('→', ">");
            let found = harness.query_all_by_label(&shown).count();
            assert!(found >= 1, "{shown:?} is not shown under {}", row.label);
        }
    }
    harness.get_by_label_contains("Some checks did not pass");
    // A run of the saved settings as they are is recorded next to them.
    assert!(paths.dir().join("mailgrant.last-check.json").is_file(), "the run was not recorded");
}

/// The window at the size the operator first sees (no room to show the whole status view).
fn small_window(paths: &ConfigPaths) -> Harness<'static, MailgrantApp> {
    let config_path = Some(paths.config.clone());
    let mut harness = Harness::builder()
        .with_size([1040.0, 760.0])
        .with_max_steps(10_000)
        .build_eframe(move |cc| MailgrantApp::new(cc, GuiOptions { config_path }));
    harness.run_steps(3);
    harness
}

#[test]
fn support_bundle_path_field_is_wide_enough_to_read_and_scrolled_into_view() {
    // A config folder with a long path, as under a home directory's .config.
    let dir = tempfile::tempdir().expect("tempdir");
    let deep = dir.path().join("home-of-the-alarm-operator/.config/mailgrant-site-north-building");
    let paths = ConfigPaths::for_config(&deep.join("mailgrant.toml"));
    std::fs::create_dir_all(&deep).expect("config folder");
    let issued = OffsetDateTime::now_utc() - time::Duration::days(2);
    save(&paths, &Setup { provider: Provider::LocalClosed, ..Setup::microsoft(issued) });
    let mut harness = small_window(&paths);
    let screen = egui::Rect::from_min_size(egui::Pos2::ZERO, egui::vec2(1040.0, 760.0));

    // The button sits at the bottom of the view; the field it opens is brought into view,
    // its Save button included.
    click(&mut harness, "Save support bundle…");
    harness.run_steps(6);
    let field = harness.get_by_label("Bundle file");
    let path = field.value().unwrap_or_default();
    assert!(path.starts_with(&deep.display().to_string()) && path.ends_with(".json"), "{path}");
    let rect = field.rect();
    assert!(screen.contains_rect(rect), "the path field is outside the window: {rect:?}");
    let save_button = harness.get_by_role_and_label(Role::Button, "Save bundle").rect();
    assert!(screen.contains_rect(save_button), "Save bundle is outside: {save_button:?}");
    // Wide and wrapped: room for every character of the path (monospace, under 9 px each).
    let rows = (rect.height() / 16.0).floor();
    let chars = path.chars().count() as f32;
    assert!(rect.width() > 600.0, "{rect:?}");
    assert!(rect.width() * rows >= chars * 9.0, "{rect:?} is too small for {chars} characters");

    // The result is brought into view too.
    click(&mut harness, "Save bundle");
    wait_for_label(&mut harness, "Support bundle written to");
    harness.run_steps(4);
    let written = harness.get_by_label(&format!("Support bundle written to {path}")).rect();
    assert!(screen.intersects(written), "the result is outside the window: {written:?}");
    assert!(Path::new(&path).is_file(), "bundle not on disk");
}

/// `mailgrant login` run by another process: a new sign-in written with the library.
fn login_elsewhere(paths: &ConfigPaths, account: &str, refresh: &str) {
    let config = store::load_config(paths).expect("saved config");
    let tokens = TokenSet {
        access_token: AccessToken::new("at-status-test-elsewhere".into()),
        access_expires_at: Some(OffsetDateTime::now_utc() + time::Duration::hours(1)),
        refresh_token: Some(RefreshToken::new(refresh.into())),
        granted_scopes: Some(vec!["https://outlook.office.com/SMTP.Send".into()]),
        identity: Some(IdentityClaims {
            preferred_username: Some(account.into()),
            ..IdentityClaims::default()
        }),
        obtained_at: OffsetDateTime::now_utc(),
    };
    let secrets = Secrets::from_sign_in(&tokens, Some(ClientSecret::new(CLIENT_SECRET.into())));
    store::save(paths, &config, &secrets).expect("save the new sign-in");
}

/// Runs frames until `pred` holds for the screen text.
fn wait_for_text(harness: &mut Harness<'_, MailgrantApp>, what: &str, pred: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !pred(&text(harness)) {
        assert!(Instant::now() < deadline, "gave up waiting for {what}:\n{}", text(harness));
        harness.step();
        std::thread::sleep(Duration::from_millis(30));
    }
    harness.run_steps(3);
}

#[test]
fn a_sign_in_by_another_process_is_shown_on_focus_and_the_old_messages_go() {
    let (_dir, paths) = folder();
    let issued = OffsetDateTime::now_utc() - time::Duration::days(3);
    save(&paths, &Setup { provider: Provider::LocalClosed, ..Setup::microsoft(issued) });
    let mut harness = window(&paths);

    // A failed refresh, then a sign-out: both outcomes on screen.
    click(&mut harness, "Refresh token now");
    wait_for_label(&mut harness, "Token refresh failed");
    click(&mut harness, "Sign out…");
    click(&mut harness, "Remove the stored tokens");
    wait_for_label(&mut harness, "Signed out: the stored tokens of");
    assert!(text(&harness).contains("Signed-in account\nnobody"), "{}", text(&harness));

    // `mailgrant login` in a terminal; then the operator comes back to the window.
    login_elsewhere(&paths, "operator-new@example.com", "rt-status-test-elsewhere");
    harness.run_steps(5);
    assert!(text(&harness).contains("Signed-in account\nnobody"), "read without a cause");
    harness.event(egui::Event::WindowFocused(true));
    wait_for_text(&mut harness, "the new sign-in", |shown| {
        shown.contains("Signed-in account\noperator-new@example.com")
    });

    harness.get_by_label("Healthy: nothing to do");
    let shown = text(&harness);
    for stale in ["Signed out: the stored tokens", "Token refresh failed", "Action needed now"] {
        assert!(!shown.contains(stale), "{stale:?} still shown:\n{shown}");
    }
    let wizard = harness.state().sign_in_state();
    assert!(matches!(wizard, SignInState::SignedIn(_)), "the wizard did not take the sign-in");
    let sign_out = harness.get_by_role_and_label(Role::Button, "Sign out…");
    assert!(!sign_out.accesskit_node().is_disabled(), "Sign out… disabled with a token stored");
    assert_no_secret_shown(&harness, &[CLIENT_SECRET, "rt-status-test", "at-status-test"]);
}

#[test]
fn opening_the_status_view_rereads_tokens_rotated_by_another_process() {
    let (_dir, paths) = folder();
    let issued = OffsetDateTime::now_utc() - time::Duration::days(80) - time::Duration::hours(1);
    save(&paths, &Setup::microsoft(issued));
    let mut harness = window(&paths);
    harness.get_by_label("not yet: only the sign-in so far");
    harness.get_by_label_contains("Warning: act before");

    // The service redeemed the refresh token meanwhile (as `mailgrant token` does).
    let mut secrets = store::load(&paths).expect("saved setup").secrets;
    let redeemed = OffsetDateTime::now_utc() - time::Duration::hours(2);
    secrets.refresh_token_last_used_at = Some(redeemed);
    let config = store::load_config(&paths).expect("saved config");
    store::save(&paths, &config, &secrets).expect("record the redemption");

    click(&mut harness, "Log");
    click(&mut harness, "Status");
    wait_for_label(&mut harness, &format!("{} (2 hours ago)", date_time(redeemed)));
    harness.get_by_label("Healthy: nothing to do");
    assert!(harness.query_by_label("not yet: only the sign-in so far").is_none());

    // Nothing reads the files while nothing happens: the window settles.
    let steps = harness.run();
    assert!(steps <= 4, "took {steps} frames to settle");
}

#[test]
fn a_failed_check_of_unsaved_edits_is_not_recorded_for_the_saved_setup() {
    let (_dir, paths) = folder();
    let issued = OffsetDateTime::now_utc() - time::Duration::days(2);
    save(&paths, &Setup { provider: Provider::LocalClosed, ..Setup::microsoft(issued) });
    let record = paths.dir().join("mailgrant.last-check.json");
    let mut harness = window(&paths);
    harness.get_by_label("No checks recorded yet: run them from step 4 Verify");

    // An edit that is not saved: another (closed) SMTP port.
    click(&mut harness, "2. Mailbox (done)");
    let port = mailgrant::profile::Field::SmtpPort.label();
    harness.get_by_label(port).focus();
    harness.run_steps(2);
    harness.key_press_modifiers(Modifiers::COMMAND, Key::A);
    harness.get_by_label(port).type_text(&closed_port().to_string());
    harness.run_steps(4);
    click(&mut harness, "Next");
    click(&mut harness, "Next");
    assert_eq!(harness.state().view(), View::Wizard(Step::Verify));
    click(&mut harness, "Run the checks");
    let deadline = Instant::now() + DEADLINE;
    while harness.state().verify_running() {
        assert!(Instant::now() < deadline, "the checks did not finish");
        harness.step();
        std::thread::sleep(Duration::from_millis(30));
    }
    harness.run_steps(4);
    harness.get_by_label_contains("Some checks did not pass");

    // The saved setup was not checked: nothing is recorded next to it.
    assert!(!record.exists(), "a run of unsaved settings was recorded for the saved setup");
    click(&mut harness, "Status");
    harness.run_steps(10);
    harness.get_by_label("No checks recorded yet: run them from step 4 Verify");
}

//! The wizard driven like an operator would: fields found by their labels, typed into, buttons
//! clicked, and what the window shows asserted. No display or GPU needed (egui_kittest).
//!
//! Worker results (the browser sign-in) are fed in through the window's own reporter, the same
//! channel the worker threads use, so these tests need no network.

use std::time::{Duration, Instant};

use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use mailgrant::diagnose::{Diagnosis, Retry};
use mailgrant::gui::tasks::CancelHandle;
use mailgrant::gui::wizard::sign_in::{SignInState, SignInStep, SignedIn};
use mailgrant::gui::{GuiOptions, MailgrantApp, Step, View};
use mailgrant::oauth::{IdentityClaims, TokenSet};
use mailgrant::profile::Field;
use mailgrant::provider::ProviderKind;
use oauth2::{AccessToken, RefreshToken};
use time::OffsetDateTime;

const TENANT: &str = "contoso.onmicrosoft.com";
const CLIENT_ID: &str = "1b2c3d4e-0000-4000-8000-00000000abcd";
const MAILBOX: &str = "alarms@example.com";

/// The window with its config in a fresh folder (never the operator's real config).
fn harness() -> Harness<'static, MailgrantApp> {
    let dir = tempfile::tempdir().expect("tempdir");
    let config_path = Some(dir.path().join("mailgrant.toml"));
    // The folder lives as long as the test process; the tests never write into it.
    std::mem::forget(dir);
    Harness::builder()
        .with_size([1100.0, 900.0])
        .build_eframe(move |cc| MailgrantApp::new(cc, GuiOptions { config_path }))
}

fn sign_in_harness(state: SignInState) -> Harness<'static, SignInStep> {
    sign_in_harness_for(ProviderKind::Microsoft365, state)
}

fn sign_in_harness_for(provider: ProviderKind, state: SignInState) -> Harness<'static, SignInStep> {
    Harness::builder().with_size([900.0, 700.0]).build_ui_state(
        move |ui, step: &mut SignInStep| {
            let _ = step.ui(ui, MAILBOX, provider, true);
        },
        SignInStep { state },
    )
}

fn waiting_state() -> SignInState {
    SignInState::Waiting {
        attempt: 1,
        authorize_url: "http://127.0.0.1:9/authorize?client_id=x&state=y".to_owned(),
        redirect_uri: "http://localhost:53682/".to_owned(),
        started: Instant::now() - Duration::from_secs(75),
        cancel: CancelHandle::new(|| {}),
        browser_problem: None,
    }
}

fn choose_custom_provider(harness: &mut Harness<'_, MailgrantApp>) {
    harness.get_by_label("Provider").click();
    harness.run();
    harness.get_by_label("Custom OAuth2 provider").click();
    harness.run();
}

fn tokens_for(account: &str) -> TokenSet {
    TokenSet {
        access_token: AccessToken::new("access-token-value-for-test".to_owned()),
        access_expires_at: Some(OffsetDateTime::now_utc() + time::Duration::hours(1)),
        refresh_token: Some(RefreshToken::new("refresh-token-value-for-test".to_owned())),
        granted_scopes: Some(vec!["https://outlook.office.com/SMTP.Send".to_owned()]),
        identity: Some(IdentityClaims {
            preferred_username: Some(account.to_owned()),
            ..IdentityClaims::default()
        }),
        obtained_at: OffsetDateTime::now_utc(),
    }
}

fn type_into(harness: &mut Harness<'_, MailgrantApp>, field: Field, text: &str) {
    harness.get_by_label(field.label()).focus();
    harness.run();
    harness.get_by_label(field.label()).type_text(text);
    harness.run();
}

fn click(harness: &mut Harness<'_, MailgrantApp>, label: &str) {
    harness.get_by_role_and_label(Role::Button, label).click();
    harness.run();
}

fn fill_registration_and_mailbox(harness: &mut Harness<'_, MailgrantApp>) {
    type_into(harness, Field::Tenant, TENANT);
    type_into(harness, Field::ClientId, CLIENT_ID);
    click(harness, "Next");
    type_into(harness, Field::Mailbox, MAILBOX);
    click(harness, "Next");
}

#[test]
fn registration_step_lists_what_the_admin_must_register() {
    let harness = harness();
    harness.get_by_label("Ask your admin to register:");
    assert_eq!(harness.get_by_label("Redirect URI").value().as_deref(), Some("http://localhost"));
    assert_eq!(
        harness.get_by_label("Platform").value().as_deref(),
        Some("Mobile and desktop applications")
    );
    for name in ["IMAP.AccessAsUser.All", "SMTP.Send", "offline_access"] {
        harness.get_by_label(name);
        harness.get_by_role_and_label(Role::Button, &format!("Copy {}", name.to_lowercase()));
    }
    harness.get_by_label_contains("because the service runs unattended");
}

#[test]
fn email_typed_as_client_id_is_explained_under_the_field_as_you_type() {
    let mut harness = harness();
    assert!(harness.query_by_label_contains("looks like an e-mail address").is_none());

    type_into(&mut harness, Field::ClientId, "alarms@example.com");

    harness.get_by_label_contains("looks like an e-mail address, not an application ID");
}

#[test]
fn next_is_refused_while_a_field_has_an_error() {
    let mut harness = harness();
    click(&mut harness, "Next");

    assert_eq!(harness.state().view(), View::Wizard(Step::Registration));
    harness.get_by_label("Fix the fields marked in red to go on");
    harness.get_by_label_contains("Enter the Application (client) ID");
    assert!(!harness.state().is_done(Step::Registration));
}

#[test]
fn valid_registration_and_mailbox_lead_to_sign_in_with_steps_marked_done() {
    let mut harness = harness();
    fill_registration_and_mailbox(&mut harness);

    assert_eq!(harness.state().view(), View::Wizard(Step::SignIn));
    assert!(harness.state().is_done(Step::Registration));
    assert!(harness.state().is_done(Step::Mailbox));
    harness.get_by_label("1. Registration (done)");
    harness.get_by_label("2. Mailbox (done)");
    harness.get_by_label("3. Sign in");
    assert_eq!(harness.state().form().smtp_host, "smtp.office365.com");
    assert_eq!(harness.state().form().mailbox, MAILBOX);
}

#[test]
fn back_keeps_what_was_typed() {
    let mut harness = harness();
    type_into(&mut harness, Field::Tenant, TENANT);
    type_into(&mut harness, Field::ClientId, CLIENT_ID);
    click(&mut harness, "Next");
    click(&mut harness, "Back");

    assert_eq!(harness.state().view(), View::Wizard(Step::Registration));
    assert_eq!(harness.get_by_label(Field::ClientId.label()).value().as_deref(), Some(CLIENT_ID));
}

#[test]
fn client_secret_is_masked_until_shown() {
    let mut harness = harness();
    type_into(&mut harness, Field::ClientSecret, "abc8Q~secretvalue");
    let shown = harness.get_by_label(Field::ClientSecret.label()).value();
    assert_ne!(shown.as_deref(), Some("abc8Q~secretvalue"), "secret readable while masked");

    click(&mut harness, "Show client secret");
    let shown = harness.get_by_label(Field::ClientSecret.label()).value();
    assert_eq!(shown.as_deref(), Some("abc8Q~secretvalue"));
}

#[test]
fn custom_provider_asks_for_its_endpoints() {
    let mut harness = harness();
    assert!(harness.query_by_label(Field::AuthorizeUrl.label()).is_none());

    harness.get_by_label("Provider").click();
    harness.run();
    harness.get_by_label("Custom OAuth2 provider").click();
    harness.run();

    harness.get_by_label(Field::AuthorizeUrl.label());
    harness.get_by_label(Field::TokenUrl.label());
    harness.get_by_label(Field::Scopes.label());
    assert!(harness.query_by_label("Ask your admin to register:").is_none());
}

#[test]
fn waiting_for_the_browser_shows_elapsed_time_the_redirect_uri_and_cancels() {
    let mut harness = sign_in_harness(SignInState::Waiting {
        attempt: 1,
        authorize_url: "http://127.0.0.1:9/authorize?client_id=x&state=y".to_owned(),
        redirect_uri: "http://localhost:53682/".to_owned(),
        started: Instant::now() - Duration::from_secs(75),
        cancel: CancelHandle::new(|| {}),
        browser_problem: None,
    });
    // Settles: the clock asks for a repaint in a second, never for a continuous one.
    harness.run();

    harness.get_by_label_contains("Waiting for the browser… 1:15 (gives up after 5:00)");
    harness.get_by_label("http://localhost:53682/");
    harness.get_by_label_contains("must be registered as http://localhost under");
    harness.get_by_label_contains("AADSTS50011");
    let url = harness.get_by_label("Sign-in address (open it in a browser if none opened):");
    assert_eq!(url.value().as_deref(), Some("http://127.0.0.1:9/authorize?client_id=x&state=y"));
    harness.get_by_role_and_label(Role::Button, "Copy sign-in address");

    harness.get_by_role_and_label(Role::Button, "Cancel");
}

#[test]
fn a_failed_sign_in_shows_cause_and_fix() {
    let diagnosis = Diagnosis::new(
        "admin-consent-required",
        "An administrator must approve this app for your organization",
        "Users in this tenant may not consent to apps (AADSTS90095)",
        "Enterprise applications > the app > Permissions > Grant admin consent",
        Retry::Permanent,
    );
    let harness = sign_in_harness(SignInState::Failed(diagnosis));

    harness.get_by_label("An administrator must approve this app for your organization");
    harness.get_by_label("Users in this tenant may not consent to apps (AADSTS90095)");
    harness.get_by_label("Enterprise applications > the app > Permissions > Grant admin consent");
    harness.get_by_role_and_label(Role::Button, "Sign in with the browser…");
}

#[test]
fn br05_signed_in_as_another_account_asks_before_going_on() {
    let state = SignInState::SignedIn(SignedIn::new(
        tokens_for("it-admin@example.com"),
        Some("it-admin@example.com".to_owned()),
    ));
    let mut harness = sign_in_harness(state);

    harness
        .get_by_label("Signed in as it-admin@example.com, but the mailbox is alarms@example.com");
    harness.get_by_role_and_label(Role::Button, "Sign in again as alarms@example.com");
    assert!(!harness.state().is_complete(MAILBOX), "a mismatch must be decided first");

    let SignInState::SignedIn(signed_in) = &mut harness.state_mut().state else { unreachable!() };
    signed_in.shared_mailbox_confirmed = true;
    harness.run();
    assert!(harness.state().is_complete(MAILBOX));
    let SignInState::SignedIn(signed_in) = &harness.state().state else { unreachable!() };
    let identities = signed_in.identities(MAILBOX).expect("decided");
    assert_eq!(identities.imap_user, MAILBOX);
    assert_eq!(identities.from, MAILBOX);
    assert_eq!(identities.smtp_user, "it-admin@example.com");
}

#[test]
fn signed_in_as_the_mailbox_needs_no_decision() {
    let state = SignInState::SignedIn(SignedIn::new(
        tokens_for("Alarms@Example.com"),
        Some("Alarms@Example.com".to_owned()),
    ));
    let harness = sign_in_harness(state);
    harness.get_by_label("Signed in as Alarms@Example.com");
    assert!(harness.query_by_label_contains("but the mailbox is").is_none());
    assert!(harness.state().is_complete(MAILBOX));
}

#[test]
fn no_access_or_refresh_token_reaches_the_screen() {
    let state = SignInState::SignedIn(SignedIn::new(tokens_for(MAILBOX), Some(MAILBOX.to_owned())));
    let harness = sign_in_harness(state);
    for node in harness.root().children_recursive() {
        let node = node.accesskit_node();
        for text in [node.label(), node.value()].into_iter().flatten() {
            assert!(!text.contains("access-token-value"), "access token shown: {text}");
            assert!(!text.contains("refresh-token-value"), "refresh token shown: {text}");
        }
    }
}

#[test]
fn the_window_settles_and_asks_for_no_repaint_when_idle() {
    let mut harness = harness();
    // `run` stops only once no immediate repaint is requested; a busy loop would exceed the
    // step budget and panic.
    let steps = harness.run();
    assert!(steps <= 4, "took {steps} frames to settle");
}

#[test]
fn copy_puts_the_value_on_the_clipboard() {
    let mut harness = harness();
    harness.run();
    harness.get_by_role_and_label(Role::Button, "Copy redirect uri").click();
    harness.step();
    let copied: Vec<String> = harness
        .output()
        .platform_output
        .commands
        .iter()
        .filter_map(|command| match command {
            egui::OutputCommand::CopyText(text) => Some(text.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(copied, ["http://localhost"]);
}

#[test]
fn fix_fields_note_goes_away_once_no_field_is_red() {
    let mut harness = harness();
    click(&mut harness, "Next");
    harness.get_by_label("Fix the fields marked in red to go on");

    type_into(&mut harness, Field::Tenant, TENANT);
    harness.get_by_label("Fix the field marked in red to go on");
    type_into(&mut harness, Field::ClientId, CLIENT_ID);

    // No field is red any more: nothing asks to fix one, though Next was not pressed again.
    assert!(harness.query_by_label_contains("marked in red").is_none());
    assert!(harness.query_by_label_contains("Enter the Application (client) ID").is_none());
    assert_eq!(harness.state().view(), View::Wizard(Step::Registration));

    // While that refused Next stands, a field that turns red again brings the note back.
    type_into(&mut harness, Field::ClientId, "@");
    harness.get_by_label_contains("looks like an e-mail address");
    harness.get_by_label("Fix the field marked in red to go on");
}

#[test]
fn custom_provider_names_the_loopback_redirect_uri_to_register_with_copy() {
    let mut harness = harness();
    choose_custom_provider(&mut harness);

    harness.get_by_label("Register with your provider:");
    assert_eq!(harness.get_by_label("Redirect URI").value().as_deref(), Some("http://localhost"));
    let address = harness.get_by_label("Loopback address").value();
    assert_eq!(address.as_deref(), Some("http://127.0.0.1"));
    harness.get_by_role_and_label(Role::Button, "Copy redirect uri");
    harness.get_by_role_and_label(Role::Button, "Copy loopback address");
    harness.get_by_label_contains("any port");
    for microsoft in ["Mobile and desktop applications", "Entra", "Ask your admin to register:"] {
        assert!(harness.query_by_label_contains(microsoft).is_none(), "{microsoft} shown");
    }
}

#[test]
fn custom_provider_sign_in_waits_with_provider_neutral_words() {
    let harness = sign_in_harness_for(ProviderKind::Custom, waiting_state());

    harness.get_by_label("http://localhost:53682/");
    harness.get_by_label_contains("register http://localhost (any port, a loopback redirect)");
    harness.get_by_label_contains("the client's registration at the provider needs fixing");
    for microsoft in ["AADSTS", "Mobile and desktop", "app registration"] {
        assert!(harness.query_by_label_contains(microsoft).is_none(), "{microsoft} shown");
    }
}

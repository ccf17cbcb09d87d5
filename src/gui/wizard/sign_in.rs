//! Step ③: the browser sign-in and the account it produced.
//!
//! The state is an enum whose variants hold only what is valid at that point: the cancel
//! handle and the URLs exist only while the browser is pending; tokens only once signed in.
//! While waiting, the elapsed time is repainted once a second and only while this step is on
//! screen.

use std::time::{Duration, Instant};

use time::OffsetDateTime;

use crate::diagnose::Diagnosis;
use crate::gui::icons::{self, Icon};
use crate::gui::tasks::{Attempt, CancelHandle};
use crate::gui::wizard::registration::LOOPBACK_REDIRECT;
use crate::gui::{diagnosis, form, theme};
use crate::oauth::TokenSet;
use crate::provider::{MICROSOFT_REGISTERED_REDIRECT, ProviderKind};
use crate::store::{Identities, Secrets};

/// How long the sign-in waits for the browser before giving up.
pub const SIGN_IN_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// Where the sign-in stands.
#[derive(Debug, Default)]
pub enum SignInState {
    /// Nothing has run yet.
    #[default]
    Idle,
    /// The operator cancelled the last attempt.
    CancelledByOperator,
    /// The worker is binding the listener.
    Starting { attempt: Attempt },
    /// The browser was sent to the authorize URL; waiting for its redirect.
    Waiting {
        attempt: Attempt,
        authorize_url: String,
        redirect_uri: String,
        started: Instant,
        cancel: CancelHandle,
        browser_problem: Option<String>,
    },
    /// Cancel was pressed; waiting for the worker to let go of the listener.
    Cancelling { attempt: Attempt },
    /// The last attempt failed.
    Failed(Diagnosis),
    /// Tokens arrived.
    SignedIn(SignedIn),
}

/// A finished sign-in and the operator's decision about the account.
#[derive(Debug)]
pub struct SignedIn {
    pub tokens: TokenSet,
    /// The account the provider named, if it named one.
    pub account: Option<String>,
    /// The operator said the signed-in account may use the (different) mailbox.
    pub shared_mailbox_confirmed: bool,
    /// When the refresh token in `tokens` was issued and last redeemed.
    pub record: RefreshRecord,
}

/// When the refresh token the wizard holds was issued and last redeemed: what Save writes
/// next to it. The Verify step's refresh runs before Save, so Save must not write the tokens
/// down as an unused fresh sign-in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RefreshRecord {
    pub issued_at: Option<OffsetDateTime>,
    pub last_used_at: Option<OffsetDateTime>,
}

impl RefreshRecord {
    /// Tokens straight from a browser sign-in: issued then, never redeemed.
    pub fn signed_in(tokens: &TokenSet) -> RefreshRecord {
        RefreshRecord { issued_at: Some(tokens.obtained_at), last_used_at: None }
    }

    /// Tokens as the store keeps them.
    pub fn stored(secrets: &Secrets) -> RefreshRecord {
        RefreshRecord {
            issued_at: secrets.refresh_token_issued_at,
            last_used_at: secrets.refresh_token_last_used_at,
        }
    }

    /// After a successful refresh at `at`; a rotated refresh token was issued then.
    pub fn after_refresh(self, at: OffsetDateTime, rotated: bool) -> RefreshRecord {
        RefreshRecord {
            issued_at: if rotated { Some(at) } else { self.issued_at },
            last_used_at: Some(at),
        }
    }

    /// Writes these facts into `secrets` built from the same tokens.
    pub fn apply_to(&self, secrets: &mut Secrets) {
        if !secrets.has_refresh_token() {
            return;
        }
        if let Some(issued_at) = self.issued_at {
            secrets.refresh_token_issued_at = Some(issued_at);
        }
        secrets.refresh_token_last_used_at = self.last_used_at;
    }
}

impl SignedIn {
    /// A fresh browser sign-in, the account question not yet answered.
    pub fn new(tokens: TokenSet, account: Option<String>) -> SignedIn {
        let record = RefreshRecord::signed_in(&tokens);
        SignedIn { tokens, account, shared_mailbox_confirmed: false, record }
    }

    /// True when the signed-in account is a different one than the mailbox.
    pub fn account_differs(&self, mailbox: &str) -> bool {
        self.account.as_deref().is_some_and(|a| !a.trim().eq_ignore_ascii_case(mailbox.trim()))
    }

    /// The identities to use (IMAP user and From are the mailbox, the SMTP login is the
    /// signed-in account), or `None` while a mismatch waits for the operator's decision.
    pub fn identities(&self, mailbox: &str) -> Option<Identities> {
        if self.account_differs(mailbox) && !self.shared_mailbox_confirmed {
            return None;
        }
        let mailbox = mailbox.trim().to_owned();
        let smtp_user = self.account.clone().unwrap_or_else(|| mailbox.clone());
        Some(Identities { imap_user: mailbox.clone(), smtp_user, from: mailbox })
    }
}

/// What the operator asked for on this step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignInAction {
    Start,
    Cancel,
    /// The operator ticked (or unticked) "This is a shared mailbox I have access to".
    SetSharedMailbox(bool),
}

/// The sign-in step.
#[derive(Debug, Default)]
pub struct SignInStep {
    pub state: SignInState,
}

impl SignInStep {
    /// True when tokens are here and the account question is settled.
    pub fn is_complete(&self, mailbox: &str) -> bool {
        match &self.state {
            SignInState::SignedIn(signed_in) => signed_in.identities(mailbox).is_some(),
            _ => false,
        }
    }

    /// Draws the step for `provider`; `available` is false while the sign-in code cannot run.
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        mailbox: &str,
        provider: ProviderKind,
        available: bool,
    ) -> Option<SignInAction> {
        let mut action = None;
        ui.heading("Sign in");
        ui.add_space(6.0);

        match &self.state {
            SignInState::Idle | SignInState::CancelledByOperator | SignInState::Failed(_) => {
                ui.label(format!(
                    "Sign in as the mailbox {mailbox} in your browser. mailgrant receives the \
                     answer on this computer and keeps the tokens for the service"
                ));
                if let SignInState::CancelledByOperator = self.state {
                    ui.weak("The last sign-in was cancelled");
                }
                if let SignInState::Failed(d) = &self.state {
                    diagnosis::ui(ui, d);
                }
                ui.add_space(6.0);
                let start =
                    ui.add_enabled(available, egui::Button::new("Sign in with the browser…"));
                if start.clicked() {
                    action = Some(SignInAction::Start);
                }
            }
            SignInState::Starting { .. } => {
                ui.label("Preparing the sign-in…");
            }
            SignInState::Waiting {
                authorize_url, redirect_uri, started, browser_problem, ..
            } => {
                let waiting = Waiting { authorize_url, redirect_uri, started: *started };
                action = waiting_ui(ui, mailbox, provider, &waiting, browser_problem);
            }
            SignInState::Cancelling { .. } => {
                ui.label("Cancelling…");
            }
            SignInState::SignedIn(signed_in) => {
                action = signed_in_ui(ui, signed_in, mailbox, available);
            }
        }
        action
    }
}

/// The pending sign-in as the waiting screen shows it.
struct Waiting<'a> {
    authorize_url: &'a str,
    redirect_uri: &'a str,
    started: Instant,
}

fn waiting_ui(
    ui: &mut egui::Ui,
    mailbox: &str,
    provider: ProviderKind,
    waiting: &Waiting<'_>,
    browser_problem: &Option<String>,
) -> Option<SignInAction> {
    let Waiting { authorize_url, redirect_uri, started } = *waiting;
    let elapsed = started.elapsed();
    // The only timer in the wizard: redraw the clock once a second while this is on screen.
    ui.ctx().request_repaint_after(Duration::from_secs(1));

    ui.label(
        egui::RichText::new(format!(
            "Waiting for the browser… {} (gives up after {})",
            clock(elapsed),
            clock(SIGN_IN_TIMEOUT)
        ))
        .strong(),
    );
    ui.label(format!("Sign in as {mailbox} in the browser window and accept the permissions"));
    if let Some(problem) = browser_problem {
        let text = format!("The browser did not open ({problem}). Open the address below yourself");
        ui.colored_label(theme::warning_color(ui), text);
    }

    ui.add_space(8.0);
    let label = ui.label("Sign-in address (open it in a browser if none opened):");
    ui.horizontal(|ui| {
        let mut shown = authorize_url;
        let edit = egui::TextEdit::multiline(&mut shown)
            .desired_rows(3)
            .desired_width(ui.available_width() - 80.0)
            .font(egui::TextStyle::Monospace);
        ui.add(edit).labelled_by(label.id);
        form::copy_button(ui, "sign-in address", authorize_url);
    });

    ui.add_space(4.0);
    ui.horizontal_wrapped(|ui| {
        ui.label("Redirect URI in use:");
        ui.monospace(redirect_uri);
    });
    redirect_help_ui(ui, provider);

    ui.add_space(8.0);
    if ui.button("Cancel").clicked() { Some(SignInAction::Cancel) } else { None }
}

/// Where the redirect URI must be registered, and what a browser error means, in the words of
/// the provider in use.
fn redirect_help_ui(ui: &mut egui::Ui, provider: ProviderKind) {
    match provider {
        ProviderKind::Microsoft365 => {
            ui.label(format!(
                "It must be registered as {MICROSOFT_REGISTERED_REDIRECT} under \"Mobile and \
                 desktop applications\" in the app registration"
            ));
            ui.weak(
                "If nothing happens after you sign in, look at the browser: an error there (such \
                 as AADSTS50011, a redirect URI mismatch) or a page asking for admin approval \
                 means the app registration needs fixing. Another program's client ID will not \
                 work",
            );
        }
        ProviderKind::Custom => {
            ui.label(format!(
                "The provider must accept it: register {LOOPBACK_REDIRECT} (any port, a \
                 loopback redirect) for this client ID"
            ));
            ui.weak(
                "If nothing happens after you sign in, look at the browser: an error there (such \
                 as a redirect URI mismatch) or a page asking for an administrator's approval \
                 means the client's registration at the provider needs fixing. Another \
                 program's client ID will not work",
            );
        }
    }
}

fn signed_in_ui(
    ui: &mut egui::Ui,
    signed_in: &SignedIn,
    mailbox: &str,
    available: bool,
) -> Option<SignInAction> {
    let mut action = None;
    let who = signed_in.account.as_deref().unwrap_or("an account the provider did not name");
    icons::line(ui, Icon::Passed, format!("Signed in as {who}"));
    if let Some(scopes) = &signed_in.tokens.granted_scopes {
        ui.weak(format!("Granted: {}", scopes.join(" ")));
    }
    if signed_in.account.is_none() {
        ui.colored_label(
            theme::warning_color(ui),
            "The provider did not say which account signed in; the mailbox is used as the login",
        );
    }

    if signed_in.account_differs(mailbox) {
        ui.add_space(8.0);
        egui::Frame::group(ui.style()).inner_margin(10.0).show(ui, |ui| {
            let text = format!("Signed in as {who}, but the mailbox is {mailbox}");
            ui.label(egui::RichText::new(text).strong().color(theme::warning_color(ui)));
            ui.label(
                "The service would send and read mail as this account. That only works if it has \
                 rights on the mailbox (a shared mailbox or delegation)",
            );
            ui.add_space(4.0);
            ui.horizontal(|ui| {
                let again = format!("Sign in again as {mailbox}");
                if ui.add_enabled(available, egui::Button::new(again)).clicked() {
                    action = Some(SignInAction::Start);
                }
                let mut confirmed = signed_in.shared_mailbox_confirmed;
                let shared = "This is a shared mailbox I have access to";
                if ui.checkbox(&mut confirmed, shared).changed() {
                    action = Some(SignInAction::SetSharedMailbox(confirmed));
                }
            });
        });
    } else {
        ui.add_space(6.0);
        ui.label("Go on with Next to prove each permission on the mail servers");
        ui.add_space(6.0);
        if ui.add_enabled(available, egui::Button::new("Sign in again…")).clicked() {
            action = Some(SignInAction::Start);
        }
    }
    action
}

/// `m:ss`, as the waiting screen shows elapsed time.
pub fn clock(duration: Duration) -> String {
    let secs = duration.as_secs();
    format!("{}:{:02}", secs / 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_shows_minutes_and_padded_seconds() {
        assert_eq!(clock(Duration::from_secs(0)), "0:00");
        assert_eq!(clock(Duration::from_secs(65)), "1:05");
        assert_eq!(clock(SIGN_IN_TIMEOUT), "5:00");
    }
}

//! The status view a returning operator lands on: account, mailbox, granted scopes, the token
//! health forecast, the last checks, buttons to try sending, reading and refreshing now, sign
//! out, the numbered backups with restore, and the support bundle.
//!
//! The forecast is made for the moment each frame is drawn, from the saved settings and
//! secrets; the only timer is the access-token countdown ([`token_health`]), at most once a
//! second while it runs. Buttons that change the stored setup ask first and run on worker threads.

use std::path::Path;

use time::OffsetDateTime;

use crate::diagnose::Diagnosis;
use crate::forecast;
use crate::gui::backups::{BackupsAction, BackupsPanel};
use crate::gui::icons::{self, Icon};
use crate::gui::jobs::Startup;
use crate::gui::sign_out::SignOutPanel;
use crate::gui::support_bundle::{BundleAction, BundlePanel};
use crate::gui::tasks::Attempt;
use crate::gui::token_health::{self, date_time};
use crate::gui::wizard::verify::{self, CheckRow};
use crate::gui::{diagnosis, theme};
use crate::store::{Secrets, ServiceConfig};

/// What the status view shows, gathered from the saved setup.
#[derive(Clone, Debug)]
pub struct StatusData {
    pub account: Option<String>,
    pub mailbox: String,
    pub test_recipient: String,
    pub granted_scopes: Option<Vec<String>>,
    /// The saved settings the forecast is made from.
    pub config: ServiceConfig,
    /// The saved secrets the forecast is made from (never drawn).
    pub secrets: Secrets,
    pub last_checks: Vec<CheckRow>,
    pub last_checked_at: Option<OffsetDateTime>,
}

/// What the operator asked for on the status view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StatusAction {
    SendTestEmail {
        to: String,
    },
    CheckInbox,
    RefreshNow,
    SignInAgain,
    /// Remove the stored tokens; the operator confirmed.
    SignOut,
    Backups(BackupsAction),
    Bundle(BundleAction),
}

/// Outcome of the last button pressed.
#[derive(Clone, Debug)]
pub struct ActionOutcome {
    pub title: String,
    pub result: Result<String, Diagnosis>,
}

/// The status view.
#[derive(Debug, Default)]
pub struct StatusPanel {
    /// What to show; `None` when there is no usable setup.
    pub data: Option<StatusData>,
    /// Where the setup was loaded from or saved to.
    pub source: Option<String>,
    /// A config that exists but did not load.
    pub load_problem: Option<Diagnosis>,
    /// Address typed for "Send test email"; empty means the configured recipient.
    pub send_to: String,
    /// The check button job in progress.
    pub busy: Option<Attempt>,
    /// The check the last button ran, live while it runs.
    pub action_rows: Vec<CheckRow>,
    pub last_outcome: Option<ActionOutcome>,
    pub sign_out: SignOutPanel,
    pub backups: BackupsPanel,
    pub bundle: BundlePanel,
}

impl StatusPanel {
    /// Forgets what earlier actions said: the setup they described was replaced (a new sign-in
    /// saved, a backup restored, a sign-out, or another program changed it).
    pub fn setup_replaced(&mut self) {
        self.last_outcome = None;
        self.action_rows.clear();
        self.sign_out.confirming = false;
        self.sign_out.outcome = None;
        self.backups.confirming = None;
        self.backups.last_restore = None;
        self.bundle.outcome = None;
    }

    /// True when `found` on disk is the setup this view shows: the same settings and the same
    /// sign-in. A refresh by the service (a rotated or redeemed token) is the same setup; a new
    /// sign-in, a sign-out or other settings are not.
    pub fn shows_same(&self, found: &Startup) -> bool {
        match (found, &self.data) {
            (Startup::Loaded(setup), Some(data)) => {
                let (shown, disk) = (&data.secrets, &setup.secrets);
                let fresh_sign_in = disk.refresh_token_last_used_at.is_none()
                    && disk.refresh_token_issued_at != shown.refresh_token_issued_at;
                data.config == setup.config
                    && shown.signed_in_account == disk.signed_in_account
                    && shown.has_refresh_token() == disk.has_refresh_token()
                    && shown.needs_sign_in == disk.needs_sign_in
                    && !fresh_sign_in
            }
            (Startup::SecretsUnusable { problem, .. } | Startup::Broken(problem), None) => {
                self.load_problem.as_ref().is_some_and(|shown| shown.id == problem.id)
            }
            (Startup::Nothing, None) => self.load_problem.is_none(),
            _ => false,
        }
    }

    /// True while any job started from this view runs.
    pub fn job_running(&self) -> bool {
        self.busy.is_some()
            || self.sign_out.running.is_some()
            || self.backups.restoring.is_some()
            || self.bundle.writing.is_some()
    }

    /// Draws the view. `available` is false while the check buttons cannot run (nothing
    /// saved); `config_dir` is `None` when there is no config location at all.
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        available: bool,
        config_dir: Option<&Path>,
    ) -> Option<StatusAction> {
        ui.heading("Status");
        ui.add_space(6.0);
        if let Some(source) = &self.source {
            ui.horizontal_wrapped(|ui| {
                ui.label("Config:");
                ui.add(egui::Label::new(egui::RichText::new(source).monospace()).selectable(true));
            });
        }
        if let Some(problem) = &self.load_problem {
            ui.label("The saved config could not be loaded:");
            diagnosis::ui(ui, problem);
        }
        let has_setup = self.data.is_some() || self.load_problem.is_some();
        let mut action = match &self.data {
            Some(_) => self.setup_ui(ui, available, config_dir.is_some()),
            None if self.load_problem.is_some() => None,
            None => {
                ui.label(
                    "No setup yet. Go through the steps on the left, starting with 1 \
                     Registration",
                );
                None
            }
        };

        let Some(config_dir) = config_dir.filter(|_| has_setup) else { return action };
        let enabled = !self.job_running();
        ui.add_space(12.0);
        ui.separator();
        if let Some(backups) = self.backups.ui(ui, enabled) {
            action = Some(StatusAction::Backups(backups));
        }
        ui.add_space(12.0);
        ui.separator();
        if let Some(bundle) = self.bundle.ui(ui, config_dir) {
            action = Some(StatusAction::Bundle(bundle));
        }
        action
    }

    /// Account, token health, buttons and the last checks of a setup that loads.
    fn setup_ui(
        &mut self,
        ui: &mut egui::Ui,
        available: bool,
        has_location: bool,
    ) -> Option<StatusAction> {
        let data = self.data.as_ref()?;
        egui::Grid::new("status").num_columns(2).spacing([16.0, 6.0]).show(ui, |ui| {
            ui.label("Signed-in account");
            ui.label(data.account.as_deref().unwrap_or("nobody"));
            ui.end_row();
            ui.label("Mailbox");
            ui.label(&data.mailbox);
            ui.end_row();
            ui.label("Granted scopes");
            let scopes = data.granted_scopes.as_ref().map(|s| s.join(" "));
            ui.add(egui::Label::new(scopes.unwrap_or_else(|| "not reported".to_owned())).wrap());
            ui.end_row();
        });

        ui.add_space(10.0);
        let forecast = forecast::forecast(&data.config, &data.secrets, OffsetDateTime::now_utc());
        token_health::ui(ui, &forecast);

        ui.add_space(10.0);
        let running = self.job_running();
        let can_sign_out = has_location && forecast.has_refresh_token && !running;
        let buttons = Buttons { running, available, can_sign_out };
        let (mut action, ask_sign_out) = buttons.ui(ui, &mut self.send_to, data);
        if ask_sign_out {
            self.sign_out.confirming = true;
            self.sign_out.outcome = None;
        }
        if self.sign_out.ui(ui, &data.mailbox, !running) {
            action = Some(StatusAction::SignOut);
        }

        // The last button's check as a checklist row (it carries its own cause and fix), or
        // for the refresh, which is no check, one line.
        let rows_ran = self.action_rows.iter().any(|r| r.state.is_final() || self.busy.is_some());
        if rows_ran {
            ui.add_space(6.0);
            verify::checklist_ui(ui, "action_checks", &self.action_rows);
        } else if let Some(outcome) = &self.last_outcome {
            ui.add_space(6.0);
            match &outcome.result {
                Ok(text) => {
                    icons::line(ui, Icon::Passed, format!("{}: {text}", outcome.title));
                }
                Err(d) => {
                    icons::line(ui, Icon::Failed, format!("{} failed", outcome.title));
                    diagnosis::ui(ui, d);
                }
            }
        }

        ui.add_space(12.0);
        ui.separator();
        match data.last_checked_at {
            Some(at) => ui.strong(format!("Last recorded checks, {}", date_time(at))),
            None => ui.strong("No checks recorded yet: run them from step 4 Verify"),
        };
        verify::checklist_ui(ui, "last_checks", &data.last_checks);
        action
    }
}

/// Which of the view's buttons can be pressed.
struct Buttons {
    /// A job started from this view runs.
    running: bool,
    /// A saved setup with tokens is there for the check buttons.
    available: bool,
    can_sign_out: bool,
}

impl Buttons {
    /// The check buttons, the "send to" field, Sign in again… and Sign out…; the second value
    /// is true when Sign out… was clicked (it asks before anything happens).
    fn ui(
        &self,
        ui: &mut egui::Ui,
        send_to: &mut String,
        data: &StatusData,
    ) -> (Option<StatusAction>, bool) {
        let mut action = None;
        let mut ask_sign_out = false;
        let enabled = self.available && !self.running;
        ui.horizontal(|ui| {
            let to = if send_to.trim().is_empty() {
                data.test_recipient.clone()
            } else {
                send_to.trim().to_owned()
            };
            let valid = to.contains('@') && !to.contains(char::is_whitespace);
            let send = ui.add_enabled(enabled && valid, egui::Button::new("Send test email"));
            if send.clicked() {
                action = Some(StatusAction::SendTestEmail { to });
            }
            let label = ui.label("to");
            let edit = egui::TextEdit::singleline(send_to)
                .hint_text(&data.test_recipient)
                .desired_width(260.0);
            ui.add(edit).labelled_by(label.id).accessible_name("Send test email to");
            if !valid {
                ui.colored_label(theme::error_color(ui), "not an e-mail address");
            }
        });
        ui.horizontal(|ui| {
            if ui.add_enabled(enabled, egui::Button::new("Check inbox")).clicked() {
                action = Some(StatusAction::CheckInbox);
            }
            if ui.add_enabled(enabled, egui::Button::new("Refresh token now")).clicked() {
                action = Some(StatusAction::RefreshNow);
            }
            if ui.add_enabled(!self.running, egui::Button::new("Sign in again…")).clicked() {
                action = Some(StatusAction::SignInAgain);
            }
            if ui.add_enabled(self.can_sign_out, egui::Button::new("Sign out…")).clicked() {
                ask_sign_out = true;
            }
            if self.running {
                ui.spinner();
            }
        });
        (action, ask_sign_out)
    }
}

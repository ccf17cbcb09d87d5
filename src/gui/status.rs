//! The status view a returning operator lands on: account, mailbox, granted scopes, how long
//! the access token still lives, the refresh token's history, the last checks, and buttons to
//! try sending, reading and refreshing now.
//!
//! The expiry countdown repaints once a second, only while this view is shown and the token
//! has not yet expired.

use std::time::Duration;

use time::OffsetDateTime;

use crate::diagnose::Diagnosis;
use crate::gui::icons::{self, Icon};
use crate::gui::tasks::Attempt;
use crate::gui::wizard::verify::{self, CheckRow};
use crate::gui::{diagnosis, theme};

/// What the status view shows, gathered from the saved config or the wizard.
#[derive(Clone, Debug, Default)]
pub struct StatusData {
    pub account: Option<String>,
    pub mailbox: String,
    pub test_recipient: String,
    pub granted_scopes: Option<Vec<String>>,
    pub access_expires_at: Option<OffsetDateTime>,
    pub has_refresh_token: bool,
    pub refresh_obtained_at: Option<OffsetDateTime>,
    pub refresh_last_used_at: Option<OffsetDateTime>,
    pub last_checks: Vec<CheckRow>,
    pub last_checked_at: Option<OffsetDateTime>,
}

/// What the operator asked for on the status view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StatusAction {
    SendTestEmail { to: String },
    CheckInbox,
    RefreshNow,
    SignInAgain,
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
    /// What to show; `None` when there is no setup yet.
    pub data: Option<StatusData>,
    /// Where the setup was loaded from or saved to.
    pub source: Option<String>,
    /// A config that exists but did not load.
    pub load_problem: Option<Diagnosis>,
    /// Address typed for "Send test email"; empty means the configured recipient.
    pub send_to: String,
    /// The button job in progress.
    pub busy: Option<Attempt>,
    pub last_outcome: Option<ActionOutcome>,
}

impl StatusPanel {
    /// Draws the view; `available` is false while the buttons cannot run.
    pub fn ui(&mut self, ui: &mut egui::Ui, available: bool) -> Option<StatusAction> {
        ui.heading("Status");
        ui.add_space(6.0);
        if let Some(problem) = &self.load_problem {
            ui.label("The saved config could not be loaded:");
            diagnosis::ui(ui, problem);
        }
        let Some(data) = &self.data else {
            ui.label(
                "No setup yet. Go through the steps on the left, starting with 1 Registration",
            );
            return None;
        };
        if let Some(source) = &self.source {
            ui.horizontal(|ui| {
                ui.label("Config:");
                ui.monospace(source);
            });
        }

        let now = OffsetDateTime::now_utc();
        egui::Grid::new("status").num_columns(2).spacing([16.0, 6.0]).show(ui, |ui| {
            ui.label("Signed-in account");
            ui.label(data.account.as_deref().unwrap_or("unknown"));
            ui.end_row();
            ui.label("Mailbox");
            ui.label(&data.mailbox);
            ui.end_row();
            ui.label("Granted scopes");
            let scopes = data.granted_scopes.as_ref().map(|s| s.join(" "));
            ui.add(egui::Label::new(scopes.unwrap_or_else(|| "not reported".to_owned())).wrap());
            ui.end_row();
            ui.label("Access token");
            expiry_ui(ui, data.access_expires_at, now);
            ui.end_row();
            ui.label("Refresh token");
            let refresh = if data.has_refresh_token {
                format!(
                    "obtained {}, last used {}",
                    when(data.refresh_obtained_at),
                    when(data.refresh_last_used_at)
                )
            } else {
                "none: sign in again so the service can run unattended".to_owned()
            };
            ui.label(refresh);
            ui.end_row();
        });

        ui.add_space(10.0);
        let busy = self.busy.is_some();
        let action = buttons_ui(ui, &mut self.send_to, busy, data, available);

        if let Some(outcome) = &self.last_outcome {
            ui.add_space(6.0);
            match &outcome.result {
                Ok(text) => {
                    icons::line(ui, Icon::Passed, format!("{}: {text}", outcome.title));
                }
                Err(d) => diagnosis::ui(ui, d),
            }
        }

        ui.add_space(10.0);
        ui.strong(format!("Last checks ({})", when(data.last_checked_at)));
        verify::checklist_ui(ui, &data.last_checks);
        action
    }
}

/// The action buttons and the "send to" field.
fn buttons_ui(
    ui: &mut egui::Ui,
    send_to: &mut String,
    busy: bool,
    data: &StatusData,
    available: bool,
) -> Option<StatusAction> {
    let mut action = None;
    let enabled = available && !busy;
    ui.horizontal(|ui| {
        let to = if send_to.trim().is_empty() {
            data.test_recipient.clone()
        } else {
            send_to.trim().to_owned()
        };
        if ui.add_enabled(enabled, egui::Button::new("Send test email")).clicked() {
            action = Some(StatusAction::SendTestEmail { to });
        }
        let label = ui.label("to");
        let edit = egui::TextEdit::singleline(send_to)
            .hint_text(&data.test_recipient)
            .desired_width(260.0);
        ui.add(edit).labelled_by(label.id).accessible_name("Send test email to");
    });
    ui.horizontal(|ui| {
        if ui.add_enabled(enabled, egui::Button::new("Check inbox")).clicked() {
            action = Some(StatusAction::CheckInbox);
        }
        if ui.add_enabled(enabled, egui::Button::new("Refresh token now")).clicked() {
            action = Some(StatusAction::RefreshNow);
        }
        if ui.button("Sign in again…").clicked() {
            action = Some(StatusAction::SignInAgain);
        }
        if busy {
            ui.spinner();
        }
    });
    action
}

/// Shows the expiry and keeps it counting while it lies ahead.
fn expiry_ui(ui: &mut egui::Ui, expires_at: Option<OffsetDateTime>, now: OffsetDateTime) {
    let Some(expires_at) = expires_at else {
        ui.label("expiry unknown");
        return;
    };
    let left = expires_at - now;
    if left.is_positive() {
        let secs = left.whole_seconds().unsigned_abs();
        ui.label(format!("valid for {} (until {})", countdown(secs), hhmm(expires_at)));
        // The status view's only timer: once a second while the countdown runs.
        ui.ctx().request_repaint_after(Duration::from_secs(1));
    } else {
        let text = "expired; the service gets a new one with the refresh token";
        ui.colored_label(theme::warning_color(ui), text);
    }
}

/// `h:mm:ss` or `m:ss`.
pub fn countdown(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 { format!("{h}:{m:02}:{s:02}") } else { format!("{m}:{s:02}") }
}

fn hhmm(at: OffsetDateTime) -> String {
    format!("{:02}:{:02} UTC", at.hour(), at.minute())
}

fn when(at: Option<OffsetDateTime>) -> String {
    match at {
        Some(at) => format!("{} {}", at.date(), hhmm(at)),
        None => "never".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn countdown_shows_hours_only_when_needed() {
        assert_eq!(countdown(59), "0:59");
        assert_eq!(countdown(3599), "59:59");
        assert_eq!(countdown(3600 + 61), "1:01:01");
    }
}

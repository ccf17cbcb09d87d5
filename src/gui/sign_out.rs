//! Sign out from the status view: asks first, removes the stored tokens on a worker thread,
//! then says how to revoke the grant on the provider's side (the words are the ones
//! `mailgrant sign-out` prints, from [`crate::diagnose::sign_out`] and
//! [`crate::session::revoke_instructions`]).

use crate::diagnose::{self, Diagnosis};
use crate::gui::icons::{self, Icon};
use crate::gui::tasks::Attempt;
use crate::gui::{diagnosis, form, theme};

/// What the operator sees after signing out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedOutNote {
    pub done: String,
    pub revoke_instructions: &'static str,
}

/// The sign-out confirmation and its outcome.
#[derive(Debug, Default)]
pub struct SignOutPanel {
    /// "Sign out…" was clicked; waiting for the yes.
    pub confirming: bool,
    /// The sign-out in progress.
    pub running: Option<Attempt>,
    pub outcome: Option<Result<SignedOutNote, Diagnosis>>,
}

impl SignOutPanel {
    /// Draws the question (while confirming) and the outcome; true when the operator said yes.
    pub fn ui(&mut self, ui: &mut egui::Ui, mailbox: &str, enabled: bool) -> bool {
        let mut confirmed = false;
        if self.confirming {
            ui.add_space(4.0);
            egui::Frame::group(ui.style()).inner_margin(10.0).show(ui, |ui| {
                ui.set_max_width(ui.available_width());
                let question = diagnose::sign_out::question(mailbox);
                ui.label(egui::RichText::new(question).strong().color(theme::warning_color(ui)));
                ui.label("The settings and the client secret stay; the backups are not touched");
                ui.horizontal(|ui| {
                    let yes = egui::Button::new("Remove the stored tokens");
                    if ui.add_enabled(enabled, yes).clicked() {
                        confirmed = true;
                        self.confirming = false;
                    }
                    if ui.button("Cancel").accessible_name("Cancel the sign-out").clicked() {
                        self.confirming = false;
                    }
                });
            });
        }
        if self.running.is_some() {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("Removing the stored tokens…");
            });
        }
        match &self.outcome {
            Some(Ok(note)) => signed_out_ui(ui, note),
            Some(Err(d)) => {
                icons::line(ui, Icon::Failed, "Sign-out failed; the tokens are still stored");
                diagnosis::ui(ui, d);
            }
            None => {}
        }
        confirmed
    }
}

fn signed_out_ui(ui: &mut egui::Ui, note: &SignedOutNote) {
    ui.add_space(4.0);
    egui::Frame::group(ui.style()).inner_margin(10.0).show(ui, |ui| {
        ui.set_max_width(ui.available_width());
        icons::line(ui, Icon::Passed, note.done.as_str());
        ui.strong("Revoke the grant at the provider too:");
        let revoke = theme::drawable(note.revoke_instructions);
        ui.add(egui::Label::new(revoke).selectable(true).wrap());
        form::copy_button(ui, "revoke instructions", note.revoke_instructions);
    });
}

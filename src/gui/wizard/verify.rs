//! Step ④: the verification checklist, one row per check, filled in as the worker reports.
//!
//! A failing row opens to the cause and the fix (selectable, to copy into a ticket).

use std::time::Duration;

use crate::diagnose::Diagnosis;
use crate::gui::diagnosis;
use crate::gui::icons::{self, Icon};
use crate::gui::tasks::Attempt;

/// How one check stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RowState {
    Running,
    Passed,
    Warning(Diagnosis),
    Failed(Diagnosis),
    Skipped(String),
}

/// One row of the checklist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckRow {
    /// What the check proves, e.g. "SMTP: send a test message".
    pub label: String,
    /// The permission it proves, if one.
    pub scope: Option<String>,
    pub state: RowState,
    pub duration: Option<Duration>,
    /// One line of outcome, e.g. "INBOX has 3 messages".
    pub summary: String,
}

impl CheckRow {
    /// True when the row failed or was skipped (anything the Save step must confirm).
    pub fn needs_attention(&self) -> bool {
        !matches!(self.state, RowState::Passed | RowState::Running)
    }
}

/// What the operator asked for on this step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifyAction {
    Run,
}

/// The verify step.
#[derive(Debug, Default)]
pub struct VerifyStep {
    /// Rows of the current or last run.
    pub rows: Vec<CheckRow>,
    /// The run in progress.
    pub running: Option<Attempt>,
    /// Whether the last finished run passed every check; `None` before any run finished.
    pub all_passed: Option<bool>,
    /// When the last run finished.
    pub finished_at: Option<time::OffsetDateTime>,
}

impl VerifyStep {
    /// Forgets the last run (settings changed).
    pub fn reset(&mut self) {
        *self = VerifyStep::default();
    }

    /// Adds a row or replaces the row with the same label (a check that started, then ended).
    pub fn upsert(&mut self, row: CheckRow) {
        match self.rows.iter_mut().find(|r| r.label == row.label) {
            Some(existing) => *existing = row,
            None => self.rows.push(row),
        }
    }

    /// Draws the step; `available` is false while the checks cannot run.
    pub fn ui(&mut self, ui: &mut egui::Ui, available: bool) -> Option<VerifyAction> {
        let mut action = None;
        ui.heading("Verify");
        ui.label("Each check proves one permission on the real servers, with the signed-in token");
        ui.add_space(6.0);

        let title =
            if self.all_passed.is_some() { "Run the checks again" } else { "Run the checks" };
        let can_run = available && self.running.is_none();
        if ui.add_enabled(can_run, egui::Button::new(title)).clicked() {
            action = Some(VerifyAction::Run);
        }
        ui.add_space(8.0);

        checklist_ui(ui, &self.rows);

        match self.all_passed {
            Some(true) => {
                icons::line(ui, Icon::Passed, "Every check passed");
            }
            Some(false) => {
                icons::line(ui, Icon::Failed, "Some checks did not pass: see above");
            }
            None => {}
        }
        action
    }
}

/// The rows as a checklist; shared with the status view.
pub fn checklist_ui(ui: &mut egui::Ui, rows: &[CheckRow]) {
    for row in rows {
        ui.horizontal(|ui| {
            match &row.state {
                RowState::Running => {
                    ui.spinner();
                }
                RowState::Passed => {
                    icons::ui(ui, Icon::Passed);
                }
                RowState::Warning(_) => {
                    icons::ui(ui, Icon::Warning);
                }
                RowState::Failed(_) => {
                    icons::ui(ui, Icon::Failed);
                }
                RowState::Skipped(_) => {
                    icons::ui(ui, Icon::Skipped);
                }
            }
            ui.strong(&row.label);
            if let Some(scope) = &row.scope {
                ui.monospace(scope);
            }
            if let Some(duration) = row.duration {
                ui.weak(format!("{:.1} s", duration.as_secs_f32()));
            }
            ui.label(&row.summary);
        });
        match &row.state {
            RowState::Warning(d) | RowState::Failed(d) => {
                ui.indent(&row.label, |ui| diagnosis::ui(ui, d));
            }
            RowState::Skipped(reason) => {
                ui.indent(&row.label, |ui| ui.weak(reason));
            }
            RowState::Running | RowState::Passed => {}
        }
    }
}

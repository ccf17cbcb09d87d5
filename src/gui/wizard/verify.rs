//! Step ④: the verification checklist, one row per check, filled in live as the worker reports.
//!
//! Every check of the plan is listed from the start (waiting), turns into a spinner while it
//! runs, and ends passed, warning, failed or skipped with its duration and what was seen. A
//! failing or warning row opens to the cause and the fix (selectable, with Copy, to paste into
//! a ticket for the admin).

use std::time::Duration;

use time::OffsetDateTime;

use crate::diagnose::Diagnosis;
use crate::gui::diagnosis::{self, RecordedProblem};
use crate::gui::icons::{self, Icon};
use crate::gui::tasks::Attempt;
use crate::gui::theme;
use crate::store::last_check::{LastCheck, RecordedCheck};
use crate::verify::{CheckId, CheckResult, Outcome};

/// What went wrong with one check: a fresh diagnosis, or the text recorded by an earlier run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    Diagnosed(Diagnosis),
    Recorded(RecordedProblem),
}

/// How one check stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RowState {
    /// Not started yet.
    Waiting,
    Running,
    Passed,
    Warning(Problem),
    Failed(Problem),
    Skipped(String),
}

impl RowState {
    /// The word a screen reader (and a test) reads for the state.
    pub fn word(&self) -> &'static str {
        match self {
            RowState::Waiting => "Not run yet",
            RowState::Running => "Running",
            RowState::Passed => "Passed",
            RowState::Warning(_) => "Warning",
            RowState::Failed(_) => "Failed",
            RowState::Skipped(_) => "Skipped",
        }
    }

    /// True once the check has ended one way or another.
    pub fn is_final(&self) -> bool {
        !matches!(self, RowState::Waiting | RowState::Running)
    }
}

/// One row of the checklist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckRow {
    /// What the check proves, e.g. "Test e-mail sent over SMTP".
    pub label: String,
    /// The permission it proves, if one.
    pub scope: Option<String>,
    pub state: RowState,
    pub duration: Option<Duration>,
    /// One line of outcome, e.g. "INBOX has 3 messages".
    pub summary: String,
}

impl CheckRow {
    /// A row for a check that has not started.
    pub fn waiting(id: CheckId) -> CheckRow {
        CheckRow {
            label: id.label().to_owned(),
            scope: id.scope().map(str::to_owned),
            state: RowState::Waiting,
            duration: None,
            summary: String::new(),
        }
    }

    /// The row for a progress report of the verification plan.
    pub fn from_result(result: &CheckResult) -> CheckRow {
        let state = match &result.outcome {
            Outcome::Running => RowState::Running,
            Outcome::Passed => RowState::Passed,
            Outcome::Warning(d) => RowState::Warning(Problem::Diagnosed(d.clone())),
            Outcome::Failed(d) => RowState::Failed(Problem::Diagnosed(d.clone())),
            Outcome::Skipped(reason) => RowState::Skipped(reason.clone()),
        };
        let finished = state.is_final();
        CheckRow {
            label: result.name.to_owned(),
            scope: result.scope.map(str::to_owned),
            state,
            duration: finished.then_some(result.duration),
            summary: result.summary.clone(),
        }
    }

    /// The row for a check recorded by an earlier run (`store::last_check`).
    pub fn from_recorded(check: &RecordedCheck) -> CheckRow {
        let problem = || {
            Problem::Recorded(RecordedProblem {
                summary: check.diagnosis.clone().unwrap_or_default(),
                cause: check.cause.clone().unwrap_or_default(),
                fix: check.fix.clone().unwrap_or_default(),
                reference: check.diagnosis_id.clone().unwrap_or_default(),
            })
        };
        let state = match check.outcome.as_str() {
            "passed" => RowState::Passed,
            "warning" => RowState::Warning(problem()),
            "failed" => RowState::Failed(problem()),
            "skipped" if check.summary.is_empty() => RowState::Skipped("not run".to_owned()),
            "skipped" => RowState::Skipped(check.summary.clone()),
            _ => RowState::Skipped("did not finish".to_owned()),
        };
        CheckRow {
            label: check.name.clone(),
            scope: None,
            state,
            duration: Some(Duration::from_millis(check.duration_ms)),
            summary: if check.outcome == "skipped" { String::new() } else { check.summary.clone() },
        }
    }

    /// True when the row failed or was skipped (anything the Save step must confirm).
    pub fn needs_attention(&self) -> bool {
        !matches!(self.state, RowState::Passed | RowState::Running | RowState::Waiting)
    }
}

/// The rows of a recorded run.
pub fn recorded_rows(last: &LastCheck) -> Vec<CheckRow> {
    last.checks.iter().map(CheckRow::from_recorded).collect()
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
    pub finished_at: Option<OffsetDateTime>,
    /// Why the last run could not start (unusable CA file, no stored token).
    pub problem: Option<Diagnosis>,
    /// The last finished run, recorded next to the config when the setup is saved.
    pub report: Option<crate::verify::VerificationReport>,
}

impl VerifyStep {
    /// Forgets the last run (settings changed).
    pub fn reset(&mut self) {
        *self = VerifyStep::default();
    }

    /// A run started: every check waits.
    pub fn start(&mut self, attempt: Attempt) {
        *self = VerifyStep {
            rows: CheckId::ALL.into_iter().map(CheckRow::waiting).collect(),
            running: Some(attempt),
            ..VerifyStep::default()
        };
    }

    /// Adds a row or replaces the row with the same label (a check that started, then ended).
    pub fn upsert(&mut self, row: CheckRow) {
        match self.rows.iter_mut().find(|r| r.label == row.label) {
            Some(existing) => *existing = row,
            None => self.rows.push(row),
        }
    }

    /// Draws the step; `available` is false while the checks cannot run (not signed in).
    pub fn ui(&mut self, ui: &mut egui::Ui, available: bool) -> Option<VerifyAction> {
        let mut action = None;
        ui.heading("Verify");
        ui.label(
            "Each check proves one permission on the real servers with the signed-in account. \
             Nothing is saved yet",
        );
        ui.add_space(8.0);

        ui.horizontal(|ui| {
            let title =
                if self.all_passed.is_some() { "Run the checks again" } else { "Run the checks" };
            let can_run = available && self.running.is_none();
            if ui.add_enabled(can_run, egui::Button::new(title)).clicked() {
                action = Some(VerifyAction::Run);
            }
            if self.running.is_some() {
                ui.spinner();
                ui.label("Checking… this takes up to a minute");
            } else if !available {
                ui.weak("Sign in first (step 3)");
            }
        });
        ui.add_space(8.0);

        if let Some(problem) = &self.problem {
            ui.label("The checks could not start:");
            diagnosis::ui(ui, problem);
        }
        if self.rows.is_empty() && self.problem.is_none() {
            // Before the first run: what will be checked.
            let planned: Vec<CheckRow> = CheckId::ALL.into_iter().map(CheckRow::waiting).collect();
            checklist_ui(ui, "verify_checklist", &planned);
        } else {
            checklist_ui(ui, "verify_checklist", &self.rows);
        }

        ui.add_space(8.0);
        match (self.all_passed, self.finished_at) {
            (Some(true), Some(at)) => {
                let text = format!("Every check passed at {}", clock(at));
                icons::line(ui, Icon::Passed, text);
                ui.label("Go on with Next to save the setup for the service");
            }
            (Some(false), _) => {
                icons::line(
                    ui,
                    Icon::Failed,
                    "Some checks did not pass. Fix the cause shown under the row, then run the \
                     checks again",
                );
            }
            _ => {}
        }
        action
    }
}

/// `HH:MM:SS UTC`.
fn clock(at: OffsetDateTime) -> String {
    format!("{:02}:{:02}:{:02} UTC", at.hour(), at.minute(), at.second())
}

/// The rows as a checklist; shared with the status view. `id_salt` tells two lists on one
/// screen apart.
pub fn checklist_ui(ui: &mut egui::Ui, id_salt: &str, rows: &[CheckRow]) {
    ui.push_id(id_salt, |ui| {
        for row in rows {
            row_ui(ui, row);
            ui.add_space(4.0);
        }
    });
}

/// One row: the state icon, then the title with its scope and duration, what was seen, and
/// for a problem the cause and fix, all wrapped to the width of the pane.
fn row_ui(ui: &mut egui::Ui, row: &CheckRow) {
    ui.horizontal_top(|ui| {
        match &row.state {
            RowState::Waiting | RowState::Skipped(_) => icons::ui(ui, Icon::Skipped),
            RowState::Running => ui.spinner(),
            RowState::Passed => icons::ui(ui, Icon::Passed),
            RowState::Warning(_) => icons::ui(ui, Icon::Warning),
            RowState::Failed(_) => icons::ui(ui, Icon::Failed),
        };

        ui.vertical(|ui| {
            ui.horizontal_wrapped(|ui| {
                ui.strong(&row.label);
                if let Some(scope) = &row.scope {
                    ui.monospace(scope);
                }
                if let Some(duration) = row.duration {
                    ui.weak(duration_text(duration));
                }
            });
            let problem = matches!(row.state, RowState::Failed(_) | RowState::Warning(_));
            if !(problem && row.summary.is_empty()) {
                // (A problem without a summary is said by the framed diagnosis below.)
                let color = match &row.state {
                    RowState::Failed(_) => theme::error_color(ui),
                    RowState::Warning(_) => theme::warning_color(ui),
                    _ => ui.visuals().weak_text_color(),
                };
                let line = egui::RichText::new(theme::drawable(&row_line(row))).color(color);
                ui.add(egui::Label::new(line).wrap());
            }
            match &row.state {
                RowState::Warning(problem) | RowState::Failed(problem) => problem_ui(ui, problem),
                _ => {}
            }
        });
    });
}

/// `340 ms` below a second, `2.4 s` above.
fn duration_text(duration: Duration) -> String {
    if duration < Duration::from_secs(1) {
        format!("{} ms", duration.as_millis())
    } else {
        format!("{:.1} s", duration.as_secs_f32())
    }
}

/// The state word and what was seen, as one line under the row's title.
fn row_line(row: &CheckRow) -> String {
    let word = row.state.word();
    match &row.state {
        RowState::Waiting => word.to_owned(),
        RowState::Running => format!("{word}…"),
        RowState::Skipped(reason) if !reason.is_empty() => format!("{word}: {reason}"),
        _ if row.summary.is_empty() => word.to_owned(),
        _ => format!("{word}: {}", row.summary),
    }
}

fn problem_ui(ui: &mut egui::Ui, problem: &Problem) {
    match problem {
        Problem::Diagnosed(d) => diagnosis::ui(ui, d),
        Problem::Recorded(recorded) => diagnosis::recorded_ui(ui, recorded),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::Retry;

    fn result(id: CheckId, outcome: Outcome) -> CheckResult {
        CheckResult {
            id,
            name: id.label(),
            scope: id.scope(),
            outcome,
            duration: Duration::from_millis(1500),
            summary: "INBOX of alarms@example.com has 3 messages".to_owned(),
        }
    }

    #[test]
    fn a_running_check_has_no_duration_and_a_finished_one_has() {
        let running = CheckRow::from_result(&result(CheckId::Imap, Outcome::Running));
        assert_eq!(running.state, RowState::Running);
        assert_eq!(running.duration, None);

        let passed = CheckRow::from_result(&result(CheckId::Imap, Outcome::Passed));
        assert_eq!(passed.duration, Some(Duration::from_millis(1500)));
        assert_eq!(row_line(&passed), "Passed: INBOX of alarms@example.com has 3 messages");
        assert_eq!(duration_text(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(duration_text(Duration::from_millis(42)), "42 ms");
    }

    #[test]
    fn progress_replaces_the_waiting_row_of_the_same_check() {
        let mut step = VerifyStep::default();
        step.start(3);
        assert_eq!(step.rows.len(), CheckId::ALL.len());
        assert!(step.rows.iter().all(|r| r.state == RowState::Waiting));

        let d = Diagnosis::new("x", "SMTP refused", "cause", "fix", Retry::Permanent);
        step.upsert(CheckRow::from_result(&result(CheckId::Smtp, Outcome::Failed(d.clone()))));
        assert_eq!(step.rows.len(), CheckId::ALL.len());
        let smtp = step.rows.iter().find(|r| r.label == CheckId::Smtp.label()).expect("row");
        assert_eq!(smtp.state, RowState::Failed(Problem::Diagnosed(d)));
    }

    #[test]
    fn a_recorded_failure_keeps_its_summary_cause_and_fix() {
        let recorded = RecordedCheck {
            id: "smtp".to_owned(),
            name: "Test e-mail sent over SMTP".to_owned(),
            outcome: "failed".to_owned(),
            summary: String::new(),
            diagnosis_id: Some("smtp-connect".to_owned()),
            diagnosis: Some("Could not reach the SMTP server".to_owned()),
            cause: Some("A firewall drops port 587".to_owned()),
            fix: Some("Check the SMTP host and port".to_owned()),
            duration_ms: 20,
        };
        let row = CheckRow::from_recorded(&recorded);
        let RowState::Failed(Problem::Recorded(recorded)) = row.state else {
            panic!("not a recorded failure: {:?}", row.state);
        };
        let RecordedProblem { summary, cause, fix, reference } = recorded;
        assert_eq!(summary, "Could not reach the SMTP server");
        assert_eq!(cause, "A firewall drops port 587");
        assert_eq!(fix, "Check the SMTP host and port");
        assert_eq!(reference, "smtp-connect");
    }
}

//! The backups section of the status view: the numbered backups every save keeps, with their
//! date, mailbox and signed-in account, and a restore that runs only after the operator
//! confirmed it for that one backup.
//!
//! The list is read on a worker thread (it opens files); this module only draws what the
//! worker reported and says which job the operator asked for.

use time::OffsetDateTime;

use crate::diagnose::Diagnosis;
use crate::gui::icons::{self, Icon};
use crate::gui::tasks::Attempt;
use crate::gui::token_health::date_time;
use crate::gui::{diagnosis, theme};
use crate::store::BackupInfo;

/// Where the list stands.
#[derive(Clone, Debug, Default)]
pub enum BackupList {
    /// Not read yet, or out of date after a save, restore or sign-out.
    #[default]
    Stale,
    Loading(Attempt),
    Loaded(Vec<BackupInfo>),
    Failed(Diagnosis),
}

/// What the operator asked for in this section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackupsAction {
    /// Read the list (again).
    List,
    /// Put this backup back; the operator confirmed.
    Restore(u32),
}

/// How the last restore ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreNote {
    pub number: u32,
    pub previous_backup: Option<u32>,
    pub kept_newer_refresh_token: bool,
}

/// The backups section.
#[derive(Debug, Default)]
pub struct BackupsPanel {
    pub list: BackupList,
    /// The backup whose restore waits for the operator's yes.
    pub confirming: Option<u32>,
    /// The restore in progress.
    pub restoring: Option<Attempt>,
    pub last_restore: Option<Result<RestoreNote, Diagnosis>>,
}

impl BackupsPanel {
    /// Draws the section; `enabled` is false while another job changes the stored setup.
    pub fn ui(&mut self, ui: &mut egui::Ui, enabled: bool) -> Option<BackupsAction> {
        let mut action = None;
        ui.label(egui::RichText::new("Backups").strong().size(18.0));
        ui.label(
            "Every save keeps the files it replaces as a numbered backup. Restoring one keeps \
             the current files as a new backup, so it can be undone",
        );

        match &self.list {
            BackupList::Stale => {
                // Shown for one frame: the app starts the listing job right away.
                action = Some(BackupsAction::List);
                ui.weak("Reading the backups…");
            }
            BackupList::Loading(_) => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.weak("Reading the backups…");
                });
            }
            BackupList::Failed(d) => diagnosis::ui(ui, d),
            BackupList::Loaded(backups) if backups.is_empty() => {
                ui.weak("No backups yet: the first one is taken when a saved setup is replaced");
            }
            BackupList::Loaded(backups) => {
                let busy = self.restoring.is_some() || !enabled;
                if let Some(number) = table_ui(ui, backups, busy) {
                    self.confirming = Some(number);
                }
            }
        }

        if let (Some(number), BackupList::Loaded(backups)) = (self.confirming, &self.list)
            && let Some(info) = backups.iter().find(|b| b.backup.number == number)
        {
            match confirm_ui(ui, info, enabled && self.restoring.is_none()) {
                Some(true) => {
                    self.confirming = None;
                    action = Some(BackupsAction::Restore(number));
                }
                Some(false) => self.confirming = None,
                None => {}
            }
        }

        if self.restoring.is_some() {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("Restoring…");
            });
        }
        match &self.last_restore {
            Some(Ok(note)) => restored_ui(ui, note),
            Some(Err(d)) => {
                icons::line(ui, Icon::Failed, "The backup was not restored");
                diagnosis::ui(ui, d);
            }
            None => {}
        }
        action
    }
}

/// One row per backup, newest first; returns the backup whose Restore… was clicked.
fn table_ui(ui: &mut egui::Ui, backups: &[BackupInfo], busy: bool) -> Option<u32> {
    let mut clicked = None;
    egui::Grid::new("backups").num_columns(5).spacing([16.0, 6.0]).striped(true).show(ui, |ui| {
        for title in ["Backup", "Taken", "Mailbox", "Signed in as", ""] {
            ui.strong(title);
        }
        ui.end_row();
        for info in backups.iter().rev() {
            let number = info.backup.number;
            ui.label(format!("Backup {number}"));
            ui.label(taken(info));
            ui.label(info.mailbox.as_deref().unwrap_or("(no config in it)"));
            ui.label(account(info));
            let restore = ui
                .add_enabled(!busy, egui::Button::new("Restore…"))
                .accessible_name(format!("Restore backup {number}…"));
            if restore.clicked() {
                clicked = Some(number);
            }
            ui.end_row();
        }
    });
    clicked
}

/// The question before a restore; `Some(true)` when confirmed, `Some(false)` when cancelled.
fn confirm_ui(ui: &mut egui::Ui, info: &BackupInfo, enabled: bool) -> Option<bool> {
    let number = info.backup.number;
    let mut answer = None;
    ui.add_space(4.0);
    egui::Frame::group(ui.style()).inner_margin(10.0).show(ui, |ui| {
        ui.set_max_width(ui.available_width());
        let question = format!(
            "Restore backup {number}, taken {}: mailbox {}, signed in as {}?",
            taken(info),
            info.mailbox.as_deref().unwrap_or("(no config in it)"),
            account(info)
        );
        ui.label(egui::RichText::new(question).strong().color(theme::warning_color(ui)));
        ui.label(
            "Its settings and tokens replace the current ones for the service. The current \
             files are kept as a new backup",
        );
        ui.horizontal(|ui| {
            let yes = egui::Button::new(format!("Restore backup {number}"));
            if ui.add_enabled(enabled, yes).clicked() {
                answer = Some(true);
            }
            if ui.button("Cancel").accessible_name("Cancel the restore").clicked() {
                answer = Some(false);
            }
        });
    });
    answer
}

fn restored_ui(ui: &mut egui::Ui, note: &RestoreNote) {
    let mut text = format!("Backup {} restored", note.number);
    if let Some(previous) = note.previous_backup {
        text.push_str(&format!("; the files it replaced are now backup {previous}"));
    }
    icons::line(ui, Icon::Passed, text);
    if note.kept_newer_refresh_token {
        ui.colored_label(
            theme::warning_color(ui),
            "The refresh token in the backup was older than the one in use (it was rotated \
             since, so it no longer works); the newer one was kept",
        );
    }
}

fn taken(info: &BackupInfo) -> String {
    info.backup.taken_at.map(OffsetDateTime::from).map_or_else(|| "date unknown".into(), date_time)
}

fn account(info: &BackupInfo) -> String {
    match (&info.signed_in_account, info.has_refresh_token) {
        (Some(account), true) => account.clone(),
        (Some(account), false) => format!("{account} (no tokens)"),
        (None, true) => "an account not named".to_owned(),
        (None, false) => "nobody (no tokens)".to_owned(),
    }
}

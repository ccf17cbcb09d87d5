//! Step ⑤: write the service config, after an explicit confirmation when the checks did not
//! all pass or when the file there does not parse.
//!
//! Nothing is written before the operator presses Save.

use std::path::{Path, PathBuf};

use crate::diagnose::Diagnosis;
use crate::gui::icons::{self, Icon};
use crate::gui::{diagnosis, theme};

/// What is at the target path before saving.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExistingConfig {
    /// No file there yet.
    None,
    /// A config that loads; saving keeps it as a backup.
    Valid,
    /// A file that does not parse; it is only replaced when the operator says so.
    Broken(Diagnosis),
}

/// What the operator asked for on this step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaveAction {
    Save,
}

/// The save step.
#[derive(Debug, Default)]
pub struct SaveStep {
    /// "Save although not every check passed" is ticked.
    pub confirm_unverified: bool,
    /// "Replace the file that does not parse" is ticked.
    pub confirm_replace_broken: bool,
    /// The last save: where it went, or why it failed.
    pub result: Option<Result<PathBuf, Diagnosis>>,
    /// A save is running.
    pub saving: bool,
}

/// What the save step needs to know about the rest of the wizard.
pub struct SaveContext<'a> {
    /// Where the config goes; `None` when no location could be found.
    pub target: Option<&'a Path>,
    pub existing: &'a ExistingConfig,
    /// Whether the last verification passed; `None` when it did not run.
    pub all_passed: Option<bool>,
    /// False while saving cannot run.
    pub available: bool,
}

impl SaveStep {
    /// Draws the step.
    pub fn ui(&mut self, ui: &mut egui::Ui, context: &SaveContext<'_>) -> Option<SaveAction> {
        ui.heading("Save");
        ui.label(
            "Writes the settings for the service; tokens and secrets go to a separate, protected \
             file",
        );
        ui.add_space(6.0);

        let Some(target) = context.target else {
            ui.colored_label(
                theme::error_color(ui),
                "No place for the config was found. Start mailgrant with --config PATH",
            );
            return None;
        };
        ui.horizontal(|ui| {
            ui.label("Config file:");
            ui.monospace(target.display().to_string());
        });

        let mut allowed = context.available && !self.saving;
        if let ExistingConfig::Broken(d) = context.existing {
            ui.add_space(6.0);
            ui.label("The file there now does not load:");
            diagnosis::ui(ui, d);
            ui.checkbox(&mut self.confirm_replace_broken, "Replace that file (a backup is kept)");
            allowed &= self.confirm_replace_broken;
        } else if *context.existing == ExistingConfig::Valid && self.result.is_none() {
            ui.weak("A config is already there; the old one is kept as a backup");
        }

        if context.all_passed == Some(true) {
            ui.add_space(6.0);
            icons::line(ui, Icon::Passed, "Every check passed on the real servers");
        } else {
            ui.add_space(6.0);
            let why = match context.all_passed {
                None => "The checks have not run",
                Some(_) => "Not every check passed",
            };
            ui.colored_label(theme::warning_color(ui), why);
            ui.checkbox(
                &mut self.confirm_unverified,
                "Save anyway; I understand the service may fail to send alarms",
            );
            allowed &= self.confirm_unverified;
        }

        ui.add_space(8.0);
        let mut action = None;
        if ui.add_enabled(allowed, egui::Button::new("Save")).clicked() {
            action = Some(SaveAction::Save);
        }

        match &self.result {
            Some(Ok(path)) => {
                icons::line(ui, Icon::Passed, format!("Saved to {}", path.display()));
                ui.label(
                    "Point the alarm service at this file. Status, on the left, shows the token \
                     and the last checks",
                );
            }
            Some(Err(d)) => diagnosis::ui(ui, d),
            None => {}
        }
        action
    }
}

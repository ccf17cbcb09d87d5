//! "Save support bundle…" on the status view: the operator edits where the file goes (next to
//! the config by default; mailgrant has no native file dialog), a worker writes it with
//! [`crate::bundle::write`], and the view says where it went, or shows the diagnosis.
//!
//! The bundle holds no token or secret (see `crate::bundle`); nothing here reads it back.

use std::path::{Path, PathBuf};

use crate::diagnose::Diagnosis;
use crate::gui::icons::{self, Icon};
use crate::gui::tasks::Attempt;
use crate::gui::{diagnosis, form, theme};

/// Label of the path field (tests and screen readers find it by this).
pub const PATH_LABEL: &str = "Bundle file";

/// The support bundle section.
#[derive(Debug, Default)]
pub struct BundlePanel {
    /// The path field is open.
    pub open: bool,
    /// Where to write, as typed; a relative path is taken relative to the config's folder.
    pub path: String,
    /// The write in progress.
    pub writing: Option<Attempt>,
    pub outcome: Option<Result<PathBuf, Diagnosis>>,
    /// The field was just opened or the outcome just arrived: bring it into view once (the
    /// section sits at the bottom of the status view, often below the window's edge).
    pub reveal: bool,
}

/// What the operator asked for in this section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BundleAction {
    /// Open the path field, filled with the default path.
    Open,
    /// Write the bundle here.
    Write(PathBuf),
}

impl BundlePanel {
    /// Draws the section; `config_dir` anchors a relative path.
    pub fn ui(&mut self, ui: &mut egui::Ui, config_dir: &Path) -> Option<BundleAction> {
        let mut action = None;
        ui.label(egui::RichText::new("Support bundle").strong().size(18.0));
        ui.label(
            "One JSON file for whoever helps you: versions, the settings, token dates, the last \
             checks, a fresh network check and the recent log. It holds no token or secret",
        );
        let writing = self.writing.is_some();
        if !self.open {
            if ui.add_enabled(!writing, egui::Button::new("Save support bundle…")).clicked() {
                action = Some(BundleAction::Open);
            }
        } else {
            let frame = egui::Frame::group(ui.style()).inner_margin(10.0).show(ui, |ui| {
                ui.set_max_width(ui.available_width());
                let label = ui.label(PATH_LABEL);
                // As wide as the view and wrapped, so a long path is read whole, not clipped.
                let edit = egui::TextEdit::multiline(&mut self.path)
                    .desired_rows(2)
                    .desired_width(ui.available_width())
                    .font(egui::TextStyle::Monospace);
                let field = ui.add(edit).labelled_by(label.id);
                if field.changed() {
                    // A path is one line; Enter in the wrapped field adds nothing to it.
                    self.path.retain(|c| c != '\n' && c != '\r');
                }
                if self.reveal {
                    field.request_focus();
                }
                let target = resolve(config_dir, &self.path);
                if target.is_none() {
                    ui.colored_label(theme::error_color(ui), "Enter the file to write");
                }
                ui.horizontal(|ui| {
                    let save = egui::Button::new("Save bundle");
                    if ui.add_enabled(!writing && target.is_some(), save).clicked()
                        && let Some(target) = target
                    {
                        action = Some(BundleAction::Write(target));
                    }
                    if ui.button("Cancel").accessible_name("Cancel the bundle").clicked() {
                        self.open = false;
                    }
                });
            });
            if self.reveal && self.outcome.is_none() {
                self.reveal = false;
                frame.response.scroll_to_me(Some(egui::Align::Max));
            }
        }

        if writing {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("Writing the bundle (runs a network check, up to half a minute)…");
            });
        }
        let outcome = ui.scope(|ui| match &self.outcome {
            Some(Ok(path)) => {
                let shown = path.display().to_string();
                icons::line(ui, Icon::Passed, format!("Support bundle written to {shown}"));
                ui.horizontal(|ui| {
                    ui.label("Send this file to whoever helps you");
                    form::copy_button(ui, "bundle path", &shown);
                });
            }
            Some(Err(d)) => {
                icons::line(ui, Icon::Failed, "The support bundle was not written");
                diagnosis::ui(ui, d);
            }
            None => {}
        });
        if self.reveal && self.outcome.is_some() {
            self.reveal = false;
            outcome.response.scroll_to_me(Some(egui::Align::Max));
        }
        action
    }
}

/// The file to write for the typed text: trimmed, relative paths under `config_dir`; `None`
/// when nothing was typed.
pub fn resolve(config_dir: &Path, typed: &str) -> Option<PathBuf> {
    let typed = typed.trim();
    if typed.is_empty() {
        return None;
    }
    let path = Path::new(typed);
    Some(if path.is_absolute() { path.to_path_buf() } else { config_dir.join(path) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relative_path_lands_next_to_the_config_and_an_empty_one_is_refused() {
        let dir = Path::new("/srv/mailgrant");
        assert_eq!(resolve(dir, " b.json "), Some(PathBuf::from("/srv/mailgrant/b.json")));
        assert_eq!(resolve(dir, "/tmp/b.json"), Some(PathBuf::from("/tmp/b.json")));
        assert_eq!(resolve(dir, "  "), None);
    }
}

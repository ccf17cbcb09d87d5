//! Shows a [`Diagnosis`]: what happened, the likely cause and the fix, as selectable text the
//! operator can copy into a ticket for the admin.

use crate::diagnose::Diagnosis;
use crate::gui::theme;

/// Draws a diagnosis in a frame; every line can be selected and copied.
pub fn ui(ui: &mut egui::Ui, diagnosis: &Diagnosis) {
    egui::Frame::group(ui.style()).inner_margin(10.0).show(ui, |ui| {
        ui.set_max_width(ui.available_width());
        let summary = egui::RichText::new(theme::drawable(&diagnosis.summary))
            .strong()
            .color(theme::error_color(ui));
        ui.add(egui::Label::new(summary).selectable(true).wrap());
        line_ui(ui, "Cause", &diagnosis.cause);
        line_ui(ui, "Fix", &diagnosis.fix);
        for detail in &diagnosis.details {
            let detail = egui::RichText::new(theme::drawable(detail)).small().weak();
            ui.add(egui::Label::new(detail).wrap());
        }
        ui.horizontal(|ui| {
            crate::gui::form::copy_button(ui, "diagnosis", &diagnosis.to_text());
            ui.weak(format!("Reference: {}", diagnosis.id));
        });
    });
}

fn line_ui(ui: &mut egui::Ui, title: &str, text: &str) {
    ui.horizontal_wrapped(|ui| {
        ui.strong(format!("{title}:"));
        ui.add(egui::Label::new(theme::drawable(text)).selectable(true).wrap());
    });
}

/// Draws a problem recorded by an earlier run (summary and fix only), like [`ui`].
pub fn recorded_ui(ui: &mut egui::Ui, recorded: &RecordedProblem) {
    let RecordedProblem { summary, cause, fix, reference } = recorded;
    let copy = if cause.is_empty() {
        format!("{summary}\nFix: {fix}")
    } else {
        format!("{summary}\nCause: {cause}\nFix: {fix}")
    };
    egui::Frame::group(ui.style()).inner_margin(10.0).show(ui, |ui| {
        ui.set_max_width(ui.available_width());
        let text =
            egui::RichText::new(theme::drawable(summary)).strong().color(theme::error_color(ui));
        ui.add(egui::Label::new(text).selectable(true).wrap());
        if !cause.is_empty() {
            line_ui(ui, "Cause", cause);
        }
        line_ui(ui, "Fix", fix);
        ui.horizontal(|ui| {
            crate::gui::form::copy_button(ui, "diagnosis", &copy);
            if !reference.is_empty() {
                ui.weak(format!("Reference: {reference}"));
            }
        });
    });
}

/// A diagnosis as an earlier run recorded it (`store::last_check`): its words, not its type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedProblem {
    pub summary: String,
    /// Empty for records written before causes were kept.
    pub cause: String,
    pub fix: String,
    /// The diagnosis id.
    pub reference: String,
}

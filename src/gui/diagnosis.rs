//! Shows a [`Diagnosis`]: what happened, the likely cause and the fix, as selectable text the
//! operator can copy into a ticket for the admin.

use crate::diagnose::Diagnosis;
use crate::gui::theme;

/// Draws a diagnosis in a frame; every line can be selected and copied.
pub fn ui(ui: &mut egui::Ui, diagnosis: &Diagnosis) {
    egui::Frame::group(ui.style()).inner_margin(10.0).show(ui, |ui| {
        ui.set_max_width(ui.available_width());
        let summary =
            egui::RichText::new(&diagnosis.summary).strong().color(theme::error_color(ui));
        ui.add(egui::Label::new(summary).selectable(true).wrap());
        line_ui(ui, "Cause", &diagnosis.cause);
        line_ui(ui, "Fix", &diagnosis.fix);
        for detail in &diagnosis.details {
            ui.add(egui::Label::new(egui::RichText::new(detail).small().weak()).wrap());
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
        ui.add(egui::Label::new(text).selectable(true).wrap());
    });
}

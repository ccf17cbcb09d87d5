//! The log pane: the lines the [`crate::logging`] ring buffer holds (names and outcomes of
//! each step, never secret values), newest at the bottom.

use crate::logging::LogBuffer;

/// The log view.
#[derive(Debug, Default)]
pub struct LogPane;

impl LogPane {
    /// Draws every buffered line; the buffer is read only while the pane is on screen.
    pub fn ui(&mut self, ui: &mut egui::Ui) {
        ui.heading("Log");
        let lines: Vec<String> =
            LogBuffer::global().snapshot().iter().map(|l| l.to_string()).collect();
        ui.horizontal(|ui| {
            ui.weak(format!("{} lines; no token or secret is ever written here", lines.len()));
            crate::gui::form::copy_button(ui, "log", &lines.join("\n"));
        });
        ui.separator();

        let row_height = ui.text_style_height(&egui::TextStyle::Monospace);
        egui::ScrollArea::both().stick_to_bottom(true).auto_shrink(false).show_rows(
            ui,
            row_height,
            lines.len(),
            |ui, range| {
                for line in &lines[range] {
                    ui.add(egui::Label::new(egui::RichText::new(line).monospace()).extend());
                }
            },
        );
    }
}

//! Small status icons painted with shapes, so they need no emoji font (egui's default fonts have
//! no check marks). Each icon carries an accessible name, so a screen reader (and a test) can
//! tell a passed row from a failed one.

use egui::{Color32, Sense, Stroke, pos2, vec2};

use crate::gui::theme;

/// Which icon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Icon {
    Passed,
    Failed,
    Warning,
    Skipped,
}

impl Icon {
    /// The icon's accessible name.
    pub fn name(self) -> &'static str {
        match self {
            Icon::Passed => "passed",
            Icon::Failed => "failed",
            Icon::Warning => "warning",
            Icon::Skipped => "skipped",
        }
    }
}

/// Paints the icon at text height.
pub fn ui(ui: &mut egui::Ui, icon: Icon) -> egui::Response {
    let size = ui.text_style_height(&egui::TextStyle::Body);
    let (rect, response) = ui.allocate_exact_size(vec2(size, size), Sense::hover());
    let painter = ui.painter();
    let c = rect.center();
    let r = size * 0.42;
    let white = Stroke::new(size * 0.12, Color32::WHITE);

    match icon {
        Icon::Passed => {
            painter.circle_filled(c, r, theme::success_color(ui));
            let points = [
                pos2(c.x - r * 0.5, c.y),
                pos2(c.x - r * 0.1, c.y + r * 0.4),
                pos2(c.x + r * 0.55, c.y - r * 0.4),
            ];
            painter.line(points.to_vec(), white);
        }
        Icon::Failed => {
            painter.circle_filled(c, r, theme::error_color(ui));
            let d = r * 0.45;
            painter.line_segment([pos2(c.x - d, c.y - d), pos2(c.x + d, c.y + d)], white);
            painter.line_segment([pos2(c.x - d, c.y + d), pos2(c.x + d, c.y - d)], white);
        }
        Icon::Warning => {
            painter.circle_filled(c, r, theme::warning_color(ui));
            let dark = Stroke::new(size * 0.12, Color32::BLACK);
            painter.line_segment([pos2(c.x, c.y - r * 0.55), pos2(c.x, c.y + r * 0.15)], dark);
            painter.circle_filled(pos2(c.x, c.y + r * 0.5), size * 0.07, Color32::BLACK);
        }
        Icon::Skipped => {
            let grey = ui.visuals().weak_text_color();
            painter.circle_stroke(c, r, Stroke::new(size * 0.08, grey));
            painter.line_segment(
                [pos2(c.x - r * 0.5, c.y), pos2(c.x + r * 0.5, c.y)],
                Stroke::new(size * 0.1, grey),
            );
        }
    }
    response.accessible_name(icon.name())
}

/// An icon followed by wrapped text in the icon's colour.
pub fn line(ui: &mut egui::Ui, icon: Icon, text: impl Into<String>) {
    let color = match icon {
        Icon::Passed => theme::success_color(ui),
        Icon::Failed => theme::error_color(ui),
        Icon::Warning => theme::warning_color(ui),
        Icon::Skipped => ui.visuals().weak_text_color(),
    };
    ui.horizontal(|ui| {
        self::ui(ui, icon);
        let text: String = text.into();
        let text = egui::RichText::new(theme::drawable(&text)).color(color);
        ui.add(egui::Label::new(text).wrap());
    });
}

//! Look and feel: follow the system's light or dark setting, and use text a little larger than
//! egui's default so it reads well on a plant-floor PC.

use egui::{Color32, FontId, TextStyle, ThemePreference};

/// Applies the theme preference and text sizes to every style (light and dark).
pub fn apply(ctx: &egui::Context) {
    ctx.set_theme(ThemePreference::System);
    ctx.all_styles_mut(|style| {
        style.text_styles = [
            (TextStyle::Small, FontId::proportional(12.5)),
            (TextStyle::Body, FontId::proportional(16.0)),
            (TextStyle::Button, FontId::proportional(16.0)),
            (TextStyle::Monospace, FontId::monospace(15.0)),
            (TextStyle::Heading, FontId::proportional(23.0)),
        ]
        .into();
        style.spacing.item_spacing = egui::vec2(8.0, 6.0);
        style.spacing.button_padding = egui::vec2(8.0, 4.0);
    });
}

/// Colour for passed checks and completed steps, readable on light and dark backgrounds.
pub fn success_color(ui: &egui::Ui) -> Color32 {
    if ui.visuals().dark_mode {
        Color32::from_rgb(110, 200, 120)
    } else {
        Color32::from_rgb(20, 120, 40)
    }
}

/// Colour for errors (the theme's own).
pub fn error_color(ui: &egui::Ui) -> Color32 {
    ui.visuals().error_fg_color
}

/// Colour for warnings (the theme's own).
pub fn warning_color(ui: &egui::Ui) -> Color32 {
    ui.visuals().warn_fg_color
}

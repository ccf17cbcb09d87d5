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

/// Text from the library made drawable with egui's bundled fonts, which have no arrow glyph
/// (it would show as a box): `→` becomes `>`, so a menu path such as "Entra admin center >
/// App registrations" reads the same. Copy buttons keep the original text.
pub fn drawable(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('→') {
        std::borrow::Cow::Owned(text.replace('→', ">"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every non-ASCII character in mailgrant's operator text, as `drawable` leaves it.
    const OPERATOR_TEXT: &str = "→ … – — ü é ß";

    #[test]
    fn every_character_of_operator_text_can_be_drawn_with_the_bundled_fonts() {
        let ctx = egui::Context::default();
        ctx.set_missing_glyph_policy(egui::MissingGlyphPolicy::Panic);
        let text = drawable(OPERATOR_TEXT);
        let mut output = ctx.run_ui(egui::RawInput::default(), |ui| {
            apply(ui.ctx());
            ui.label(text.as_ref());
        });
        output.textures_delta.clear();
        assert_eq!(drawable("a → b"), "a > b");
    }
}

//! The token health section of the status view: when the access token expires, when the
//! refresh token was issued and last redeemed, the date it dies if nothing uses it, and each
//! finding of the forecast with what to do, in the warning or error colour and in words.
//!
//! The rules and dates come from [`crate::forecast::forecast`]; this module only lays them
//! out. The access-token countdown asks for a repaint when its text next changes (once a
//! minute, once a second in its last ten minutes) while that token is still valid and drawn;
//! nothing else here asks for one, so an idle window stays idle.

use std::time::Duration;

use time::OffsetDateTime;

use crate::forecast::{Finding, Health, TokenForecast};
use crate::gui::icons::{self, Icon};
use crate::gui::{form, theme};

/// Draws the forecast made for `forecast.now`.
pub fn ui(ui: &mut egui::Ui, forecast: &TokenForecast) {
    ui.label(egui::RichText::new("Token health").strong().size(18.0));
    health_line_ui(ui, forecast);
    ui.add_space(4.0);

    let now = forecast.now;
    egui::Grid::new("token_health").num_columns(2).spacing([16.0, 6.0]).show(ui, |ui| {
        ui.label("Access token");
        access_ui(ui, forecast.access_expires_at, now);
        ui.end_row();

        ui.label("Refresh token issued");
        ui.label(match (forecast.has_refresh_token, forecast.refresh_issued_at) {
            (false, _) => "no refresh token stored".to_owned(),
            (true, Some(at)) => format!("{} ({})", date_time(at), relative(at, now)),
            (true, None) => "not recorded".to_owned(),
        });
        ui.end_row();

        ui.label("Last redeemed");
        ui.label(match (forecast.has_refresh_token, forecast.refresh_last_used_at) {
            (false, _) => "—".to_owned(),
            (true, Some(at)) => format!("{} ({})", date_time(at), relative(at, now)),
            (true, None) => "not yet: only the sign-in so far".to_owned(),
        });
        ui.end_row();

        ui.label("Dies if unused on");
        death_ui(ui, forecast);
        ui.end_row();

        ui.label("Client secret expires");
        ui.label(match forecast.client_secret_expires_on {
            Some(date) => date.to_string(),
            None => "not entered".to_owned(),
        });
        ui.end_row();
    });

    for finding in &forecast.findings {
        ui.add_space(4.0);
        finding_ui(ui, finding);
    }
}

/// One line that says, in words and colour, whether anyone must act.
fn health_line_ui(ui: &mut egui::Ui, forecast: &TokenForecast) {
    let first_due = forecast.findings.iter().filter_map(|f| f.due).min();
    match forecast.health {
        Health::Ok => icons::line(ui, Icon::Passed, "Healthy: nothing to do"),
        Health::Warning => {
            let text = match first_due {
                Some(due) => format!("Warning: act before {} (see below)", due.date()),
                None => "Warning: see below what to do".to_owned(),
            };
            icons::line(ui, Icon::Warning, text);
        }
        Health::Failed => icons::line(
            ui,
            Icon::Failed,
            "Action needed now: the service cannot send mail until someone acts (see below)",
        ),
    }
}

/// The access token's expiry, counting down while it lies ahead: by the minute, and by the
/// second in its last ten minutes.
fn access_ui(ui: &mut egui::Ui, expires_at: Option<OffsetDateTime>, now: OffsetDateTime) {
    let Some(expires_at) = expires_at else {
        ui.label("none stored");
        return;
    };
    let left = expires_at - now;
    if left.is_positive() {
        let secs = left.whole_seconds().unsigned_abs();
        let (text, next_change) = countdown_with_next_change(secs);
        ui.label(format!("valid for {text} (until {})", hhmm(expires_at)));
        // The status view's only timer: the next time the text changes, so an open window
        // repaints once a minute for most of the token's life, once a second near its end.
        ui.ctx().request_repaint_after(next_change);
    } else {
        ui.label(format!(
            "expired {}; the next use gets a new one with the refresh token",
            date_time(expires_at)
        ));
    }
}

fn death_ui(ui: &mut egui::Ui, forecast: &TokenForecast) {
    match (&forecast.refresh_expected_death, &forecast.refresh_death_rule) {
        (Some(at), rule) => {
            ui.vertical(|ui| {
                let text = format!("{} ({})", date_time(*at), relative(*at, forecast.now));
                let color = match forecast.health {
                    Health::Ok => ui.visuals().text_color(),
                    Health::Warning => theme::warning_color(ui),
                    Health::Failed => theme::error_color(ui),
                };
                ui.label(egui::RichText::new(text).color(color));
                if let Some(rule) = rule {
                    ui.weak(theme::drawable(rule));
                }
            });
        }
        (None, _) if forecast.has_refresh_token => {
            ui.label("no lifetime known for this provider");
        }
        (None, _) => {
            ui.label("—");
        }
    }
}

/// A warning or failure of the forecast: what happens when, and what to do (selectable).
fn finding_ui(ui: &mut egui::Ui, finding: &Finding) {
    let (icon, color) = match finding.health {
        Health::Failed => (Icon::Failed, theme::error_color(ui)),
        _ => (Icon::Warning, theme::warning_color(ui)),
    };
    egui::Frame::group(ui.style()).inner_margin(10.0).show(ui, |ui| {
        ui.set_max_width(ui.available_width());
        ui.horizontal_top(|ui| {
            icons::ui(ui, icon);
            let summary = theme::drawable(&finding.summary);
            let summary = egui::RichText::new(summary).strong().color(color);
            ui.add(egui::Label::new(summary).selectable(true).wrap());
        });
        ui.horizontal_wrapped(|ui| {
            ui.strong("What to do:");
            ui.add(egui::Label::new(theme::drawable(&finding.fix)).selectable(true).wrap());
        });
        ui.horizontal(|ui| {
            let text = format!("{}\nWhat to do: {}", finding.summary, finding.fix);
            form::copy_button(ui, "token warning", &text);
            ui.weak(format!("Reference: {}", finding.id));
        });
    });
}

/// What the countdown shows for `secs` left, and how long until that text changes.
pub fn countdown_with_next_change(secs: u64) -> (String, Duration) {
    if secs <= BY_THE_SECOND {
        return (countdown(secs), Duration::from_secs(1));
    }
    let minutes = secs.div_ceil(60);
    // The shown minutes drop when `secs` reaches the next multiple of 60.
    let wait = match secs % 60 {
        0 => 60,
        part => part,
    };
    (format!("{minutes} min"), Duration::from_secs(wait))
}

/// Below this many seconds the countdown shows seconds.
const BY_THE_SECOND: u64 = 600;

/// `h:mm:ss` or `m:ss`.
pub fn countdown(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 { format!("{h}:{m:02}:{s:02}") } else { format!("{m}:{s:02}") }
}

/// `HH:MM UTC`.
pub fn hhmm(at: OffsetDateTime) -> String {
    format!("{:02}:{:02} UTC", at.hour(), at.minute())
}

/// `2025-03-01 08:00 UTC`.
pub fn date_time(at: OffsetDateTime) -> String {
    format!("{} {}", at.date(), hhmm(at))
}

/// How far `at` is from `now` in words: `3 days ago`, `in 12 days`, `in 5 hours`.
pub fn relative(at: OffsetDateTime, now: OffsetDateTime) -> String {
    let span = at - now;
    let (days, hours) = (span.whole_days().abs(), span.whole_hours().abs());
    let amount = match (days, hours) {
        (0, 0) => return "within the hour".to_owned(),
        (0, 1) => "1 hour".to_owned(),
        (0, h) => format!("{h} hours"),
        (1, _) => "1 day".to_owned(),
        (d, _) => format!("{d} days"),
    };
    if span.is_negative() { format!("{amount} ago") } else { format!("in {amount}") }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn countdown_ticks_by_the_minute_until_its_last_ten_minutes() {
        assert_eq!(
            countdown_with_next_change(3599),
            ("60 min".to_owned(), Duration::from_secs(59))
        );
        assert_eq!(
            countdown_with_next_change(3540),
            ("59 min".to_owned(), Duration::from_secs(60))
        );
        assert_eq!(countdown_with_next_change(601), ("11 min".to_owned(), Duration::from_secs(1)));
        assert_eq!(countdown_with_next_change(600), ("10:00".to_owned(), Duration::from_secs(1)));
        assert_eq!(countdown_with_next_change(59), ("0:59".to_owned(), Duration::from_secs(1)));
    }

    #[test]
    fn countdown_shows_hours_only_when_needed() {
        assert_eq!(countdown(59), "0:59");
        assert_eq!(countdown(3599), "59:59");
        assert_eq!(countdown(3600 + 61), "1:01:01");
    }

    #[test]
    fn relative_dates_read_as_words() {
        let now = datetime!(2025-03-01 08:00 UTC);
        assert_eq!(relative(now - time::Duration::days(80), now), "80 days ago");
        assert_eq!(relative(now + time::Duration::hours(30), now), "in 1 day");
        assert_eq!(relative(now + time::Duration::hours(5), now), "in 5 hours");
        assert_eq!(relative(now - time::Duration::minutes(5), now), "within the hour");
        assert_eq!(date_time(now), "2025-03-01 08:00 UTC");
    }
}

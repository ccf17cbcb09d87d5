//! Labelled form rows with their problems shown right under the field, as the operator types.
//!
//! A field's problems are shown once the operator has touched it (typed in it or left it) or
//! tried to go on with Next, so an empty form does not start out covered in red.

use std::collections::HashSet;

use crate::gui::icons::{self, Icon};
use crate::profile::{Field, FieldProblem, ProfileForm, Severity};

/// Per-frame view of the form's problems and which fields the operator has touched.
pub struct FormFeedback<'a> {
    problems: Vec<FieldProblem>,
    touched: &'a mut HashSet<Field>,
    changed: Vec<Field>,
}

impl<'a> FormFeedback<'a> {
    /// Problems of `form` as it is now.
    pub fn new(form: &ProfileForm, touched: &'a mut HashSet<Field>) -> FormFeedback<'a> {
        FormFeedback { problems: form.problems(), touched, changed: Vec::new() }
    }

    /// Fields whose text changed during this frame's drawing.
    pub fn changed_fields(&self) -> &[Field] {
        &self.changed
    }

    /// Records that the operator typed in or left `field`.
    pub fn note_field_edit(&mut self, ui: &egui::Ui, field: Field, response: &egui::Response) {
        if response.changed() {
            self.changed.push(field);
            self.touched.insert(field);
            // Problems were computed before this keystroke: draw once more to show fresh ones.
            ui.ctx().request_repaint();
        }
        if response.lost_focus() {
            self.touched.insert(field);
        }
    }

    /// Draws the problems of `field`, errors in red, warnings in the warning colour.
    pub fn problems_ui(&self, ui: &mut egui::Ui, field: Field) {
        if !self.touched.contains(&field) {
            return;
        }
        for problem in self.problems.iter().filter(|p| p.field == field) {
            let icon = match problem.severity {
                Severity::Error => Icon::Failed,
                Severity::Warning => Icon::Warning,
            };
            icons::line(ui, icon, problem.message.as_str());
        }
    }
}

/// How a text row looks.
#[derive(Clone, Copy, Default)]
pub struct RowStyle<'s> {
    /// Grey text shown while the field is empty.
    pub hint: &'s str,
    /// Mask the text (secrets).
    pub masked: bool,
    /// Show "(optional)" after the field.
    pub optional: bool,
    /// Long values (URLs, scope lists): as wide as the pane allows, wrapped over two lines.
    pub long: bool,
}

/// Width of text inputs.
pub const INPUT_WIDTH: f32 = 380.0;
/// Widest a long input grows.
const LONG_INPUT_WIDTH: f32 = 640.0;

/// One grid row: the field's label, its input (named by the label) and its problems below.
pub fn text_row(
    ui: &mut egui::Ui,
    feedback: &mut FormFeedback<'_>,
    field: Field,
    value: &mut String,
    style: RowStyle<'_>,
) -> egui::Response {
    let label = ui.label(field.label());
    let response = ui
        .vertical(|ui| {
            let response = ui
                .horizontal(|ui| {
                    let edit = if style.long {
                        let width = ui.available_width().clamp(INPUT_WIDTH, LONG_INPUT_WIDTH);
                        egui::TextEdit::multiline(value).desired_rows(2).desired_width(width)
                    } else {
                        egui::TextEdit::singleline(value).desired_width(INPUT_WIDTH)
                    };
                    let edit = edit.hint_text(style.hint).password(style.masked);
                    let response = ui.add(edit).labelled_by(label.id);
                    if style.optional {
                        ui.weak("(optional)");
                    }
                    response
                })
                .inner;
            feedback.note_field_edit(ui, field, &response);
            feedback.problems_ui(ui, field);
            response
        })
        .inner;
    ui.end_row();
    response
}

/// Marks every given field as touched so its problems show (after a refused Next).
pub fn touch_all(touched: &mut HashSet<Field>, fields: &[Field]) {
    touched.extend(fields.iter().copied());
}

/// A labelled choice between a few values, as one grid row.
pub fn choice_row<T: Copy + PartialEq>(
    ui: &mut egui::Ui,
    title: &str,
    value: &mut T,
    choices: &[T],
    name: impl Fn(T) -> &'static str,
) -> bool {
    let label = ui.label(title);
    let before = *value;
    egui::ComboBox::from_id_salt(title)
        .selected_text(name(*value))
        .show_ui(ui, |ui| {
            for choice in choices {
                ui.selectable_value(value, *choice, name(*choice));
            }
        })
        .response
        .labelled_by(label.id);
    ui.end_row();
    before != *value
}

/// Errors (not warnings) among the given fields.
pub fn errors_in(form: &ProfileForm, fields: &[Field]) -> Vec<FieldProblem> {
    form.problems()
        .into_iter()
        .filter(|p| p.severity == Severity::Error && fields.contains(&p.field))
        .collect()
}

/// A read-only, selectable value with a Copy button, as one grid row.
pub fn copy_row(ui: &mut egui::Ui, title: &str, value: &str) {
    let label = ui.label(title);
    ui.horizontal(|ui| {
        let mut shown = value;
        let field = egui::TextEdit::singleline(&mut shown)
            .desired_width(INPUT_WIDTH)
            .font(egui::TextStyle::Monospace);
        ui.add(field).labelled_by(label.id);
        copy_button(ui, title, value);
    });
    ui.end_row();
}

/// A Copy button that puts `value` on the clipboard; `what` names it in the tooltip.
pub fn copy_button(ui: &mut egui::Ui, what: &str, value: &str) {
    let name = format!("Copy {}", what.to_lowercase());
    // "Copied" stays on the button for a moment after a click, so the operator sees that
    // something happened; the only repaint it asks for is the one that takes it away.
    let id = ui.make_persistent_id(("copy-button", what, value));
    let now = ui.input(|i| i.time);
    let copied_at: Option<f64> = ui.data(|d| d.get_temp(id));
    let showing = copied_at.filter(|at| now - at < COPIED_SECS);
    let label = if showing.is_some() { "Copied" } else { "Copy" };
    let button = ui.button(label).accessible_name(&name);
    if button.on_hover_text(format!("{name} to the clipboard")).clicked() {
        ui.ctx().copy_text(value.to_owned());
        ui.data_mut(|d| d.insert_temp(id, now));
        ui.ctx().request_repaint_after(std::time::Duration::from_secs_f64(COPIED_SECS));
    } else if let Some(at) = showing {
        let left = (COPIED_SECS - (now - at)).max(0.0);
        ui.ctx().request_repaint_after(std::time::Duration::from_secs_f64(left));
    }
}

/// How long a Copy button says "Copied".
const COPIED_SECS: f64 = 1.5;

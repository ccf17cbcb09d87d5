//! Where the operator is: the wizard steps, the status and log views, and the step list on the
//! left that shows which steps are done and lets the operator go back.

use crate::gui::icons::{self, Icon};
use crate::gui::theme;

/// One wizard step, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    Registration,
    Mailbox,
    SignIn,
    Verify,
    Save,
}

impl Step {
    /// Every step, in wizard order.
    pub const ALL: [Step; 5] =
        [Step::Registration, Step::Mailbox, Step::SignIn, Step::Verify, Step::Save];

    /// Name shown in the step list and as the step's heading.
    pub fn title(self) -> &'static str {
        match self {
            Step::Registration => "Registration",
            Step::Mailbox => "Mailbox",
            Step::SignIn => "Sign in",
            Step::Verify => "Verify",
            Step::Save => "Save",
        }
    }

    /// Circled number shown before the title.
    fn marker(self) -> &'static str {
        match self {
            Step::Registration => "1",
            Step::Mailbox => "2",
            Step::SignIn => "3",
            Step::Verify => "4",
            Step::Save => "5",
        }
    }

    /// Position in [`Step::ALL`].
    pub fn index(self) -> usize {
        Step::ALL.iter().position(|s| *s == self).unwrap_or_default()
    }

    /// The step after this one, if any.
    pub fn next(self) -> Option<Step> {
        Step::ALL.get(self.index() + 1).copied()
    }

    /// The step before this one, if any.
    pub fn previous(self) -> Option<Step> {
        self.index().checked_sub(1).and_then(|i| Step::ALL.get(i).copied())
    }
}

/// What the main area shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    Wizard(Step),
    Status,
    Log,
}

/// Which steps are complete; a step can be opened once every step before it is complete.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    done: [bool; 5],
}

impl Progress {
    /// True when the step is complete.
    pub fn is_done(&self, step: Step) -> bool {
        self.done[step.index()]
    }

    /// Marks a step complete or not; un-completing a step un-completes every later one.
    pub fn set_done(&mut self, step: Step, done: bool) {
        self.done[step.index()] = done;
        if !done {
            for later in &mut self.done[step.index()..] {
                *later = false;
            }
        }
    }

    /// True when every step before this one is complete.
    pub fn can_open(&self, step: Step) -> bool {
        self.done[..step.index()].iter().all(|d| *d)
    }
}

/// Draws the step list and returns the view the operator clicked, if any.
pub fn ui(ui: &mut egui::Ui, current: View, progress: &Progress) -> Option<View> {
    let mut chosen = None;
    ui.add_space(8.0);
    ui.heading("mailgrant");
    ui.label(egui::RichText::new("E-mail sign-in for the alarm service").small());
    ui.add_space(12.0);

    for step in Step::ALL {
        let done = progress.is_done(step);
        let mut text = egui::RichText::new(format!("{}. {}", step.marker(), step.title()));
        if done {
            text = text.color(theme::success_color(ui));
        }

        let selected = current == View::Wizard(step);
        ui.horizontal(|ui| {
            let button = egui::Button::selectable(selected, text);
            let response = ui.add_enabled(progress.can_open(step), button);
            let response = if done {
                icons::ui(ui, Icon::Passed);
                response.accessible_name(format!("{}. {} (done)", step.marker(), step.title()))
            } else {
                response
            };
            if response.clicked() {
                chosen = Some(View::Wizard(step));
            }
        });
    }

    ui.add_space(8.0);
    ui.separator();
    for (view, title) in [(View::Status, "Status"), (View::Log, "Log")] {
        if ui.add(egui::Button::selectable(current == view, title)).clicked() {
            chosen = Some(view);
        }
    }
    chosen
}

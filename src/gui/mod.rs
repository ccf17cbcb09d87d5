//! The desktop configurator: a setup wizard (registration, mailbox, sign-in, verify, save), the
//! token status view a returning operator lands on, and a log pane.
//!
//! Invariants: nothing here talks to the network or formats a library error itself. Network
//! work runs on named worker threads ([`tasks`]) that report through a channel and wake the
//! window; operator text for failures comes from [`crate::diagnose`]. The window only repaints
//! on input, on a worker's report, or when a countdown on screen changes its text (at most once
//! a second), so an idle window uses no CPU.

mod app;
mod backups;
mod diagnosis;
mod form;
mod icons;
mod jobs;
mod log_pane;
mod nav;
mod sign_out;
mod status;
mod support_bundle;
pub mod tasks;
mod theme;
mod token_health;
pub mod wizard;

use std::path::PathBuf;

pub use app::MailgrantApp;
pub use nav::{Step, View};

/// Start-up options the command line passes to the GUI.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GuiOptions {
    /// `--config PATH`: the service config to open and save; `None` means the default location.
    pub config_path: Option<PathBuf>,
}

/// Opens the mailgrant window and runs until it is closed.
pub fn run(options: GuiOptions) -> eframe::Result<()> {
    crate::logging::init(crate::logging::Console::Stderr);

    let viewport = egui::ViewportBuilder::default()
        .with_title("mailgrant")
        .with_app_id("mailgrant")
        .with_inner_size([1040.0, 760.0])
        .with_min_inner_size([720.0, 520.0]);
    let native_options = eframe::NativeOptions { viewport, ..Default::default() };

    eframe::run_native(
        "mailgrant",
        native_options,
        Box::new(move |cc| Ok(Box::new(MailgrantApp::new(cc, options)))),
    )
}

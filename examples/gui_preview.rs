//! Opens the mailgrant window (for screenshots under Xvfb before main.rs is wired).
//!
//! `cargo run --example gui_preview -- [CONFIG_PATH]`

fn main() -> eframe::Result<()> {
    let config_path = std::env::args_os().nth(1).map(std::path::PathBuf::from);
    mailgrant::gui::run(mailgrant::gui::GuiOptions { config_path })
}

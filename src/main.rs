//! mailgrant binary: the GUI by default, headless commands when one is named.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::SUCCESS
}

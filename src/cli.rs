//! Headless commands for scripts and for the service: `login`, `check`, `token`, `status`.
//!
//! They run exactly the library code the GUI runs. Output is human text by default and JSON
//! with `--json`; the exit code is 0 only when the command fully succeeded. Diagnoses go to
//! stderr (text) or into the JSON; only `token` prints a secret, and only on stdout, because
//! that is its job.

#![allow(clippy::print_stdout, reason = "the headless commands' output is their product")]

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::json;
use time::OffsetDateTime;

use crate::diagnose::{self, Diagnosis};
use crate::oauth::{PendingSignIn, TokenClient, open_browser};
use crate::profile::Profile;
use crate::session::{self, Freshness};
use crate::store::{self, ConfigPaths, Secrets, ServiceConfig, StoreError};
use crate::trust::Trust;
use crate::verify::{self, Outcome, VerificationReport, VerifyInput};

/// How long `login` waits for the browser.
pub const SIGN_IN_TIMEOUT: Duration = Duration::from_secs(300);

/// Exit code when a check or command failed.
const EXIT_FAILED: u8 = 1;
/// Exit code when the config could not be used at all.
const EXIT_CONFIG: u8 = 2;

/// Command line of the `mailgrant` binary.
#[derive(Debug, Parser)]
#[command(
    name = "mailgrant",
    version,
    about = "Sets up and checks OAuth2 e-mail for an unattended service"
)]
pub struct Cli {
    /// The service config to use (default: the platform's config folder).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// What to do; without a command the setup window opens.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The headless commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Sign in through the browser without a window and save the tokens into the config.
    Login {
        /// Print the URL but do not open a browser.
        #[arg(long)]
        no_browser: bool,
    },
    /// Run every check (refresh, SMTP send, IMAP inbox, round trip); exit 0 only if all pass.
    Check {
        /// Print JSON (one object per check) instead of text.
        #[arg(long)]
        json: bool,
        /// Send the test e-mail to this address instead of the configured recipient.
        #[arg(long, value_name = "ADDR")]
        send_to: Option<String>,
    },
    /// Print a valid access token on stdout, refreshing (and saving the rotated refresh token)
    /// when needed.
    Token,
    /// Show the account, scopes and token expiry.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Runs one headless command.
pub fn run(config: Option<PathBuf>, command: Command) -> ExitCode {
    let json_output =
        matches!(command, Command::Check { json: true, .. } | Command::Status { json: true });
    let console =
        if json_output { crate::logging::Console::Quiet } else { crate::logging::Console::Stderr };
    crate::logging::init(console);

    let Some(paths) = config_paths(config) else {
        eprintln!("No config folder could be found for this user; pass --config PATH");
        return ExitCode::from(EXIT_CONFIG);
    };
    let result = match command {
        Command::Login { no_browser } => login(&paths, no_browser),
        Command::Check { json, send_to } => check(&paths, json, send_to),
        Command::Token => token(&paths),
        Command::Status { json } => status(&paths, json),
    };
    match result {
        Ok(code) => code,
        Err(failure) => {
            report_failure(&failure, json_output);
            ExitCode::from(failure.exit_code)
        }
    }
}

/// A command that could not finish, with what to tell the operator.
struct Failure {
    diagnosis: Box<Diagnosis>,
    exit_code: u8,
}

impl Failure {
    fn config(error: &StoreError) -> Failure {
        Failure { diagnosis: Box::new(diagnose::config::store(error)), exit_code: EXIT_CONFIG }
    }

    fn failed(diagnosis: Diagnosis) -> Failure {
        Failure { diagnosis: Box::new(diagnosis), exit_code: EXIT_FAILED }
    }
}

fn report_failure(failure: &Failure, json_output: bool) {
    if json_output {
        let value = json!({ "ok": false, "diagnosis": failure.diagnosis });
        println!("{value:#}");
    } else {
        eprintln!("{}", failure.diagnosis.to_text());
    }
}

fn config_paths(config: Option<PathBuf>) -> Option<ConfigPaths> {
    match config {
        Some(path) => Some(ConfigPaths::for_config(&path)),
        None => ConfigPaths::default_location(),
    }
}

/// Loads the config, its secrets (empty when there are none yet), the profile and the trust.
fn open(paths: &ConfigPaths) -> Result<(ServiceConfig, Secrets, Profile, Trust), Failure> {
    let config = store::load_config(paths).map_err(|e| Failure::config(&e))?;
    let secrets = match store::load_secrets(paths) {
        Ok(secrets) => secrets,
        Err(StoreError::Missing { .. }) => Secrets::default(),
        Err(e) => return Err(Failure::config(&e)),
    };
    let profile = config.to_profile(&secrets).map_err(|e| Failure::config(&e))?;
    let trust = Trust::load(profile.extra_ca_file.as_deref())
        .map_err(|e| Failure::failed(diagnose::trust(&e)))?;
    Ok((config, secrets, profile, trust))
}

fn login(paths: &ConfigPaths, no_browser: bool) -> Result<ExitCode, Failure> {
    let (config, mut secrets, profile, trust) = open(paths)?;
    let pending = PendingSignIn::start(&profile)
        .map_err(|e| Failure::failed(diagnose::oauth::sign_in(&e, &profile)))?;

    eprintln!("Sign in as {} in the browser. If it does not open, open this URL:", profile.mailbox);
    println!("{}", pending.authorize_url());
    eprintln!(
        "Waiting for the browser to come back to {} (5 minutes at most)…",
        pending.redirect_uri()
    );
    if !no_browser && let Err(error) = open_browser(pending.authorize_url()) {
        eprintln!("The browser could not be opened ({error}); open the URL above by hand");
    }

    let client = TokenClient::new(&profile, &trust);
    let tokens = pending
        .wait(&client, SIGN_IN_TIMEOUT)
        .map_err(|e| Failure::failed(diagnose::oauth::sign_in(&e, &profile)))?;
    secrets.apply_sign_in(&tokens);
    store::save(paths, &config, &secrets).map_err(|e| Failure::config(&e))?;

    let account = tokens.identity.as_ref().and_then(|c| c.account()).unwrap_or("(unknown)");
    eprintln!("Signed in as {account}; tokens saved to {}", paths.config.display());
    if !account.eq_ignore_ascii_case(&profile.mailbox) && account != "(unknown)" {
        let d = diagnose::scopes::account_mismatch(account, &profile.mailbox, &config.smtp_user);
        eprintln!("Warning: {}", d.to_text());
    }
    Ok(ExitCode::SUCCESS)
}

fn check(
    paths: &ConfigPaths,
    json_output: bool,
    send_to: Option<String>,
) -> Result<ExitCode, Failure> {
    let (config, _secrets, mut profile, trust) = open(paths)?;
    if let Some(address) = send_to {
        profile.test_recipient = address;
    }
    let tokens = session::tokens(paths, &profile, &trust, Freshness::CachedIfValid)
        .map_err(|e| Failure::failed(e.diagnosis(&profile)))?;

    let refresh_profile = profile.clone();
    let refresh_trust = trust.clone();
    let refresher: verify::Refresher<'_> = Box::new(move |_stale| {
        session::tokens(paths, &refresh_profile, &refresh_trust, Freshness::ForceRefresh)
            .map_err(|e| e.diagnosis(&refresh_profile))
    });
    let input = VerifyInput {
        profile,
        trust,
        tokens,
        identities: config.identities(),
        refresher: Some(refresher),
        only: None,
    };
    let (report, _tokens) = verify::run(input, |result| {
        if !json_output && result.outcome == Outcome::Running {
            eprintln!("… {}", result.name);
        }
    });
    print_report(&report, json_output);
    Ok(if report.all_passed() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_FAILED) })
}

fn print_report(report: &VerificationReport, json_output: bool) {
    if json_output {
        let value = json!({ "ok": report.all_passed(), "report": report });
        println!("{value:#}");
        return;
    }
    let mut out = std::io::stdout().lock();
    for check in &report.checks {
        let mark = match &check.outcome {
            Outcome::Passed => "PASS",
            Outcome::Warning(_) => "WARN",
            Outcome::Failed(_) => "FAIL",
            Outcome::Skipped(_) => "SKIP",
            Outcome::Running => "....",
        };
        let scope = check.scope.map(|s| format!(" [{s}]")).unwrap_or_default();
        let _ = writeln!(
            out,
            "{mark} {}{scope} ({} ms) {}",
            check.name,
            check.duration.as_millis(),
            check.summary
        );
        if let Outcome::Skipped(why) = &check.outcome {
            let _ = writeln!(out, "     {why}");
        }
        if let Some(d) = check.outcome.diagnosis() {
            for line in d.to_text().lines() {
                let _ = writeln!(out, "     {line}");
            }
        }
    }
    let verdict = if report.all_passed() { "All checks passed" } else { "Some checks failed" };
    let _ = writeln!(out, "{verdict} (run {})", report.run_id);
}

fn token(paths: &ConfigPaths) -> Result<ExitCode, Failure> {
    let (_config, _secrets, profile, trust) = open(paths)?;
    let tokens = session::tokens(paths, &profile, &trust, Freshness::CachedIfValid)
        .map_err(|e| Failure::failed(e.diagnosis(&profile)))?;
    println!("{}", tokens.access_token.secret());
    Ok(ExitCode::SUCCESS)
}

fn status(paths: &ConfigPaths, json_output: bool) -> Result<ExitCode, Failure> {
    let (config, secrets, profile, _trust) = open(paths)?;
    let now = OffsetDateTime::now_utc();
    let expires_in_secs = secrets.access_expires_at.map(|at| (at - now).whole_seconds());
    let rfc3339 = |t: Option<OffsetDateTime>| {
        t.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
    };
    let signed_in = secrets.has_refresh_token() && secrets.needs_sign_in.is_none();
    if json_output {
        let value = json!({
            "ok": signed_in,
            "config": paths.config.display().to_string(),
            "provider": profile.provider.label(),
            "mailbox": config.mailbox,
            "signed_in_account": secrets.signed_in_account,
            "granted_scopes": secrets.granted_scopes,
            "has_refresh_token": secrets.has_refresh_token(),
            "needs_sign_in": secrets.needs_sign_in,
            "access_token_expires_at": rfc3339(secrets.access_expires_at),
            "access_token_expires_in_secs": expires_in_secs,
            "refresh_token_issued_at": rfc3339(secrets.refresh_token_issued_at),
            "refresh_token_last_used_at": rfc3339(secrets.refresh_token_last_used_at),
        });
        println!("{value:#}");
    } else {
        let none = || "(none)".to_owned();
        println!("Config            {}", paths.config.display());
        println!("Provider          {}", profile.provider.label());
        println!("Mailbox           {}", config.mailbox);
        println!("Signed in as      {}", secrets.signed_in_account.clone().unwrap_or_else(none));
        println!(
            "Granted scopes    {}",
            secrets.granted_scopes.as_ref().map(|s| s.join(" ")).unwrap_or_else(none)
        );
        let expiry = match expires_in_secs {
            Some(s) if s > 0 => format!("in {} min", s / 60),
            Some(_) => "expired (the next use refreshes it)".to_owned(),
            None => none(),
        };
        println!("Access token      {expiry}");
        println!(
            "Refresh token     {}",
            if secrets.has_refresh_token() { "stored" } else { "none" }
        );
        println!(
            "  issued          {}",
            rfc3339(secrets.refresh_token_issued_at).unwrap_or_else(none)
        );
        println!(
            "  last used       {}",
            rfc3339(secrets.refresh_token_last_used_at).unwrap_or_else(none)
        );
        if let Some(reason) = &secrets.needs_sign_in {
            println!("NEEDS SIGN-IN     {reason}");
        }
    }
    Ok(if signed_in { ExitCode::SUCCESS } else { ExitCode::from(EXIT_FAILED) })
}

//! Headless commands for scripts and for the service: `login`, `check`, `token`, `status`,
//! `bundle`, `sign-out` and `restore`.
//!
//! They run exactly the library code the GUI runs. Output is human text by default and JSON
//! with `--json`; the exit code is 0 only when the command fully succeeded. Diagnoses go to
//! stderr (text) or into the JSON; only `token` prints a secret, and only on stdout, because
//! that is its job.

#![allow(clippy::print_stdout, reason = "the headless commands' output is their product")]

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::json;
use time::OffsetDateTime;

use crate::diagnose::{self, Diagnosis};
use crate::forecast::{self, Health};
use crate::oauth::{PendingSignIn, TokenClient, open_browser};
use crate::profile::Profile;
use crate::session::{self, Freshness};
use crate::store::{self, ConfigPaths, Secrets, ServiceConfig, StoreError};
use crate::trust::Trust;
use crate::verify::{self, Outcome, VerificationReport, VerifyInput};

/// `println!` that ends the process quietly (exit 141, as a shell reports SIGPIPE) when the
/// reader has gone, e.g. `mailgrant check --json | head`, instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(error) = writeln!(std::io::stdout(), $($arg)*) {
            if error.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(141);
            }
            eprintln!("mailgrant could not write its output: {error}");
            std::process::exit(1);
        }
    }};
}

/// How long `login` waits for the browser.
pub const SIGN_IN_TIMEOUT: Duration = Duration::from_secs(300);

/// Exit code when a check or command failed.
const EXIT_FAILED: u8 = 1;
/// Exit code when the config could not be used at all.
const EXIT_CONFIG: u8 = 2;
/// Exit code of `status` when everything works now but someone must act soon.
const EXIT_WARNING: u8 = 3;

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
        /// Run only the pre-flight checks (DNS, TCP, STARTTLS, TLS of the sign-in host, the
        /// token host, SMTP and IMAP); needs no sign-in; exit 0 only when all pass.
        #[arg(long, conflicts_with = "send_to")]
        preflight: bool,
    },
    /// Print a valid access token on stdout, refreshing (and saving the rotated refresh token)
    /// when needed.
    Token,
    /// Write a support bundle to FILE (JSON: versions, OS, the config and token facts without
    /// any secret, the last check, fresh pre-flight results, the recent log).
    Bundle {
        /// Where to write the bundle.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Show the account, scopes, token expiry and the token health forecast. Exit 0 healthy,
    /// 1 mail cannot be sent, 2 config unusable, 3 a warning (act before the date shown).
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Remove the stored tokens (after confirmation) and explain how to revoke the grant.
    SignOut {
        /// Do not ask; required when no terminal is attached.
        #[arg(long)]
        yes: bool,
    },
    /// List the numbered backups, or put one back in place after confirmation.
    Restore {
        /// List the backups with their date, mailbox and account (the default).
        #[arg(long, conflicts_with = "backup")]
        list: bool,
        /// The number of the backup to restore.
        #[arg(long, value_name = "N")]
        backup: Option<u32>,
        /// Do not ask; required when no terminal is attached.
        #[arg(long)]
        yes: bool,
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
        Command::Check { json, preflight: true, .. } => preflight_only(&paths, json),
        Command::Check { json, send_to, preflight: false } => check(&paths, json, send_to),
        Command::Bundle { out } => bundle(&paths, &out),
        Command::Token => token(&paths),
        Command::Status { json } => status(&paths, json),
        Command::SignOut { yes } => sign_out(&paths, yes),
        Command::Restore { list: _, backup, yes } => restore(&paths, backup, yes),
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
        out!("{value:#}");
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
        Err(e) if e.is_missing_secrets() => Secrets::default(),
        Err(e) => return Err(Failure::config(&e)),
    };
    let profile = config
        .to_profile(&secrets)
        .map_err(|e| Failure::config(&e.in_config_file(&paths.config)))?;
    // A CA file that cannot be used is a setting to correct, like any other in the config.
    let trust = Trust::load(profile.extra_ca_file.as_deref()).map_err(|e| Failure {
        diagnosis: Box::new(diagnose::trust(&e)),
        exit_code: EXIT_CONFIG,
    })?;
    Ok((config, secrets, profile, trust))
}

fn login(paths: &ConfigPaths, no_browser: bool) -> Result<ExitCode, Failure> {
    let (config, mut secrets, profile, trust) = open(paths)?;
    let pending = PendingSignIn::start(&profile)
        .map_err(|e| Failure::failed(diagnose::oauth::sign_in(&e, &profile)))?;

    eprintln!("Sign in as {} in the browser. If it does not open, open this URL:", profile.mailbox);
    out!("{}", pending.authorize_url());
    eprintln!(
        "Waiting for the browser to come back to {} (5 minutes at most)…",
        pending.redirect_uri()
    );
    eprintln!(
        "Open it in a browser on this machine: the answer comes back to localhost, which a \
         browser elsewhere cannot reach"
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
    let secrets_file = store::load_config(paths)
        .map(|config| paths.resolve_secrets(config.secrets.path.as_deref()))
        .unwrap_or_else(|_| paths.secrets.clone());
    eprintln!(
        "Signed in as {account}; tokens saved to {} (settings in {})",
        secrets_file.display(),
        paths.config.display()
    );
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
    if let Err(e) = store::last_check::save(paths, &report) {
        tracing::warn!(error = %e, "could not record the check result");
    }
    print_report(&report, json_output);
    Ok(if report.all_passed() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_FAILED) })
}

fn print_report(report: &VerificationReport, json_output: bool) {
    if json_output {
        let value = json!({ "ok": report.all_passed(), "report": report });
        out!("{value:#}");
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
    out!("{}", tokens.access_token.secret());
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
    let forecast = forecast::forecast(&config, &secrets, now);
    let ok = signed_in && forecast.health != Health::Failed;
    if json_output {
        let value = json!({
            "ok": ok,
            "health": forecast.health,
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
            "refresh_token_expected_death": rfc3339(forecast.refresh_expected_death),
            "client_secret_expires_on": forecast.client_secret_expires_on.map(|d| d.to_string()),
            "forecast": forecast,
        });
        out!("{value:#}");
    } else {
        let none = || "(none)".to_owned();
        out!("Config            {}", paths.config.display());
        out!("Provider          {}", profile.provider.label());
        out!("Mailbox           {}", config.mailbox);
        out!("Signed in as      {}", secrets.signed_in_account.clone().unwrap_or_else(none));
        out!(
            "Granted scopes    {}",
            secrets.granted_scopes.as_ref().map(|s| s.join(" ")).unwrap_or_else(none)
        );
        let expiry = match expires_in_secs {
            Some(s) if s > 0 => format!("in {} min", s / 60),
            Some(_) => "expired (the next use refreshes it)".to_owned(),
            None => none(),
        };
        out!("Access token      {expiry}");
        out!("Refresh token     {}", if secrets.has_refresh_token() { "stored" } else { "none" });
        out!("  issued          {}", rfc3339(secrets.refresh_token_issued_at).unwrap_or_else(none));
        out!(
            "  last used       {}",
            rfc3339(secrets.refresh_token_last_used_at).unwrap_or_else(none)
        );
        if let Some(reason) = &secrets.needs_sign_in {
            out!("NEEDS SIGN-IN     {reason}");
        }
        print_forecast(&forecast);
    }
    Ok(match (ok, forecast.health) {
        (false, _) => ExitCode::from(EXIT_FAILED),
        (true, Health::Warning) => ExitCode::from(EXIT_WARNING),
        (true, _) => ExitCode::SUCCESS,
    })
}

fn print_forecast(forecast: &forecast::TokenForecast) {
    for (label, value) in forecast.rows().into_iter().skip(3) {
        out!("{label:<24}{value}");
    }
    for finding in &forecast.findings {
        let mark = if finding.health == Health::Failed { "FAILED " } else { "WARNING" };
        out!("{mark} {}", finding.summary);
        out!("        Fix: {}", finding.fix);
    }
}

/// Asks on the terminal; `--yes` answers for scripts. Without a terminal and without `--yes`
/// nothing is done.
fn confirm(question: &str, yes: bool) -> Result<bool, Failure> {
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        return Err(Failure::failed(Diagnosis::new(
            "confirmation-needed",
            "Nothing was changed: this needs a confirmation and no terminal is attached",
            "The command changes the stored setup and was run from a script or service",
            "Run it in a terminal to answer the question, or add --yes",
            diagnose::Retry::Permanent,
        )));
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).map_err(|e| {
        Failure::failed(Diagnosis::new(
            "confirmation-needed",
            "Nothing was changed: the answer could not be read",
            e.to_string(),
            "Run it again, or add --yes",
            diagnose::Retry::Transient,
        ))
    })?;
    Ok(matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
}

fn sign_out(paths: &ConfigPaths, yes: bool) -> Result<ExitCode, Failure> {
    let config = store::load_config(paths).map_err(|e| Failure::config(&e))?;
    let question = diagnose::sign_out::question(&config.mailbox);
    if !confirm(&question, yes)? {
        eprintln!("Nothing was changed");
        return Ok(ExitCode::from(EXIT_FAILED));
    }
    session::sign_out(paths).map_err(|e| Failure::config(&e))?;
    out!("{}", diagnose::sign_out::done(&config.mailbox));
    out!("{}", session::revoke_instructions(&config));
    Ok(ExitCode::SUCCESS)
}

fn restore(paths: &ConfigPaths, backup: Option<u32>, yes: bool) -> Result<ExitCode, Failure> {
    let backups = store::list_backups(paths).map_err(|e| Failure::config(&e))?;
    let Some(number) = backup else {
        if backups.is_empty() {
            out!("No backups of {} yet", paths.config.display());
        }
        for info in &backups {
            out!("{}", describe_backup(info));
        }
        return Ok(ExitCode::SUCCESS);
    };

    let Some(info) = backups.iter().find(|b| b.backup.number == number) else {
        let kept = backups.iter().map(|b| b.backup.number).collect();
        let error = StoreError::BackupNotFound { number, kept };
        return Err(Failure::failed(diagnose::config::store(&error)));
    };
    let question =
        format!("Restore {}? The current files are kept as a new backup.", describe_backup(info));
    if !confirm(&question, yes)? {
        eprintln!("Nothing was changed");
        return Ok(ExitCode::from(EXIT_FAILED));
    }
    let saved = store::restore_backup(paths, number).map_err(|e| Failure::config(&e))?;
    out!("Restored backup {number} to {}", paths.config.display());
    if let Some(previous) = saved.backup {
        out!("The files it replaced are now backup {previous}");
    }
    if saved.kept_newer_refresh_token {
        out!(
            "The refresh token in the backup was older than the one in use (it was rotated \
             since, so it no longer works); the newer one was kept"
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn describe_backup(info: &store::BackupInfo) -> String {
    let taken = info
        .backup
        .taken_at
        .map(OffsetDateTime::from)
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| "(date unknown)".to_owned());
    format!(
        "backup {} taken {taken}: mailbox {}, signed in as {}, {}",
        info.backup.number,
        info.mailbox.as_deref().unwrap_or("(no config)"),
        info.signed_in_account.as_deref().unwrap_or("(nobody)"),
        if info.has_refresh_token { "with tokens" } else { "without tokens" }
    )
}

/// `check --preflight`: only the network and TLS checks of the four servers.
fn preflight_only(paths: &ConfigPaths, json_output: bool) -> Result<ExitCode, Failure> {
    let (_config, _secrets, profile, trust) = open(paths)?;
    let report = crate::preflight::run(&profile, &trust);
    if json_output {
        let value = json!({ "ok": report.all_passed(), "preflight": report });
        out!("{value:#}");
    } else {
        print!("{}", report.to_text());
    }
    Ok(if report.all_passed() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_FAILED) })
}

/// `bundle --out FILE`: succeeds when the file is written, whatever the setup's state.
fn bundle(paths: &ConfigPaths, out: &std::path::Path) -> Result<ExitCode, Failure> {
    let written = crate::bundle::write(paths, out)
        .map_err(|e| Failure::failed(diagnose::preflight::bundle_write(&e)))?;
    let preflight = match &written.preflight {
        Some(report) if report.all_passed() => "all pre-flight checks passed".to_owned(),
        Some(report) => format!("{} pre-flight checks failed", report.diagnoses().count()),
        None => "pre-flight checks could not run".to_owned(),
    };
    eprintln!(
        "Support bundle written to {} ({preflight}); it holds no token or secret",
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

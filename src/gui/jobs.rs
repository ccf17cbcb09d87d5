//! The worker jobs behind the buttons: each runs library code on a named thread and reports
//! through [`TaskRunner`]. Nothing else in the GUI calls the file store or the network-facing
//! library.

use std::path::PathBuf;

use crate::diagnose::{self, Diagnosis};
use crate::gui::tasks::{Attempt, CancelHandle, Reporter, SignInOutcome, TaskEvent, TaskRunner};
use crate::gui::wizard::sign_in::{RefreshRecord, SIGN_IN_TIMEOUT};
use crate::oauth::{self, PendingSignIn, SignInError, TokenClient, TokenSet};
use crate::profile::Profile;
use crate::session::{self, Freshness};
use crate::store::last_check::{self, LastCheck};
use crate::store::{
    self, ConfigPaths, Identities, SaveOptions, Secrets, ServiceConfig, StoredSetup,
};
use crate::trust::Trust;
use crate::verify::{self, CheckId, CheckResult, Outcome, VerificationReport, VerifyInput};

/// The browser sign-in through `oauth::PendingSignIn`.
pub const SIGN_IN_AVAILABLE: bool = true;
/// Saving through `store::save_with`.
pub const SAVE_AVAILABLE: bool = true;

/// Starts the browser sign-in for `profile` on a worker thread: binds the loopback listener,
/// opens the browser, reports the URLs and a cancel handle, then waits for the redirect.
pub fn sign_in(tasks: &TaskRunner, attempt: Attempt, profile: Profile) -> std::io::Result<()> {
    tasks.spawn("mailgrant-sign-in", move |reporter| {
        let outcome = run_sign_in(&reporter, attempt, &profile);
        reporter.send(TaskEvent::SignInFinished { attempt, outcome });
    })
}

fn run_sign_in(reporter: &Reporter, attempt: Attempt, profile: &Profile) -> SignInOutcome {
    let trust = match Trust::load(profile.extra_ca_file.as_deref()) {
        Ok(trust) => trust,
        Err(error) => return SignInOutcome::Failed(diagnose::trust(&error)),
    };
    let pending = match PendingSignIn::start(profile) {
        Ok(pending) => pending,
        Err(error) => return SignInOutcome::Failed(diagnose::oauth::sign_in(&error, profile)),
    };

    let browser_problem = oauth::open_browser(pending.authorize_url()).err().map(|error| {
        tracing::warn!(%error, "the system browser did not open");
        error.to_string()
    });
    let canceller = pending.canceller();
    reporter.send(TaskEvent::SignInWaiting {
        attempt,
        authorize_url: pending.authorize_url().to_owned(),
        redirect_uri: pending.redirect_uri().to_owned(),
        cancel: CancelHandle::new(move || canceller.cancel()),
        browser_problem,
    });

    let client = TokenClient::new(profile, &trust);
    match pending.wait(&client, SIGN_IN_TIMEOUT) {
        Ok(tokens) => SignInOutcome::SignedIn(Box::new(tokens)),
        Err(SignInError::Cancelled) => SignInOutcome::Cancelled,
        Err(error) => SignInOutcome::Failed(diagnose::oauth::sign_in(&error, profile)),
    }
}

/// Everything a save needs, taken from the finished wizard.
pub struct SaveRequest {
    pub paths: ConfigPaths,
    pub profile: Profile,
    pub identities: Identities,
    pub tokens: TokenSet,
    /// When the refresh token in `tokens` was issued and last redeemed (a refresh in the Verify
    /// step happens before the save and must not be written down as a fresh sign-in).
    pub record: RefreshRecord,
    /// The operator agreed to replace a file that does not parse.
    pub overwrite_unparsable: bool,
    /// The verification run of exactly these settings, recorded next to the config once it is
    /// saved; `None` when the last run checked other settings.
    pub report: Option<VerificationReport>,
}

/// Writes config and secrets on a worker thread.
pub fn save(tasks: &TaskRunner, attempt: Attempt, request: SaveRequest) -> std::io::Result<()> {
    tasks.spawn("mailgrant-save", move |reporter| {
        let SaveRequest {
            paths,
            profile,
            identities,
            tokens,
            record: refresh_record,
            overwrite_unparsable,
            report,
        } = request;
        let config = ServiceConfig::from_profile(&profile, &identities);
        let mut secrets = Secrets::from_sign_in(&tokens, profile.client_secret.clone());
        refresh_record.apply_to(&mut secrets);
        let options = SaveOptions { overwrite_unparsable };

        let result = match store::save_with(&paths, &config, &secrets, options) {
            Ok(saved) => {
                tracing::info!(config = %paths.config.display(), backup = ?saved.backup, "saved");
                if let Some(report) = &report {
                    record(&paths, report);
                }
                let setup = StoredSetup { config: saved.config, secrets: saved.secrets };
                let last_check = last_check::load(&paths);
                Ok(Saved { path: paths.config.clone(), setup: Box::new(setup), last_check })
            }
            Err(error) => {
                tracing::error!(config = %paths.config.display(), "save failed");
                Err(crate::diagnose::config::store(&error))
            }
        };
        reporter.send(TaskEvent::SaveFinished { attempt, result });
    })
}

/// What was found at the config path when the window opened.
pub enum Startup {
    /// No config file there.
    Nothing,
    /// A config that loads.
    Loaded(Box<StoredSetup>),
    /// The config loads but its secrets do not (missing, or too open).
    SecretsUnusable { config: Box<ServiceConfig>, problem: Diagnosis },
    /// The config itself does not load; it must not be overwritten without the operator.
    Broken(Diagnosis),
}

/// Reads the setup at `paths` (small local files; done once when the window opens).
pub fn load_existing(paths: &ConfigPaths) -> Startup {
    if !paths.config.exists() {
        return Startup::Nothing;
    }
    match store::load(paths) {
        Ok(setup) => Startup::Loaded(Box::new(setup)),
        Err(error) => {
            let problem = crate::diagnose::config::store(&error);
            match store::load_config(paths) {
                Ok(config) => Startup::SecretsUnusable { config: Box::new(config), problem },
                Err(_) => Startup::Broken(problem),
            }
        }
    }
}

/// The saved setup as read again from disk (another process may have changed it).
pub struct Reread {
    pub startup: Startup,
    pub last_check: Option<LastCheck>,
}

impl std::fmt::Debug for Reread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reread").finish_non_exhaustive()
    }
}

/// Reads the setup at `paths` again on a worker thread (small local files): the status view
/// asks for it when it is opened and when the window gets the focus back, because
/// `mailgrant login` or the service may have rotated or replaced the tokens meanwhile.
pub fn reread(tasks: &TaskRunner, attempt: Attempt, paths: ConfigPaths) -> std::io::Result<()> {
    tasks.spawn("mailgrant-reread", move |reporter| {
        let reread =
            Reread { startup: load_existing(&paths), last_check: last_check::load(&paths) };
        reporter.send(TaskEvent::Reread { attempt, reread: Box::new(reread) });
    })
}

/// The config paths from `--config`, or the platform default.
pub fn config_paths(config_path: Option<&std::path::Path>) -> Option<ConfigPaths> {
    match config_path {
        Some(path) => Some(ConfigPaths::for_config(path)),
        None => ConfigPaths::default_location(),
    }
}

/// What a successful save wrote.
#[derive(Debug)]
pub struct Saved {
    pub path: PathBuf,
    pub setup: Box<StoredSetup>,
    /// The check record next to the config, as it is now.
    pub last_check: Option<LastCheck>,
}

/// What a save wrote, or why it failed.
pub type SaveResult = Result<Saved, Diagnosis>;

/// The last recorded verification of the setup at `paths` (small local file).
pub fn recorded_check(paths: &ConfigPaths) -> Option<LastCheck> {
    last_check::load(paths)
}

fn record(paths: &ConfigPaths, report: &VerificationReport) {
    match last_check::save(paths, report) {
        Ok(()) => tracing::debug!(run = %report.run_id, "check result recorded"),
        Err(error) => tracing::warn!(%error, "could not record the check result"),
    }
}

/// The saved setup as it is on disk after a job, for the status view.
#[derive(Debug)]
pub struct SavedState {
    /// `None` when it no longer loads (the status view keeps what it showed).
    pub setup: Option<Box<StoredSetup>>,
    pub last_check: Option<LastCheck>,
}

impl SavedState {
    fn read(paths: &ConfigPaths) -> SavedState {
        SavedState {
            setup: store::load(paths).ok().map(Box::new),
            last_check: last_check::load(paths),
        }
    }
}

/// Everything the wizard's verification run needs.
pub struct VerifyRequest {
    pub profile: Profile,
    pub identities: Identities,
    /// The signed-in tokens (used as they are unless `saved` is set).
    pub tokens: TokenSet,
    /// Set when the wizard's tokens are the ones saved here: the run then takes its tokens
    /// from the store, refreshes under the lock, keeps the rotated token on disk and records
    /// the result, exactly as `mailgrant check` does.
    pub saved: Option<ConfigPaths>,
    /// The settings checked are the ones saved there (no unsaved edit): only then is the
    /// result recorded next to them.
    pub settings_saved: bool,
}

/// A finished verification run.
#[derive(Debug)]
pub struct VerifyDone {
    pub report: VerificationReport,
    /// The newest tokens; a refresh may have rotated the refresh token.
    pub tokens: TokenSet,
    /// Set when the run refreshed the in-memory (unsaved) tokens: when, and whether the
    /// provider rotated the refresh token.
    pub refreshed: Option<Refreshed>,
    /// The saved setup after the run, when the run was on a saved setup.
    pub saved: Option<SavedState>,
}

/// A refresh of unsaved tokens during the Verify step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refreshed {
    pub at: time::OffsetDateTime,
    /// The provider sent a new refresh token.
    pub rotated: bool,
}

impl Refreshed {
    /// What the run did to `before`, judged from the refresh check's outcome and the tokens it
    /// handed back.
    fn judge(before: &TokenSet, report: &VerificationReport, after: &TokenSet) -> Option<Self> {
        let passed = report.get(CheckId::Refresh).is_some_and(|c| c.outcome == Outcome::Passed);
        if !passed {
            return None;
        }
        let secret = |t: &TokenSet| t.refresh_token.as_ref().map(|r| r.secret().clone());
        Some(Refreshed { at: after.obtained_at, rotated: secret(before) != secret(after) })
    }
}

/// A finished run, or why it could not start.
pub type VerifyResult = Result<Box<VerifyDone>, Diagnosis>;

/// Runs the whole verification plan on a worker thread, reporting each check as it starts
/// and ends.
pub fn verify(tasks: &TaskRunner, attempt: Attempt, request: VerifyRequest) -> std::io::Result<()> {
    tasks.spawn("mailgrant-verify", move |reporter| {
        let result = run_verify(&reporter, attempt, request);
        reporter.send(TaskEvent::VerifyFinished { attempt, result });
    })
}

fn run_verify(reporter: &Reporter, attempt: Attempt, request: VerifyRequest) -> VerifyResult {
    let VerifyRequest { profile, identities, tokens, saved, settings_saved } = request;
    let trust = Trust::load(profile.extra_ca_file.as_deref()).map_err(|e| diagnose::trust(&e))?;
    let progress = |result: &CheckResult| {
        reporter.send(TaskEvent::CheckProgress { attempt, result: Box::new(result.clone()) });
    };

    let Some(paths) = saved else {
        // Before Save: the in-memory tokens, refreshed in memory; the rotated refresh token
        // comes back in `tokens` for the Save step to write.
        let before = tokens.clone();
        let input = VerifyInput { profile, trust, tokens, identities, refresher: None, only: None };
        let (report, tokens) = verify::run(input, progress);
        let refreshed = Refreshed::judge(&before, &report, &tokens);
        return Ok(Box::new(VerifyDone { report, tokens, refreshed, saved: None }));
    };
    // Only a run of the settings saved there describes them; a run of unsaved edits (with the
    // saved tokens) still keeps a rotated token on disk, but is not recorded next to them.
    let record = if settings_saved { Record::WholePlan } else { Record::Nothing };
    let (report, tokens) = run_on_saved(&paths, profile, trust, identities, record, progress)?;
    let saved = Some(SavedState::read(&paths));
    Ok(Box::new(VerifyDone { report, tokens, refreshed: None, saved }))
}

/// Which runs on a saved setup are recorded next to it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Record {
    /// The whole plan, on the saved settings.
    WholePlan,
    /// Only these checks, on the saved settings (not recorded yet, see below).
    Only(Vec<CheckId>),
    /// The whole plan on edited, unsaved settings: never recorded.
    Nothing,
}

/// Verification on a saved setup, mirroring `mailgrant check`: tokens from the store, refresh
/// under the lock (the rotated token is on disk before it is used), a whole-plan result
/// recorded.
fn run_on_saved(
    paths: &ConfigPaths,
    profile: Profile,
    trust: Trust,
    identities: Identities,
    record_as: Record,
    progress: impl FnMut(&CheckResult),
) -> Result<(VerificationReport, TokenSet), Diagnosis> {
    let tokens = session::tokens(paths, &profile, &trust, Freshness::CachedIfValid)
        .map_err(|e| e.diagnosis(&profile))?;

    let refresh_profile = profile.clone();
    let refresh_trust = trust.clone();
    let refresher: verify::Refresher<'_> = Box::new(move |_stale| {
        session::tokens(paths, &refresh_profile, &refresh_trust, Freshness::ForceRefresh)
            .map_err(|e| e.diagnosis(&refresh_profile))
    });
    let only = match &record_as {
        Record::Only(only) => Some(only.clone()),
        Record::WholePlan | Record::Nothing => None,
    };
    let input =
        VerifyInput { profile, trust, tokens, identities, refresher: Some(refresher), only };
    let (report, tokens) = verify::run(input, progress);
    if record_as == Record::WholePlan {
        record(paths, &report);
    } else if record_as == Record::Nothing {
        tracing::info!(run = %report.run_id, "run of unsaved settings not recorded");
    } else {
        // Not recorded, a known gap: `store::last_check` keeps one whole run, so a single
        // check written there would replace every other check's last result with "skipped".
        // Recording it needs per-check times and merging in `store::last_check`.
        tracing::debug!(run = %report.run_id, "single check not recorded");
    }
    Ok((report, tokens))
}

/// A status-view button.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StatusJob {
    /// Send a test message to this address.
    SendTestEmail {
        to: String,
    },
    CheckInbox,
    RefreshNow,
}

impl StatusJob {
    /// Names the job in the outcome line.
    pub fn title(&self) -> &'static str {
        match self {
            StatusJob::SendTestEmail { .. } => "Test e-mail",
            StatusJob::CheckInbox => "Inbox check",
            StatusJob::RefreshNow => "Token refresh",
        }
    }

    /// The check this job runs, if it runs one.
    pub fn check(&self) -> Option<CheckId> {
        match self {
            StatusJob::SendTestEmail { .. } => Some(CheckId::Smtp),
            StatusJob::CheckInbox => Some(CheckId::Imap),
            StatusJob::RefreshNow => None,
        }
    }
}

/// How a status-view button's job ended, and the saved setup after it.
#[derive(Debug)]
pub struct StatusOutcome {
    pub title: &'static str,
    pub result: Result<String, Diagnosis>,
    pub saved: SavedState,
}

/// Runs a status-view button's job on the saved setup at `paths` on a worker thread.
pub fn status_job(
    tasks: &TaskRunner,
    attempt: Attempt,
    paths: ConfigPaths,
    job: StatusJob,
) -> std::io::Result<()> {
    tasks.spawn("mailgrant-status", move |reporter| {
        let result = run_status_job(&reporter, attempt, &paths, &job);
        match &result {
            Ok(_) => tracing::info!(job = job.title(), "status action succeeded"),
            Err(d) => tracing::warn!(job = job.title(), diagnosis = d.id, "status action failed"),
        }
        let outcome = StatusOutcome { title: job.title(), result, saved: SavedState::read(&paths) };
        reporter.send(TaskEvent::StatusFinished { attempt, outcome: Box::new(outcome) });
    })
}

fn run_status_job(
    reporter: &Reporter,
    attempt: Attempt,
    paths: &ConfigPaths,
    job: &StatusJob,
) -> Result<String, Diagnosis> {
    let setup = store::load(paths).map_err(|e| diagnose::config::store(&e))?;
    let mut profile =
        setup.config.to_profile(&setup.secrets).map_err(|e| diagnose::config::store(&e))?;
    let trust = Trust::load(profile.extra_ca_file.as_deref()).map_err(|e| diagnose::trust(&e))?;

    let Some(check) = job.check() else {
        let tokens = session::tokens(paths, &profile, &trust, Freshness::ForceRefresh)
            .map_err(|e| e.diagnosis(&profile))?;
        return Ok(match tokens.access_expires_at {
            Some(at) => format!(
                "new access token, valid until {:02}:{:02} UTC; the refresh token is saved",
                at.hour(),
                at.minute()
            ),
            None => "new access token received; the refresh token is saved".to_owned(),
        });
    };
    if let StatusJob::SendTestEmail { to } = job {
        profile.test_recipient = to.clone();
    }

    let progress = |result: &CheckResult| {
        if result.id == check {
            reporter.send(TaskEvent::CheckProgress { attempt, result: Box::new(result.clone()) });
        }
    };
    let identities = setup.config.identities();
    let (report, _tokens) =
        run_on_saved(paths, profile, trust, identities, Record::Only(vec![check]), progress)?;
    match report.get(check).map(|c| (&c.outcome, c.summary.clone())) {
        Some((Outcome::Passed, summary)) => Ok(summary),
        Some((Outcome::Warning(d) | Outcome::Failed(d), _)) => Err(d.clone()),
        _ => Err(Diagnosis::new(
            "check-not-run",
            "The check did not run",
            "The verification plan skipped it",
            "Run all checks from the Verify step",
            diagnose::Retry::Permanent,
        )),
    }
}

/// Lists the numbered backups of the setup at `paths` on a worker thread.
pub fn list_backups(
    tasks: &TaskRunner,
    attempt: Attempt,
    paths: ConfigPaths,
) -> std::io::Result<()> {
    tasks.spawn("mailgrant-backups", move |reporter| {
        let result = store::list_backups(&paths).map_err(|e| diagnose::config::store(&e));
        if let Err(d) = &result {
            tracing::warn!(diagnosis = d.id, "could not list the backups");
        }
        reporter.send(TaskEvent::BackupsListed { attempt, result });
    })
}

/// What a restore did, and the setup as it is on disk afterwards.
pub struct Restored {
    /// The backup put back.
    pub number: u32,
    /// The backup now holding the files the restore replaced.
    pub previous_backup: Option<u32>,
    /// The refresh token on disk was newer than the backup's and was kept.
    pub kept_newer_refresh_token: bool,
    /// The setup after the restore, read back the way the window reads it when it opens.
    pub startup: Startup,
    pub last_check: Option<LastCheck>,
}

impl std::fmt::Debug for Restored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Restored")
            .field("number", &self.number)
            .field("previous_backup", &self.previous_backup)
            .field("kept_newer_refresh_token", &self.kept_newer_refresh_token)
            .finish_non_exhaustive()
    }
}

/// Puts backup `number` back in place (`store::restore_backup`) on a worker thread.
pub fn restore_backup(
    tasks: &TaskRunner,
    attempt: Attempt,
    paths: ConfigPaths,
    number: u32,
) -> std::io::Result<()> {
    tasks.spawn("mailgrant-restore", move |reporter| {
        let result = match store::restore_backup(&paths, number) {
            Ok(saved) => Ok(Box::new(Restored {
                number,
                previous_backup: saved.backup,
                kept_newer_refresh_token: saved.kept_newer_refresh_token,
                startup: load_existing(&paths),
                last_check: last_check::load(&paths),
            })),
            Err(error) => {
                tracing::error!(number, "restoring a backup failed");
                Err(diagnose::config::store(&error))
            }
        };
        reporter.send(TaskEvent::RestoreFinished { attempt, result });
    })
}

/// What signing out did, and the setup as it is on disk afterwards.
pub struct SignedOut {
    /// "Signed out: the stored tokens of … were removed."
    pub done: String,
    /// How to revoke the grant on the provider's side.
    pub revoke_instructions: &'static str,
    pub startup: Startup,
    pub last_check: Option<LastCheck>,
}

impl std::fmt::Debug for SignedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedOut").field("done", &self.done).finish_non_exhaustive()
    }
}

/// Removes the stored tokens (`session::sign_out`, as `mailgrant sign-out` does) on a worker
/// thread; the client secret and the settings stay.
pub fn sign_out(tasks: &TaskRunner, attempt: Attempt, paths: ConfigPaths) -> std::io::Result<()> {
    tasks.spawn("mailgrant-sign-out", move |reporter| {
        let result = store::load_config(&paths)
            .and_then(|config| session::sign_out(&paths).map(|()| config))
            .map(|config| {
                Box::new(SignedOut {
                    done: diagnose::sign_out::done(&config.mailbox),
                    revoke_instructions: session::revoke_instructions(&config),
                    startup: load_existing(&paths),
                    last_check: last_check::load(&paths),
                })
            })
            .map_err(|error| {
                tracing::error!("signing out failed");
                diagnose::config::store(&error)
            });
        reporter.send(TaskEvent::SignOutFinished { attempt, result });
    })
}

/// Writes the support bundle of the setup at `paths` to `out` on a worker thread (it runs the
/// pre-flight network checks, which take a few seconds).
pub fn write_bundle(
    tasks: &TaskRunner,
    attempt: Attempt,
    paths: ConfigPaths,
    out: PathBuf,
) -> std::io::Result<()> {
    tasks.spawn("mailgrant-bundle", move |reporter| {
        let result = match crate::bundle::write(&paths, &out) {
            Ok(_bundle) => Ok(out),
            Err(error) => {
                tracing::error!(out = %out.display(), "writing the support bundle failed");
                Err(diagnose::preflight::bundle_write(&error))
            }
        };
        reporter.send(TaskEvent::BundleWritten { attempt, result });
    })
}

/// Where the support bundle goes unless the operator types another path: next to the config,
/// `<stem>.support-<YYYYMMDD-HHMMSS>.json` (UTC).
pub fn default_bundle_path(paths: &ConfigPaths, now: time::OffsetDateTime) -> PathBuf {
    let stamp = format!(
        "{:04}{:02}{:02}-{:02}{:02}{:02}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    );
    paths.dir().join(format!("{}.support-{stamp}.json", paths.stem()))
}

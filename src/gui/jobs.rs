//! The worker jobs behind the buttons: each runs library code on a named thread and reports
//! through [`TaskRunner`]. Nothing else in the GUI calls the file store or the network-facing
//! library.

use std::path::PathBuf;

use crate::diagnose::{self, Diagnosis, Retry};
use crate::gui::tasks::{Attempt, CancelHandle, Reporter, SignInOutcome, TaskEvent, TaskRunner};
use crate::gui::wizard::sign_in::SIGN_IN_TIMEOUT;
use crate::oauth::{self, PendingSignIn, SignInError, TokenClient, TokenSet};
use crate::profile::Profile;
use crate::store::{
    self, ConfigPaths, Identities, SaveOptions, Secrets, ServiceConfig, StoredSetup,
};
use crate::trust::{Trust, TrustError};

/// The browser sign-in through `oauth::PendingSignIn`.
pub const SIGN_IN_AVAILABLE: bool = true;
/// False until `verify::run` is in the tree.
pub const VERIFY_AVAILABLE: bool = false;
/// Saving through `store::save_with`.
pub const SAVE_AVAILABLE: bool = true;
/// False until the mail checks and token refresh are wired in.
pub const STATUS_ACTIONS_AVAILABLE: bool = false;

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
        Err(error) => return SignInOutcome::Failed(trust_diagnosis(&error)),
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

/// The extra CA file could not be used.
// TODO(gui, issue 2): move into `diagnose` (no `diagnose::trust` exists yet; asked the lead).
fn trust_diagnosis(error: &TrustError) -> Diagnosis {
    Diagnosis::new(
        "extra-ca-file-unusable",
        error.to_string(),
        "The extra CA certificate file is missing, unreadable or holds no PEM certificate",
        "Fix the path under Mailbox > Extra CA certificate file, or clear it to use only the \
         system's certificates",
        Retry::Permanent,
    )
}

/// Everything a save needs, taken from the finished wizard.
pub struct SaveRequest {
    pub paths: ConfigPaths,
    pub profile: Profile,
    pub identities: Identities,
    pub tokens: TokenSet,
    /// The operator agreed to replace a file that does not parse.
    pub overwrite_unparsable: bool,
}

/// Writes config and secrets on a worker thread.
pub fn save(tasks: &TaskRunner, attempt: Attempt, request: SaveRequest) -> std::io::Result<()> {
    tasks.spawn("mailgrant-save", move |reporter| {
        let SaveRequest { paths, profile, identities, tokens, overwrite_unparsable } = request;
        let config = ServiceConfig::from_profile(&profile, &identities);
        let secrets = Secrets::from_sign_in(&tokens, profile.client_secret.clone());
        let options = SaveOptions { overwrite_unparsable };

        let result = match store::save_with(&paths, &config, &secrets, options) {
            Ok(saved) => {
                tracing::info!(config = %paths.config.display(), backup = ?saved.backup, "saved");
                let setup = StoredSetup { config: saved.config, secrets: saved.secrets };
                Ok((paths.config.clone(), Box::new(setup)))
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

/// The config paths from `--config`, or the platform default.
pub fn config_paths(config_path: Option<&std::path::Path>) -> Option<ConfigPaths> {
    match config_path {
        Some(path) => Some(ConfigPaths::for_config(path)),
        None => ConfigPaths::default_location(),
    }
}

/// The path a successful save wrote, with the setup as written.
pub type SaveResult = Result<(PathBuf, Box<StoredSetup>), Diagnosis>;

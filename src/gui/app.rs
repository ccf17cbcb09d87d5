//! The window: step list on the left, the current step or view in the middle, Back/Next below.
//!
//! Each frame, [`eframe::App::logic`] applies what the workers reported; [`eframe::App::ui`]
//! draws and collects the operator's [`Action`]s, which are applied after drawing.

use std::collections::HashSet;

use crate::gui::backups::{BackupList, BackupsAction, RestoreNote};
use crate::gui::form::{self, FormFeedback};
use crate::gui::jobs::{Reread, SavedState, Startup, StatusJob, VerifyRequest};
use crate::gui::log_pane::LogPane;
use crate::gui::nav::{self, Progress, Step, View};
use crate::gui::sign_out::SignedOutNote;
use crate::gui::status::{ActionOutcome, StatusAction, StatusData, StatusPanel};
use crate::gui::support_bundle::BundleAction;
use crate::gui::tasks::{Attempt, Reporter, SignInOutcome, TaskEvent, TaskRunner};
use crate::gui::wizard::mailbox::{self, MailboxStep};
use crate::gui::wizard::registration::{self, RegistrationStep};
use crate::gui::wizard::save::{ExistingConfig, SaveAction, SaveContext, SaveStep};
use crate::gui::wizard::sign_in::{RefreshRecord, SignInAction, SignInState, SignInStep, SignedIn};
use crate::gui::wizard::verify::{self, CheckRow, VerifyAction, VerifyStep};
use crate::gui::{GuiOptions, jobs, theme};
use crate::profile::{Field, ProfileForm};
use crate::store::last_check::LastCheck;
use crate::store::{ConfigPaths, StoredSetup};

/// Something the operator asked for while the frame was drawn.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Action {
    Show(View),
    Next,
    Back,
    /// These fields were edited.
    Edited(Vec<Field>),
    ProviderChanged,
    SignIn(SignInAction),
    Verify(VerifyAction),
    Save(SaveAction),
    Status(StatusAction),
    /// The window got the keyboard focus back (the operator may have run a command meanwhile).
    Focused,
}

/// Why the last Next (or sign-in, or check run) was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Blocked {
    /// Fields of this step have errors; the note is shown only while one of them is still red.
    FieldErrors(Step),
    /// Anything else, until the operator edits a field or moves on.
    Note(String),
}

/// The mailgrant window's state.
pub struct MailgrantApp {
    /// Where the config is read and written; `None` when no location could be found.
    paths: Option<ConfigPaths>,
    form: ProfileForm,
    touched: HashSet<Field>,
    view: View,
    progress: Progress,
    /// Why the last Next was refused.
    blocked: Option<Blocked>,
    registration: RegistrationStep,
    mailbox: MailboxStep,
    sign_in: SignInStep,
    /// The signed-in tokens are the ones saved at `paths` (opened from there, or saved):
    /// refreshing them must then go through the store so the rotated token is kept on disk.
    tokens_saved: bool,
    verify: VerifyStep,
    /// The form the running or last verification checked; its report describes only that.
    verified_form: Option<ProfileForm>,
    save: SaveStep,
    existing: ExistingConfig,
    /// The form of the setup saved at `paths`, as last read or written; the wizard holds
    /// unsaved edits while `form` differs.
    saved_form: Option<ProfileForm>,
    /// The read of the saved setup in progress (status view opened, window focused).
    reread: Option<Attempt>,
    save_attempt: Attempt,
    status: StatusPanel,
    log: LogPane,
    tasks: TaskRunner,
}

impl MailgrantApp {
    /// The app as eframe creates it: theme applied, saved setup (if any) loaded.
    pub fn new(cc: &eframe::CreationContext<'_>, options: GuiOptions) -> MailgrantApp {
        theme::apply(&cc.egui_ctx);
        MailgrantApp::with_context(cc.egui_ctx.clone(), options)
    }

    /// The app on a given context (tests build it this way too).
    pub fn with_context(ctx: egui::Context, options: GuiOptions) -> MailgrantApp {
        let paths = jobs::config_paths(options.config_path.as_deref());
        let mut app = MailgrantApp {
            paths: paths.clone(),
            form: ProfileForm::default(),
            touched: HashSet::new(),
            view: View::Wizard(Step::Registration),
            progress: Progress::default(),
            blocked: None,
            registration: RegistrationStep::default(),
            mailbox: MailboxStep,
            sign_in: SignInStep::default(),
            tokens_saved: false,
            verify: VerifyStep::default(),
            verified_form: None,
            save: SaveStep::default(),
            existing: ExistingConfig::None,
            saved_form: None,
            reread: None,
            save_attempt: 0,
            status: StatusPanel::default(),
            log: LogPane,
            tasks: TaskRunner::new(ctx),
        };
        if let Some(paths) = &paths {
            let last_check = jobs::recorded_check(paths);
            let found = jobs::load_existing(paths);
            if !matches!(found, Startup::Nothing) {
                // A returning operator lands on the status view.
                app.view = View::Status;
            }
            app.open_existing(found, &paths.config, last_check.as_ref());
        }
        app
    }

    /// Takes what was found at the config path into the wizard and the status view.
    fn open_existing(
        &mut self,
        found: Startup,
        path: &std::path::Path,
        last_check: Option<&LastCheck>,
    ) {
        let source = path.display().to_string();
        match found {
            Startup::Nothing => return,
            Startup::Loaded(setup) => {
                tracing::info!(config = %source, "opened saved setup");
                self.form = setup.config.to_form_with_secret(&setup.secrets);
                self.saved_form = Some(self.form.clone());
                self.existing = ExistingConfig::Valid;
                self.status.load_problem = None;
                // Signed out, or no tokens stored: nothing to refresh or check with.
                self.tokens_saved = false;
                self.sign_in.state = SignInState::Idle;
                if let Some(tokens) = setup.secrets.token_set() {
                    self.tokens_saved = true;
                    let identities = setup.config.identities();
                    self.sign_in.state = SignInState::SignedIn(SignedIn {
                        account: tokens
                            .identity
                            .as_ref()
                            .and_then(|i| i.account())
                            .map(str::to_owned),
                        tokens,
                        // The saved identities were decided when this setup was made.
                        shared_mailbox_confirmed: identities.smtp_user != identities.imap_user,
                        record: RefreshRecord::stored(&setup.secrets),
                    });
                }
                self.status.data = Some(status_data(&setup, last_check));
            }
            Startup::SecretsUnusable { config, problem } => {
                self.form = config.to_form();
                self.saved_form = Some(self.form.clone());
                self.existing = ExistingConfig::Valid;
                self.status.data = None;
                self.status.load_problem = Some(problem);
            }
            Startup::Broken(problem) => {
                self.existing = ExistingConfig::Broken(problem.clone());
                self.status.data = None;
                self.status.load_problem = Some(problem);
            }
        }
        self.status.source = Some(source);
        let form_ok = self.form.validate().is_ok();
        self.progress.set_done(Step::Registration, form_ok);
        self.progress.set_done(Step::Mailbox, form_ok);
        let signed_in = self.sign_in.is_complete(self.form.mailbox.trim());
        self.progress.set_done(Step::SignIn, form_ok && signed_in);
    }

    /// What the main area shows.
    pub fn view(&self) -> View {
        self.view
    }

    /// The form as typed so far.
    pub fn form(&self) -> &ProfileForm {
        &self.form
    }

    /// True when the step is marked done in the step list.
    pub fn is_done(&self, step: Step) -> bool {
        self.progress.is_done(step)
    }

    /// Where the sign-in stands.
    pub fn sign_in_state(&self) -> &SignInState {
        &self.sign_in.state
    }

    /// The checklist rows of the Verify step, as shown.
    pub fn verify_rows(&self) -> &[CheckRow] {
        &self.verify.rows
    }

    /// True while the Verify step's checks run.
    pub fn verify_running(&self) -> bool {
        self.verify.running.is_some()
    }

    /// True while a status-view button's job runs.
    pub fn status_busy(&self) -> bool {
        self.status.busy.is_some()
    }

    /// Reports to this window exactly as a worker thread does.
    pub fn reporter(&self) -> Reporter {
        self.tasks.reporter()
    }

    fn apply(&mut self, action: Action) {
        match action {
            Action::Show(view) => {
                self.blocked = None;
                if view == View::Status && self.view != View::Status {
                    self.start_reread();
                }
                self.view = view;
            }
            Action::Focused => {
                if self.view == View::Status {
                    self.start_reread();
                }
            }
            Action::Next => self.next(),
            Action::Back => {
                if let View::Wizard(step) = self.view
                    && let Some(previous) = step.previous()
                {
                    self.blocked = None;
                    self.view = View::Wizard(previous);
                }
            }
            Action::Edited(fields) => self.edited(&fields),
            Action::ProviderChanged => self.edited(&[Field::AuthorizeUrl]),
            Action::SignIn(action) => self.sign_in_action(action),
            Action::Verify(VerifyAction::Run) => self.start_verify(),
            Action::Save(SaveAction::Save) => self.start_save(),
            Action::Status(action) => self.status_action(action),
        }
    }

    /// The form fields shown on `step`.
    fn step_fields(&self, step: Step) -> &'static [Field] {
        match step {
            Step::Registration => registration::fields(self.form.provider),
            Step::Mailbox => mailbox::FIELDS,
            Step::SignIn | Step::Verify | Step::Save => &[],
        }
    }

    /// How many fields of `step` are drawn red now (an error, and touched so it shows).
    fn red_fields(&self, step: Step) -> usize {
        let errors = form::errors_in(&self.form, self.step_fields(step));
        let mut red: Vec<Field> =
            errors.iter().map(|p| p.field).filter(|f| self.touched.contains(f)).collect();
        red.dedup();
        red.len()
    }

    /// Next: the step's fields must have no error (warnings do not block).
    fn next(&mut self) {
        let View::Wizard(step) = self.view else { return };
        let fields = self.step_fields(step);
        form::touch_all(&mut self.touched, fields);
        if !form::errors_in(&self.form, fields).is_empty() {
            self.blocked = Some(Blocked::FieldErrors(step));
            return;
        }
        if step == Step::Mailbox
            && let Err(problems) = self.form.validate()
        {
            // A problem in a field of an earlier step (for example after switching provider).
            let first = problems.first().map(ToString::to_string).unwrap_or_default();
            self.blocked = Some(Blocked::Note(format!("Go back and fix: {first}")));
            return;
        }
        if step == Step::SignIn && !self.sign_in.is_complete(&self.form.mailbox) {
            self.blocked = Some(Blocked::Note("Sign in first".to_owned()));
            return;
        }

        self.blocked = None;
        self.progress.set_done(step, true);
        tracing::info!(step = step.title(), "wizard step completed");
        if let Some(next) = step.next() {
            self.view = View::Wizard(next);
        }
    }

    /// Edits after sign-in: fields that change what the token is for void the sign-in; any
    /// edit voids the checks.
    fn edited(&mut self, fields: &[Field]) {
        let affects_sign_in = fields.iter().any(|f| {
            matches!(
                f,
                Field::Tenant
                    | Field::ClientId
                    | Field::ClientSecret
                    | Field::AuthorizeUrl
                    | Field::TokenUrl
                    | Field::Scopes
                    | Field::Mailbox
            )
        });
        if affects_sign_in && matches!(self.sign_in.state, SignInState::SignedIn(_)) {
            tracing::info!("settings changed after sign-in; sign in again");
            self.sign_in.state = SignInState::Idle;
        }
        if let View::Wizard(step) = self.view {
            // An edited step is done again once Next accepts it.
            self.progress.set_done(step, false);
        }
        if matches!(self.blocked, Some(Blocked::Note(_))) {
            self.blocked = None;
        }
        if self.verify.running.is_none() {
            self.verify.reset();
        }
    }

    fn sign_in_action(&mut self, action: SignInAction) {
        match action {
            SignInAction::Start => self.start_sign_in(),
            SignInAction::Cancel => {
                if let SignInState::Waiting { attempt, cancel, .. } = &self.sign_in.state {
                    tracing::info!("sign-in cancelled by the operator");
                    cancel.cancel();
                    self.sign_in.state = SignInState::Cancelling { attempt: *attempt };
                }
            }
            SignInAction::SetSharedMailbox(confirmed) => {
                if let SignInState::SignedIn(signed_in) = &mut self.sign_in.state {
                    signed_in.shared_mailbox_confirmed = confirmed;
                    tracing::info!(confirmed, "shared mailbox choice");
                }
            }
        }
    }

    fn start_sign_in(&mut self) {
        let profile = match self.form.validate() {
            Ok((profile, _warnings)) => profile,
            Err(_) => {
                self.view = View::Wizard(Step::Registration);
                self.blocked = Some(Blocked::Note("Fix the settings before signing in".to_owned()));
                return;
            }
        };
        self.view = View::Wizard(Step::SignIn);
        self.progress.set_done(Step::SignIn, false);
        let attempt = self.tasks.next_attempt();
        self.sign_in.state = SignInState::Starting { attempt };
        if let Err(error) = jobs::sign_in(&self.tasks, attempt, profile) {
            tracing::error!(%error, "could not start the sign-in thread");
            self.sign_in.state = SignInState::Idle;
        }
    }

    fn start_verify(&mut self) {
        if self.verify.running.is_some() {
            return;
        }
        let Ok((profile, _)) = self.form.validate() else {
            self.view = View::Wizard(Step::Registration);
            let note = "Fix the settings before running the checks".to_owned();
            self.blocked = Some(Blocked::Note(note));
            return;
        };
        let SignInState::SignedIn(signed_in) = &self.sign_in.state else { return };
        let Some(identities) = signed_in.identities(&profile.mailbox) else { return };
        let request = VerifyRequest {
            profile,
            identities,
            tokens: signed_in.tokens.clone(),
            saved: if self.tokens_saved { self.paths.clone() } else { None },
            settings_saved: self.saved_form.as_ref() == Some(&self.form),
        };
        let attempt = self.tasks.next_attempt();
        self.verify.start(attempt);
        self.verified_form = Some(self.form.clone());
        tracing::info!(saved_setup = request.saved.is_some(), "verification requested");
        if let Err(error) = jobs::verify(&self.tasks, attempt, request) {
            tracing::error!(%error, "could not start the verification thread");
            self.verify.reset();
        }
    }

    /// Takes what a worker found on disk after it ran on the saved setup.
    fn apply_saved_state(&mut self, saved: SavedState) {
        match saved.setup {
            Some(setup) => {
                if self.tokens_saved
                    && let SignInState::SignedIn(signed_in) = &mut self.sign_in.state
                    && let Some(tokens) = setup.secrets.token_set()
                {
                    // The store may have rotated the refresh token: keep the wizard in step.
                    signed_in.tokens = tokens;
                    signed_in.record = RefreshRecord::stored(&setup.secrets);
                }
                self.status.data = Some(status_data(&setup, saved.last_check.as_ref()));
            }
            None => {
                if let (Some(data), Some(last)) = (&mut self.status.data, &saved.last_check) {
                    data.last_checks = verify::recorded_rows(last);
                    data.last_checked_at = Some(last.started_at);
                }
            }
        }
    }

    fn start_save(&mut self) {
        let (Some(paths), Ok((profile, _))) = (self.paths.clone(), self.form.validate()) else {
            return;
        };
        let SignInState::SignedIn(signed_in) = &self.sign_in.state else { return };
        let Some(identities) = signed_in.identities(&profile.mailbox) else { return };
        let overwrite_unparsable =
            matches!(self.existing, ExistingConfig::Broken(_)) && self.save.confirm_replace_broken;
        let report = self.verify.report.clone().filter(|_| self.verification_is_current());
        if self.verify.report.is_some() && report.is_none() {
            tracing::info!("the last checks ran on other settings; they are not recorded");
        }
        let request = jobs::SaveRequest {
            paths,
            profile,
            identities,
            tokens: signed_in.tokens.clone(),
            record: signed_in.record,
            overwrite_unparsable,
            report,
        };
        let attempt = self.tasks.next_attempt();
        self.save.saving = true;
        self.save.result = None;
        self.save_attempt = attempt;
        if let Err(error) = jobs::save(&self.tasks, attempt, request) {
            tracing::error!(%error, "could not start the save thread");
            self.save.saving = false;
        }
    }

    /// True when the last verification checked the settings as they are now.
    fn verification_is_current(&self) -> bool {
        self.verified_form.as_ref() == Some(&self.form)
    }

    /// True when the wizard holds nothing the saved setup does not: no unsaved edit, no
    /// unsaved or pending sign-in, no run of the checks.
    fn wizard_matches_saved(&self) -> bool {
        let tokens_at_rest = match self.sign_in.state {
            SignInState::SignedIn(_) => self.tokens_saved,
            SignInState::Idle | SignInState::CancelledByOperator | SignInState::Failed(_) => true,
            SignInState::Starting { .. }
            | SignInState::Waiting { .. }
            | SignInState::Cancelling { .. } => false,
        };
        tokens_at_rest
            && self.verify.running.is_none()
            && !self.save.saving
            && self.saved_form.as_ref() == Some(&self.form)
    }

    /// Reads the saved setup again on a worker; its report updates the status view.
    fn start_reread(&mut self) {
        let Some(paths) = self.paths.clone() else { return };
        if self.reread.is_some() {
            return;
        }
        let attempt = self.tasks.next_attempt();
        self.reread = Some(attempt);
        if let Err(error) = jobs::reread(&self.tasks, attempt, paths) {
            tracing::error!(%error, "could not start the reread thread");
            self.reread = None;
        }
    }

    /// Shows the setup as read again from disk. A job that changes the stored setup reports
    /// the state after it itself, so a read that overlaps one is dropped.
    fn reread_finished(&mut self, reread: Reread) {
        let Some(paths) = self.paths.clone() else { return };
        if self.status.job_running() || self.save.saving {
            tracing::debug!("reread overlapped a job that changes the setup; dropped");
            return;
        }
        let Reread { startup, last_check } = reread;
        if !self.status.shows_same(&startup) {
            tracing::info!(config = %paths.config.display(), "the saved setup changed on disk");
            self.status.setup_replaced();
            self.status.backups.list = BackupList::Stale;
        }
        if matches!(startup, Startup::Nothing) {
            self.status.data = None;
            self.status.load_problem = None;
            self.status.source = None;
            self.existing = ExistingConfig::None;
            self.saved_form = None;
            self.tokens_saved = false;
            return;
        }
        if self.wizard_matches_saved() {
            self.open_existing(startup, &paths.config, last_check.as_ref());
            return;
        }
        // The wizard holds work of its own: only the status view follows the disk.
        match startup {
            Startup::Loaded(setup) => {
                self.status.load_problem = None;
                self.apply_saved_state(SavedState { setup: Some(setup), last_check });
            }
            Startup::SecretsUnusable { problem, .. } | Startup::Broken(problem) => {
                self.status.data = None;
                self.status.load_problem = Some(problem);
            }
            Startup::Nothing => {}
        }
    }

    fn status_action(&mut self, action: StatusAction) {
        let job = match action {
            StatusAction::SignInAgain => return self.sign_in_action(SignInAction::Start),
            StatusAction::SendTestEmail { to } => StatusJob::SendTestEmail { to },
            StatusAction::CheckInbox => StatusJob::CheckInbox,
            StatusAction::RefreshNow => StatusJob::RefreshNow,
            StatusAction::SignOut => return self.start_sign_out(),
            StatusAction::Backups(BackupsAction::List) => return self.start_list_backups(),
            StatusAction::Backups(BackupsAction::Restore(number)) => {
                return self.start_restore(number);
            }
            StatusAction::Bundle(BundleAction::Open) => return self.open_bundle(),
            StatusAction::Bundle(BundleAction::Write(out)) => return self.start_bundle(out),
        };
        let Some(paths) = self.paths.clone() else { return };
        if self.status.job_running() {
            return;
        }
        let attempt = self.tasks.next_attempt();
        self.status.busy = Some(attempt);
        self.status.last_outcome = None;
        self.status.action_rows = job.check().map(CheckRow::waiting).into_iter().collect();
        tracing::info!(job = job.title(), "status action requested");
        if let Err(error) = jobs::status_job(&self.tasks, attempt, paths, job) {
            tracing::error!(%error, "could not start the status thread");
            self.status.busy = None;
        }
    }

    fn start_list_backups(&mut self) {
        let Some(paths) = self.paths.clone() else { return };
        let attempt = self.tasks.next_attempt();
        self.status.backups.list = BackupList::Loading(attempt);
        if let Err(error) = jobs::list_backups(&self.tasks, attempt, paths) {
            tracing::error!(%error, "could not start the backup listing thread");
            self.status.backups.list = BackupList::Stale;
        }
    }

    fn start_restore(&mut self, number: u32) {
        let Some(paths) = self.paths.clone() else { return };
        if self.status.job_running() {
            return;
        }
        let attempt = self.tasks.next_attempt();
        self.status.backups.restoring = Some(attempt);
        self.status.backups.last_restore = None;
        tracing::info!(number, "restore of a backup confirmed");
        if let Err(error) = jobs::restore_backup(&self.tasks, attempt, paths, number) {
            tracing::error!(%error, "could not start the restore thread");
            self.status.backups.restoring = None;
        }
    }

    fn start_sign_out(&mut self) {
        let Some(paths) = self.paths.clone() else { return };
        if self.status.job_running() {
            return;
        }
        let attempt = self.tasks.next_attempt();
        self.status.sign_out.running = Some(attempt);
        self.status.sign_out.outcome = None;
        tracing::info!("sign-out confirmed");
        if let Err(error) = jobs::sign_out(&self.tasks, attempt, paths) {
            tracing::error!(%error, "could not start the sign-out thread");
            self.status.sign_out.running = None;
        }
    }

    /// Opens the bundle's path field with a fresh default file name.
    fn open_bundle(&mut self) {
        let Some(paths) = &self.paths else { return };
        let path = jobs::default_bundle_path(paths, time::OffsetDateTime::now_utc());
        self.status.bundle.path = path.display().to_string();
        self.status.bundle.open = true;
        self.status.bundle.outcome = None;
        self.status.bundle.reveal = true;
    }

    fn start_bundle(&mut self, out: std::path::PathBuf) {
        let Some(paths) = self.paths.clone() else { return };
        if self.status.bundle.writing.is_some() {
            return;
        }
        let attempt = self.tasks.next_attempt();
        self.status.bundle.writing = Some(attempt);
        self.status.bundle.outcome = None;
        if let Err(error) = jobs::write_bundle(&self.tasks, attempt, paths, out) {
            tracing::error!(%error, "could not start the bundle thread");
            self.status.bundle.writing = None;
        }
    }

    /// Shows the setup as a job left it on disk (after a restore or a sign-out).
    fn reopen(&mut self, startup: Startup, last_check: Option<&LastCheck>) {
        let Some(paths) = self.paths.clone() else { return };
        if self.verify.running.is_none() {
            self.verify.reset();
        }
        self.save.result = None;
        // What the view said about the replaced setup no longer holds.
        self.status.setup_replaced();
        self.open_existing(startup, &paths.config, last_check);
        self.view = View::Status;
        self.status.backups.list = BackupList::Stale;
    }

    /// Applies a report of the backups, sign-out or bundle jobs.
    fn handle_maintenance_event(&mut self, event: TaskEvent) {
        match event {
            TaskEvent::BackupsListed { attempt, result } => {
                if matches!(self.status.backups.list, BackupList::Loading(a) if a == attempt) {
                    self.status.backups.list = match result {
                        Ok(backups) => BackupList::Loaded(backups),
                        Err(d) => BackupList::Failed(d),
                    };
                }
            }
            TaskEvent::RestoreFinished { attempt, result } => {
                if self.status.backups.restoring != Some(attempt) {
                    return;
                }
                self.status.backups.restoring = None;
                self.status.backups.last_restore = Some(match result {
                    Ok(restored) => {
                        let restored = *restored;
                        self.reopen(restored.startup, restored.last_check.as_ref());
                        Ok(RestoreNote {
                            number: restored.number,
                            previous_backup: restored.previous_backup,
                            kept_newer_refresh_token: restored.kept_newer_refresh_token,
                        })
                    }
                    Err(d) => Err(d),
                });
            }
            TaskEvent::SignOutFinished { attempt, result } => {
                if self.status.sign_out.running != Some(attempt) {
                    return;
                }
                self.status.sign_out.running = None;
                self.status.sign_out.outcome = Some(match result {
                    Ok(signed_out) => {
                        let signed_out = *signed_out;
                        self.reopen(signed_out.startup, signed_out.last_check.as_ref());
                        Ok(SignedOutNote {
                            done: signed_out.done,
                            revoke_instructions: signed_out.revoke_instructions,
                        })
                    }
                    Err(d) => Err(d),
                });
            }
            TaskEvent::BundleWritten { attempt, result } => {
                if self.status.bundle.writing != Some(attempt) {
                    return;
                }
                self.status.bundle.writing = None;
                if result.is_ok() {
                    self.status.bundle.open = false;
                }
                self.status.bundle.outcome = Some(result);
                self.status.bundle.reveal = true;
            }
            other => tracing::debug!(event = ?other, "not a maintenance report"),
        }
    }

    /// Applies one worker report; reports from abandoned attempts are dropped.
    pub fn handle_event(&mut self, event: TaskEvent) {
        match event {
            TaskEvent::SignInWaiting {
                attempt,
                authorize_url,
                redirect_uri,
                cancel,
                browser_problem,
            } => {
                if let SignInState::Starting { attempt: a } = self.sign_in.state
                    && a == attempt
                {
                    self.sign_in.state = SignInState::Waiting {
                        attempt,
                        authorize_url,
                        redirect_uri,
                        started: std::time::Instant::now(),
                        cancel,
                        browser_problem,
                    };
                } else {
                    // Not ours any more: let the worker go.
                    cancel.cancel();
                }
            }
            TaskEvent::SaveFinished { attempt, result } => {
                if attempt != self.save_attempt {
                    return;
                }
                self.save.saving = false;
                self.save.result = Some(match result {
                    Ok(saved) => {
                        self.existing = ExistingConfig::Valid;
                        self.save.confirm_replace_broken = false;
                        self.progress.set_done(Step::Save, true);
                        self.tokens_saved = true;
                        let setup = &saved.setup;
                        self.saved_form = Some(setup.config.to_form_with_secret(&setup.secrets));
                        // Outcomes of earlier status actions describe the replaced setup.
                        self.status.setup_replaced();
                        self.apply_saved_state(SavedState {
                            setup: Some(saved.setup),
                            last_check: saved.last_check,
                        });
                        self.status.load_problem = None;
                        self.status.source = Some(saved.path.display().to_string());
                        // The save kept the replaced files as a new backup.
                        self.status.backups.list = BackupList::Stale;
                        Ok(saved.path)
                    }
                    Err(diagnosis) => Err(diagnosis),
                });
            }
            TaskEvent::CheckProgress { attempt, result } => {
                let row = CheckRow::from_result(&result);
                if self.verify.running == Some(attempt) {
                    self.verify.upsert(row);
                } else if self.status.busy == Some(attempt) {
                    self.status.action_rows = vec![row];
                }
            }
            TaskEvent::VerifyFinished { attempt, result } => {
                if self.verify.running != Some(attempt) {
                    return;
                }
                self.verify.running = None;
                match result {
                    Ok(done) => self.verify_finished(*done),
                    Err(problem) => {
                        tracing::warn!(diagnosis = problem.id, "verification could not start");
                        self.verify.rows.clear();
                        self.verify.problem = Some(problem);
                    }
                }
            }
            TaskEvent::StatusFinished { attempt, outcome } => {
                if self.status.busy != Some(attempt) {
                    return;
                }
                self.status.busy = None;
                let outcome = *outcome;
                self.status.last_outcome =
                    Some(ActionOutcome { title: outcome.title.to_owned(), result: outcome.result });
                self.apply_saved_state(outcome.saved);
            }
            TaskEvent::Reread { attempt, reread } => {
                if self.reread == Some(attempt) {
                    self.reread = None;
                    self.reread_finished(*reread);
                }
            }
            event @ (TaskEvent::BackupsListed { .. }
            | TaskEvent::RestoreFinished { .. }
            | TaskEvent::SignOutFinished { .. }
            | TaskEvent::BundleWritten { .. }) => self.handle_maintenance_event(event),
            TaskEvent::SignInFinished { attempt, outcome } => {
                let current = match &self.sign_in.state {
                    SignInState::Starting { attempt: a }
                    | SignInState::Waiting { attempt: a, .. }
                    | SignInState::Cancelling { attempt: a } => *a == attempt,
                    _ => false,
                };
                if !current {
                    return;
                }
                self.sign_in.state = match outcome {
                    SignInOutcome::SignedIn(tokens) => {
                        let account =
                            tokens.identity.as_ref().and_then(|i| i.account()).map(str::to_owned);
                        tracing::info!(account = account.as_deref(), "signed in");
                        self.tokens_saved = false;
                        SignInState::SignedIn(SignedIn::new(*tokens, account))
                    }
                    SignInOutcome::Cancelled => SignInState::CancelledByOperator,
                    SignInOutcome::Failed(diagnosis) => {
                        tracing::info!(diagnosis = diagnosis.id, "sign-in failed");
                        SignInState::Failed(diagnosis)
                    }
                };
            }
        }
    }

    fn verify_finished(&mut self, done: jobs::VerifyDone) {
        let jobs::VerifyDone { report, tokens, refreshed, saved } = done;
        self.verify.rows = report.checks.iter().map(CheckRow::from_result).collect();
        self.verify.all_passed = Some(report.all_passed());
        self.verify.finished_at = Some(time::OffsetDateTime::now_utc());
        self.verify.report = Some(report);
        if let SignInState::SignedIn(signed_in) = &mut self.sign_in.state {
            // The refresh check may have rotated the refresh token: Save writes the new one,
            // and records that it was redeemed.
            signed_in.tokens = tokens;
            if let Some(refreshed) = refreshed {
                signed_in.record = signed_in.record.after_refresh(refreshed.at, refreshed.rotated);
            }
        }
        if let Some(saved) = saved {
            self.apply_saved_state(saved);
        }
        if !self.verification_is_current() {
            // Edited while the checks ran: the result describes settings no longer shown.
            tracing::info!("settings changed while the checks ran; their result is dropped");
            self.verify.reset();
        }
    }

    fn wizard_ui(&mut self, ui: &mut egui::Ui, step: Step, actions: &mut Vec<Action>) {
        match step {
            Step::Registration | Step::Mailbox => {
                let mut feedback = FormFeedback::new(&self.form, &mut self.touched);
                let provider_changed = if step == Step::Registration {
                    self.registration.ui(ui, &mut self.form, &mut feedback)
                } else {
                    self.mailbox.ui(ui, &mut self.form, &mut feedback);
                    false
                };
                let edited = feedback.changed_fields().to_vec();
                if !edited.is_empty() {
                    actions.push(Action::Edited(edited));
                }
                if provider_changed {
                    actions.push(Action::ProviderChanged);
                }
            }
            Step::SignIn => {
                let (available, provider) = (jobs::SIGN_IN_AVAILABLE, self.form.provider);
                let mailbox = self.form.mailbox.trim();
                if let Some(action) = self.sign_in.ui(ui, mailbox, provider, available) {
                    actions.push(Action::SignIn(action));
                }
            }
            Step::Verify => {
                let signed_in = self.sign_in.is_complete(self.form.mailbox.trim());
                if let Some(action) = self.verify.ui(ui, signed_in) {
                    actions.push(Action::Verify(action));
                }
            }
            Step::Save => {
                let target = self.paths.as_ref().map(|p| p.config.as_path());
                let context = SaveContext {
                    target,
                    existing: &self.existing,
                    all_passed: self.verify.all_passed.filter(|_| self.verification_is_current()),
                    available: jobs::SAVE_AVAILABLE,
                };
                if let Some(action) = self.save.ui(ui, &context) {
                    actions.push(Action::Save(action));
                }
            }
        }
    }

    fn buttons_ui(&self, ui: &mut egui::Ui, step: Step, actions: &mut Vec<Action>) {
        ui.add_space(6.0);
        ui.horizontal(|ui| {
            match &self.blocked {
                Some(Blocked::FieldErrors(at)) if *at == step => {
                    let red = self.red_fields(step);
                    if red > 0 {
                        let fields = if red == 1 { "field" } else { "fields" };
                        let note = format!("Fix the {fields} marked in red to go on");
                        ui.colored_label(theme::error_color(ui), note);
                    }
                }
                Some(Blocked::Note(note)) => {
                    ui.colored_label(theme::error_color(ui), note);
                }
                Some(Blocked::FieldErrors(_)) | None => {}
            }
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                if step.next().is_some() {
                    let next_ok = match step {
                        Step::SignIn => self.sign_in.is_complete(self.form.mailbox.trim()),
                        _ => true,
                    };
                    let next = ui.add_enabled(next_ok, egui::Button::new("Next"));
                    if next.clicked() {
                        actions.push(Action::Next);
                    }
                }
                if step.previous().is_some() && ui.button("Back").clicked() {
                    actions.push(Action::Back);
                }
            });
        });
        ui.add_space(4.0);
    }
}

impl eframe::App for MailgrantApp {
    fn logic(&mut self, _ctx: &egui::Context, _frame: &mut eframe::Frame) {
        for event in self.tasks.drain() {
            self.handle_event(event);
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let mut actions = Vec::new();
        let focused =
            ui.input(|i| i.events.iter().any(|e| matches!(e, egui::Event::WindowFocused(true))));
        if focused {
            actions.push(Action::Focused);
        }

        egui::Panel::left("steps").resizable(false).exact_size(190.0).show(ui, |ui| {
            if let Some(view) = nav::ui(ui, self.view, &self.progress) {
                actions.push(Action::Show(view));
            }
        });

        if let View::Wizard(step) = self.view {
            egui::Panel::bottom("wizard_buttons").show(ui, |ui| {
                self.buttons_ui(ui, step, &mut actions);
            });
        }

        egui::CentralPanel::default().show(ui, |ui| {
            egui::ScrollArea::vertical().auto_shrink(false).show(ui, |ui| match self.view {
                View::Wizard(step) => self.wizard_ui(ui, step, &mut actions),
                View::Status => {
                    let available = self.paths.is_some() && self.tokens_saved;
                    let config_dir = self.paths.as_ref().map(ConfigPaths::dir);
                    if let Some(action) = self.status.ui(ui, available, config_dir.as_deref()) {
                        actions.push(Action::Status(action));
                    }
                }
                View::Log => self.log.ui(ui),
            });
        });

        for action in actions {
            self.apply(action);
        }
    }
}

/// What the status view shows for a stored setup and its recorded checks.
fn status_data(setup: &StoredSetup, last_check: Option<&LastCheck>) -> StatusData {
    let (config, secrets) = (&setup.config, &setup.secrets);
    StatusData {
        account: secrets.signed_in_account.clone(),
        mailbox: config.mailbox.clone(),
        test_recipient: config.test_recipient.clone(),
        granted_scopes: secrets.granted_scopes.clone(),
        config: config.clone(),
        secrets: secrets.clone(),
        last_checks: last_check.map(verify::recorded_rows).unwrap_or_default(),
        last_checked_at: last_check.map(|l| l.started_at),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::gui::tasks::CancelHandle;

    fn app() -> (MailgrantApp, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = GuiOptions { config_path: Some(dir.path().join("mailgrant.toml")) };
        (MailgrantApp::with_context(egui::Context::default(), options), dir)
    }

    fn waiting(attempt: Attempt, flag: &Arc<AtomicBool>) -> SignInState {
        let flag = Arc::clone(flag);
        SignInState::Waiting {
            attempt,
            authorize_url: "http://127.0.0.1:9/authorize".to_owned(),
            redirect_uri: "http://localhost:9/".to_owned(),
            started: std::time::Instant::now(),
            cancel: CancelHandle::new(move || flag.store(true, Ordering::SeqCst)),
            browser_problem: None,
        }
    }

    #[test]
    fn cancel_calls_the_workers_canceller_and_its_answer_ends_the_attempt() {
        let (mut app, _dir) = app();
        let cancelled = Arc::new(AtomicBool::new(false));
        app.sign_in.state = waiting(7, &cancelled);

        app.apply(Action::SignIn(SignInAction::Cancel));
        assert!(cancelled.load(Ordering::SeqCst));
        assert!(matches!(app.sign_in.state, SignInState::Cancelling { attempt: 7 }));

        app.handle_event(TaskEvent::SignInFinished {
            attempt: 7,
            outcome: SignInOutcome::Cancelled,
        });
        assert!(matches!(app.sign_in.state, SignInState::CancelledByOperator));
    }

    #[test]
    fn a_late_answer_from_an_abandoned_attempt_is_ignored() {
        let (mut app, _dir) = app();
        let cancelled = Arc::new(AtomicBool::new(false));
        app.sign_in.state = waiting(8, &cancelled);

        app.handle_event(TaskEvent::SignInFinished {
            attempt: 3,
            outcome: SignInOutcome::Cancelled,
        });
        assert!(matches!(app.sign_in.state, SignInState::Waiting { attempt: 8, .. }));
    }

    fn signed_in() -> SignInState {
        let tokens = crate::oauth::TokenSet {
            access_token: oauth2::AccessToken::new("a".to_owned()),
            access_expires_at: None,
            refresh_token: None,
            granted_scopes: None,
            identity: None,
            obtained_at: time::OffsetDateTime::now_utc(),
        };
        SignInState::SignedIn(SignedIn::new(tokens, None))
    }

    #[test]
    fn editing_the_client_id_after_sign_in_voids_the_sign_in_but_the_recipient_does_not() {
        let (mut app, _dir) = app();
        app.sign_in.state = signed_in();
        app.apply(Action::Edited(vec![Field::TestRecipient]));
        assert!(matches!(app.sign_in.state, SignInState::SignedIn(_)));

        app.apply(Action::Edited(vec![Field::ClientId]));
        assert!(matches!(app.sign_in.state, SignInState::Idle));
    }
}

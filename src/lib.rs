//! mailgrant: gets an unattended alarm-notification service onto OAuth2 e-mail.
//!
//! The GUI, the headless commands and the tests all run this library: operator input is
//! parsed into a [`profile::Profile`], the browser sign-in yields an [`oauth::TokenSet`], the
//! [`verify`] plan proves every scope on the real servers, [`diagnose`] explains every failure,
//! and [`store`] writes the service config that the service reads from then on.

pub mod bundle;
pub mod cli;
pub mod diagnose;
pub mod forecast;
pub mod gui;
pub mod logging;
pub mod mail;
pub mod oauth;
pub mod preflight;
pub mod profile;
pub mod provider;
pub mod session;
pub mod store;
pub mod trust;
pub mod verify;

//! The setup wizard's steps, one module and one struct per step, each with a `ui` method that
//! draws the step and returns what the operator asked for.

pub mod mailbox;
pub mod registration;
pub mod save;
pub mod sign_in;
pub mod verify;

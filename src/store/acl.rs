//! Who may read the secrets file on Windows: the DACL mailgrant gives it, and the judgement of a
//! DACL found on disk.
//!
//! Everything here is plain data and runs (and is tested) on every platform; only reading and
//! setting a real DACL lives in `store::windows`. The rule: SYSTEM and Administrators have full
//! control, the user who saved and the configured service account may modify, and no broad
//! group (Everyone, Users, Authenticated Users, INTERACTIVE) may read, write or change the
//! permissions of the file. The judge evaluates ACEs in order as Windows' access check does,
//! so a deny ACE placed before an allow ACE takes effect, and inherit-only ACEs are ignored.

use std::fmt;

/// `S-1-5-18`, the local system account.
pub const SID_SYSTEM: &str = "S-1-5-18";
/// `S-1-5-32-544`, the built-in Administrators group.
pub const SID_ADMINISTRATORS: &str = "S-1-5-32-544";

/// Access-mask bits (winnt.h) the judge needs.
pub mod mask {
    /// Read the file's content.
    pub const FILE_READ_DATA: u32 = 0x0000_0001;
    /// Write the file's content.
    pub const FILE_WRITE_DATA: u32 = 0x0000_0002;
    /// Append to the file's content.
    pub const FILE_APPEND_DATA: u32 = 0x0000_0004;
    /// Delete the file.
    pub const DELETE: u32 = 0x0001_0000;
    /// Read the security descriptor.
    pub const READ_CONTROL: u32 = 0x0002_0000;
    /// Change the DACL: whoever has it can grant themselves read.
    pub const WRITE_DAC: u32 = 0x0004_0000;
    /// Take ownership: the owner can change the DACL.
    pub const WRITE_OWNER: u32 = 0x0008_0000;
    /// Generic rights, as they may appear in an ACE before mapping.
    pub const GENERIC_ALL: u32 = 0x1000_0000;
    /// Generic execute.
    pub const GENERIC_EXECUTE: u32 = 0x2000_0000;
    /// Generic write.
    pub const GENERIC_WRITE: u32 = 0x4000_0000;
    /// Generic read.
    pub const GENERIC_READ: u32 = 0x8000_0000;
    /// `FILE_GENERIC_READ` (what `icacls` shows as R).
    pub const FILE_GENERIC_READ: u32 = 0x0012_0089;
    /// `FILE_GENERIC_WRITE`.
    pub const FILE_GENERIC_WRITE: u32 = 0x0012_0116;
    /// `FILE_GENERIC_EXECUTE`.
    pub const FILE_GENERIC_EXECUTE: u32 = 0x0012_00a0;
    /// `FILE_ALL_ACCESS` (F).
    pub const FILE_ALL_ACCESS: u32 = 0x001f_01ff;
    /// Modify (M): read, write, execute and delete, no permission changes.
    pub const MODIFY: u32 = FILE_GENERIC_READ | FILE_GENERIC_WRITE | FILE_GENERIC_EXECUTE | DELETE;
}

/// `INHERIT_ONLY_ACE`: the ACE is only passed on to children and does not apply to the object.
pub const INHERIT_ONLY_ACE: u8 = 0x08;
/// `INHERITED_ACE`: the ACE came from the parent folder.
pub const INHERITED_ACE: u8 = 0x10;

/// Whether an ACE grants or denies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AceKind {
    /// `ACCESS_ALLOWED_ACE_TYPE`.
    Allow,
    /// `ACCESS_DENIED_ACE_TYPE`.
    Deny,
}

/// One access-control entry, as read from a file's DACL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ace {
    /// Allow or deny.
    pub kind: AceKind,
    /// The trustee as a SID string (`S-1-5-32-545`).
    pub sid: String,
    /// The access mask, possibly with generic bits.
    pub mask: u32,
    /// The ACE header flags (`INHERITED_ACE`, `INHERIT_ONLY_ACE`, ...).
    pub flags: u8,
}

impl Ace {
    /// An explicit allow ACE.
    pub fn allow(sid: &str, mask: u32) -> Ace {
        Ace { kind: AceKind::Allow, sid: sid.to_owned(), mask, flags: 0 }
    }

    /// An explicit deny ACE.
    pub fn deny(sid: &str, mask: u32) -> Ace {
        Ace { kind: AceKind::Deny, sid: sid.to_owned(), mask, flags: 0 }
    }

    /// The same ACE marked as inherited from the folder.
    pub fn inherited(mut self) -> Ace {
        self.flags |= INHERITED_ACE;
        self
    }

    fn applies_to_object(&self) -> bool {
        self.flags & INHERIT_ONLY_ACE == 0
    }

    fn is_inherited(&self) -> bool {
        self.flags & INHERITED_ACE != 0
    }
}

/// A broad group no secrets file may be open to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BroadGroup {
    /// `S-1-1-0`.
    Everyone,
    /// `S-1-5-32-545`, every local user.
    Users,
    /// `S-1-5-11`, every signed-in account.
    AuthenticatedUsers,
    /// `S-1-5-4`, whoever is signed in at the console or over RDP.
    Interactive,
}

impl BroadGroup {
    /// Every broad group, in the order problems are reported.
    pub const ALL: [BroadGroup; 4] = [
        BroadGroup::Everyone,
        BroadGroup::Users,
        BroadGroup::AuthenticatedUsers,
        BroadGroup::Interactive,
    ];

    /// The group's well-known SID.
    pub fn sid(self) -> &'static str {
        match self {
            BroadGroup::Everyone => "S-1-1-0",
            BroadGroup::Users => "S-1-5-32-545",
            BroadGroup::AuthenticatedUsers => "S-1-5-11",
            BroadGroup::Interactive => "S-1-5-4",
        }
    }

    /// The group's English name, as `icacls` shows it on an English Windows.
    pub fn name(self) -> &'static str {
        match self {
            BroadGroup::Everyone => "Everyone",
            BroadGroup::Users => "BUILTIN\\Users",
            BroadGroup::AuthenticatedUsers => "NT AUTHORITY\\Authenticated Users",
            BroadGroup::Interactive => "NT AUTHORITY\\INTERACTIVE",
        }
    }

    fn of_sid(sid: &str) -> Option<BroadGroup> {
        BroadGroup::ALL.into_iter().find(|g| g.sid().eq_ignore_ascii_case(sid))
    }
}

impl fmt::Display for BroadGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.sid())
    }
}

/// What a broad group was found to be allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenAccess {
    /// It can read the content.
    Read,
    /// It can change the content (swap the refresh token).
    Write,
    /// It can change the permissions or take ownership, and so grant itself read.
    ChangePermissions,
}

impl fmt::Display for OpenAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OpenAccess::Read => "read",
            OpenAccess::Write => "write",
            OpenAccess::ChangePermissions => "change the permissions of",
        })
    }
}

/// Why a DACL is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AclProblem {
    /// The file has no DACL at all, which gives everyone full control.
    NoDacl,
    /// A broad group has access it must not have.
    OpenTo {
        /// The group.
        group: BroadGroup,
        /// The worst access it has.
        access: OpenAccess,
        /// True when the ACE granting it came from the folder (inheritance is on).
        inherited: bool,
    },
}

/// Judges a secrets file's DACL (`None`: the file has no DACL). Refuses one that lets a broad
/// group read, write or change the permissions of the file.
pub fn judge_dacl(dacl: Option<&[Ace]>) -> Result<(), AclProblem> {
    let Some(aces) = dacl else {
        return Err(AclProblem::NoDacl);
    };

    // An ordinary user's token holds all four groups; evaluate the ACEs for that token in
    // order, as the access check does: the first ACE to decide a bit wins.
    let mut granted = 0u32;
    let mut denied = 0u32;
    let mut granting_inherited = false;
    for ace in aces.iter().filter(|ace| ace.applies_to_object()) {
        if BroadGroup::of_sid(&ace.sid).is_none() {
            continue;
        }
        let bits = map_generic(ace.mask);
        match ace.kind {
            AceKind::Deny => denied |= bits & !granted,
            AceKind::Allow => {
                let new = bits & !denied & !granted;
                if new & dangerous_bits() != 0 && ace.is_inherited() {
                    granting_inherited = true;
                }
                granted |= new;
            }
        }
    }

    let Some(access) = worst_access(granted) else {
        return Ok(());
    };
    // Name the first group with an allow ACE carrying the worst bit, for the fix.
    let group = aces
        .iter()
        .filter(|ace| ace.applies_to_object() && ace.kind == AceKind::Allow)
        .filter(|ace| worst_access(map_generic(ace.mask) & granted) == Some(access))
        .find_map(|ace| BroadGroup::of_sid(&ace.sid))
        .unwrap_or(BroadGroup::Everyone);
    Err(AclProblem::OpenTo { group, access, inherited: granting_inherited })
}

fn dangerous_bits() -> u32 {
    mask::FILE_READ_DATA
        | mask::FILE_WRITE_DATA
        | mask::FILE_APPEND_DATA
        | mask::WRITE_DAC
        | mask::WRITE_OWNER
}

fn worst_access(bits: u32) -> Option<OpenAccess> {
    if bits & mask::FILE_READ_DATA != 0 {
        Some(OpenAccess::Read)
    } else if bits & (mask::WRITE_DAC | mask::WRITE_OWNER) != 0 {
        Some(OpenAccess::ChangePermissions)
    } else if bits & (mask::FILE_WRITE_DATA | mask::FILE_APPEND_DATA) != 0 {
        Some(OpenAccess::Write)
    } else {
        None
    }
}

/// Maps generic rights to the file-specific ones they stand for.
fn map_generic(bits: u32) -> u32 {
    let mut mapped = bits & 0x0fff_ffff;
    if bits & mask::GENERIC_READ != 0 {
        mapped |= mask::FILE_GENERIC_READ;
    }
    if bits & mask::GENERIC_WRITE != 0 {
        mapped |= mask::FILE_GENERIC_WRITE;
    }
    if bits & mask::GENERIC_EXECUTE != 0 {
        mapped |= mask::FILE_GENERIC_EXECUTE;
    }
    if bits & mask::GENERIC_ALL != 0 {
        mapped |= mask::FILE_ALL_ACCESS;
    }
    mapped
}

/// The security descriptor (SDDL) given to a secrets file: a protected DACL (nothing inherited)
/// with full control for SYSTEM and Administrators and modify for the saving user and the
/// service account (SID strings).
pub fn secrets_file_sddl(user_sid: &str, service_account_sid: Option<&str>) -> String {
    let mut sddl =
        format!("D:P(A;;FA;;;SY)(A;;FA;;;BA)(A;;0x{modify:x};;;{user_sid})", modify = mask::MODIFY);
    if let Some(service) = service_account_sid.filter(|s| !s.eq_ignore_ascii_case(user_sid)) {
        sddl.push_str(&format!("(A;;0x{:x};;;{service})", mask::MODIFY));
    }
    sddl
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER: &str = "S-1-5-21-1004336348-1177238915-682003330-1001";
    const SERVICE: &str = "S-1-5-80-2006800713-1441093265-249754844-3404434343-1444102779";

    fn mailgrant_dacl() -> Vec<Ace> {
        vec![
            Ace::allow(SID_SYSTEM, mask::FILE_ALL_ACCESS),
            Ace::allow(SID_ADMINISTRATORS, mask::FILE_ALL_ACCESS),
            Ace::allow(USER, mask::MODIFY),
            Ace::allow(SERVICE, mask::MODIFY),
        ]
    }

    #[test]
    fn the_dacl_mailgrant_sets_is_allowed() {
        assert_eq!(judge_dacl(Some(&mailgrant_dacl())), Ok(()));
    }

    #[test]
    fn users_with_read_are_refused() {
        let mut dacl = mailgrant_dacl();
        dacl.push(Ace::allow("S-1-5-32-545", mask::FILE_GENERIC_READ));
        let problem = judge_dacl(Some(&dacl));
        assert_eq!(
            problem,
            Err(AclProblem::OpenTo {
                group: BroadGroup::Users,
                access: OpenAccess::Read,
                inherited: false
            })
        );
    }

    #[test]
    fn everyone_with_generic_read_is_refused() {
        let mut dacl = mailgrant_dacl();
        dacl.push(Ace::allow("S-1-1-0", mask::GENERIC_READ));
        let Err(AclProblem::OpenTo { group, access, .. }) = judge_dacl(Some(&dacl)) else {
            panic!("Everyone read was allowed");
        };
        assert_eq!((group, access), (BroadGroup::Everyone, OpenAccess::Read));
    }

    #[test]
    fn authenticated_users_and_interactive_are_broad_groups_too() {
        for (sid, group) in
            [("S-1-5-11", BroadGroup::AuthenticatedUsers), ("S-1-5-4", BroadGroup::Interactive)]
        {
            let mut dacl = mailgrant_dacl();
            dacl.push(Ace::allow(sid, mask::FILE_ALL_ACCESS));
            let Err(AclProblem::OpenTo { group: found, access, .. }) = judge_dacl(Some(&dacl))
            else {
                panic!("{sid} with full control was allowed");
            };
            assert_eq!((found, access), (group, OpenAccess::Read));
        }
    }

    #[test]
    fn an_inherited_users_read_ace_is_refused_and_marked_inherited() {
        // What a file gets in a folder under C:\ProgramData without `/inheritance:r`.
        let dacl = vec![
            Ace::allow(SID_SYSTEM, mask::FILE_ALL_ACCESS).inherited(),
            Ace::allow(SID_ADMINISTRATORS, mask::FILE_ALL_ACCESS).inherited(),
            Ace::allow("S-1-5-32-545", mask::FILE_GENERIC_READ | mask::FILE_GENERIC_EXECUTE)
                .inherited(),
        ];
        assert_eq!(
            judge_dacl(Some(&dacl)),
            Err(AclProblem::OpenTo {
                group: BroadGroup::Users,
                access: OpenAccess::Read,
                inherited: true
            })
        );
    }

    #[test]
    fn a_deny_ace_before_the_allow_takes_the_read_away() {
        let mut dacl = vec![Ace::deny("S-1-1-0", mask::FILE_READ_DATA | mask::WRITE_DAC)];
        dacl.extend(mailgrant_dacl());
        dacl.push(Ace::allow("S-1-5-32-545", mask::FILE_GENERIC_READ).inherited());
        assert_eq!(judge_dacl(Some(&dacl)), Ok(()));
    }

    #[test]
    fn a_deny_ace_after_the_allow_comes_too_late() {
        let mut dacl = mailgrant_dacl();
        dacl.push(Ace::allow("S-1-5-32-545", mask::FILE_GENERIC_READ));
        dacl.push(Ace::deny("S-1-5-32-545", mask::FILE_READ_DATA));
        let Err(AclProblem::OpenTo { access, .. }) = judge_dacl(Some(&dacl)) else {
            panic!("a late deny ACE hid the read access");
        };
        assert_eq!(access, OpenAccess::Read);
    }

    #[test]
    fn read_control_alone_and_inherit_only_aces_are_harmless() {
        let mut dacl = mailgrant_dacl();
        dacl.push(Ace::allow("S-1-5-32-545", mask::READ_CONTROL));
        let mut inherit_only = Ace::allow("S-1-1-0", mask::GENERIC_ALL);
        inherit_only.flags |= INHERIT_ONLY_ACE;
        dacl.push(inherit_only);
        assert_eq!(judge_dacl(Some(&dacl)), Ok(()));
    }

    #[test]
    fn write_dac_for_users_is_refused_as_a_permission_change() {
        let mut dacl = mailgrant_dacl();
        dacl.push(Ace::allow("S-1-5-32-545", mask::WRITE_DAC));
        let Err(AclProblem::OpenTo { access, .. }) = judge_dacl(Some(&dacl)) else {
            panic!("WRITE_DAC for Users was allowed");
        };
        assert_eq!(access, OpenAccess::ChangePermissions);
    }

    #[test]
    fn no_dacl_at_all_is_refused() {
        assert_eq!(judge_dacl(None), Err(AclProblem::NoDacl));
    }

    #[test]
    fn the_sddl_is_protected_and_names_exactly_the_four_trustees() {
        let sddl = secrets_file_sddl(USER, Some(SERVICE));
        assert_eq!(
            sddl,
            format!("D:P(A;;FA;;;SY)(A;;FA;;;BA)(A;;0x1301bf;;;{USER})(A;;0x1301bf;;;{SERVICE})")
        );
        assert_eq!(secrets_file_sddl(USER, Some(USER)), secrets_file_sddl(USER, None));
    }
}

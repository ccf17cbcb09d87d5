//! Windows glue for secrets at rest: setting and reading a secrets file's DACL, and DPAPI
//! (machine scope) for `store = "dpapi_file"`.
//!
//! Only the system calls live here; what the DACL must be and whether one found on disk is
//! acceptable are decided in `store::acl`, the file framing is `store::sealed`. This file is
//! checked by compiling it for `x86_64-pc-windows-gnu` (`scripts/cross-check-windows.sh`); it
//! is not run by the test suite, which runs on Linux.
#![allow(unsafe_code, reason = "Win32 calls; each unsafe block states what it relies on")]

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::windows::ffi::OsStrExt;
use std::os::windows::io::AsRawHandle;
use std::ptr;

use windows_sys::Win32::Foundation::{
    CloseHandle, ERROR_INSUFFICIENT_BUFFER, GetLastError, HANDLE, HLOCAL, LocalFree,
};
use windows_sys::Win32::Security::Authorization::{
    ConvertSidToStringSidW, ConvertStringSecurityDescriptorToSecurityDescriptorW, GetSecurityInfo,
    SDDL_REVISION_1, SE_FILE_OBJECT, SetSecurityInfo,
};
use windows_sys::Win32::Security::Cryptography::{
    CRYPT_INTEGER_BLOB, CRYPTPROTECT_LOCAL_MACHINE, CRYPTPROTECT_UI_FORBIDDEN, CryptProtectData,
    CryptUnprotectData,
};
use windows_sys::Win32::Security::{
    ACCESS_ALLOWED_ACE, ACE_HEADER, ACL, DACL_SECURITY_INFORMATION, GetAce,
    GetSecurityDescriptorDacl, GetTokenInformation, LookupAccountNameW,
    PROTECTED_DACL_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR, PSID, SID_NAME_USE, TOKEN_QUERY,
    TOKEN_USER, TokenUser,
};
use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};

use super::acl::{Ace, AceKind};
use super::sealed::{Cipher, CipherError, DPAPI_MACHINE};

const ACCESS_ALLOWED_ACE_TYPE: u8 = 0;
const ACCESS_DENIED_ACE_TYPE: u8 = 1;

/// Extra entropy mixed into DPAPI, so a blob sealed by another program for the machine does
/// not open as mailgrant's secrets.
const ENTROPY: &[u8] = b"mailgrant secrets v1";

fn wide(text: &str) -> Vec<u16> {
    OsStr::new(text).encode_wide().chain(Some(0)).collect()
}

fn last_error() -> io::Error {
    io::Error::last_os_error()
}

/// Frees memory the system allocated with `LocalAlloc` when dropped.
struct LocalBox(*mut core::ffi::c_void);

impl Drop for LocalBox {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the pointer came from a Win32 call documented to allocate with
            // LocalAlloc, and is freed exactly once here.
            unsafe { LocalFree(self.0 as HLOCAL) };
        }
    }
}

/// Reads a NUL-terminated UTF-16 string the system allocated, and frees it.
fn take_wide_string(text: *mut u16) -> String {
    let owner = LocalBox(text.cast());
    let mut len = 0;
    // SAFETY: `text` is a NUL-terminated string returned by the system; we stop at the NUL.
    while unsafe { *text.add(len) } != 0 {
        len += 1;
    }
    // SAFETY: `len` elements were just read as initialised.
    let slice = unsafe { std::slice::from_raw_parts(text, len) };
    let string = String::from_utf16_lossy(slice);
    drop(owner);
    string
}

fn sid_to_string(sid: PSID) -> io::Result<String> {
    let mut text: *mut u16 = ptr::null_mut();
    // SAFETY: `sid` points to a valid SID owned by the caller for the duration of the call.
    if unsafe { ConvertSidToStringSidW(sid, &mut text) } == 0 {
        return Err(last_error());
    }
    Ok(take_wide_string(text))
}

/// The SID string of the user this process runs as.
pub(crate) fn current_user_sid() -> io::Result<String> {
    let mut token: HANDLE = ptr::null_mut();
    // SAFETY: the pseudo handle of the current process is always valid.
    if unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) } == 0 {
        return Err(last_error());
    }
    let result = token_user_sid(token);
    // SAFETY: `token` was opened above and is closed once.
    unsafe { CloseHandle(token) };
    result
}

fn token_user_sid(token: HANDLE) -> io::Result<String> {
    let mut needed = 0u32;
    // SAFETY: a size query with no buffer; fails with ERROR_INSUFFICIENT_BUFFER by design.
    unsafe { GetTokenInformation(token, TokenUser, ptr::null_mut(), 0, &mut needed) };
    // u64 elements keep the buffer aligned for TOKEN_USER.
    let mut buffer = vec![0u64; (needed as usize).div_ceil(8).max(1)];
    let size = (buffer.len() * 8) as u32;
    // SAFETY: the buffer is writable for `size` bytes.
    let ok = unsafe {
        GetTokenInformation(token, TokenUser, buffer.as_mut_ptr().cast(), size, &mut needed)
    };
    if ok == 0 {
        return Err(last_error());
    }
    // SAFETY: on success the buffer starts with a TOKEN_USER whose SID points into the buffer.
    let user = unsafe { &*(buffer.as_ptr().cast::<TOKEN_USER>()) };
    sid_to_string(user.User.Sid)
}

/// The SID string of an account name (`NT SERVICE\AlarmMailer`, `DOMAIN\svc-alarm$`).
pub(crate) fn account_sid(name: &str) -> io::Result<String> {
    let name_w = wide(name);
    let (mut sid_len, mut domain_len, mut sid_use) = (0u32, 0u32, 0 as SID_NAME_USE);
    // SAFETY: a size query with null buffers; the lengths are written.
    unsafe {
        LookupAccountNameW(
            ptr::null(),
            name_w.as_ptr(),
            ptr::null_mut(),
            &mut sid_len,
            ptr::null_mut(),
            &mut domain_len,
            &mut sid_use,
        )
    };
    // SAFETY: reading the thread's last error code has no preconditions.
    let code = unsafe { GetLastError() };
    if code != ERROR_INSUFFICIENT_BUFFER {
        return Err(io::Error::from_raw_os_error(code as i32));
    }

    let mut sid = vec![0u64; (sid_len as usize).div_ceil(8).max(1)];
    let mut domain = vec![0u16; domain_len.max(1) as usize];
    // SAFETY: both buffers are at least as large as the sizes passed.
    let ok = unsafe {
        LookupAccountNameW(
            ptr::null(),
            name_w.as_ptr(),
            sid.as_mut_ptr().cast(),
            &mut sid_len,
            domain.as_mut_ptr(),
            &mut domain_len,
            &mut sid_use,
        )
    };
    if ok == 0 {
        return Err(last_error());
    }
    sid_to_string(sid.as_mut_ptr().cast())
}

/// Puts the protected DACL described by `sddl` on an open file. The file must have been opened
/// with `WRITE_DAC` and without sharing, so nobody else can open it before the DACL is set.
pub(crate) fn set_file_dacl(file: &File, sddl: &str) -> io::Result<()> {
    let sddl_w = wide(sddl);
    let mut descriptor: PSECURITY_DESCRIPTOR = ptr::null_mut();
    // SAFETY: `sddl_w` is NUL-terminated; the descriptor is allocated by the system.
    let ok = unsafe {
        ConvertStringSecurityDescriptorToSecurityDescriptorW(
            sddl_w.as_ptr(),
            SDDL_REVISION_1,
            &mut descriptor,
            ptr::null_mut(),
        )
    };
    if ok == 0 {
        return Err(last_error());
    }
    let _owner = LocalBox(descriptor);

    let (mut present, mut defaulted) = (0, 0);
    let mut dacl: *mut ACL = ptr::null_mut();
    // SAFETY: `descriptor` is the valid self-relative descriptor made above.
    if unsafe { GetSecurityDescriptorDacl(descriptor, &mut present, &mut dacl, &mut defaulted) }
        == 0
    {
        return Err(last_error());
    }
    // SAFETY: the handle is the open file's; `dacl` points into `descriptor`, alive here.
    let code = unsafe {
        SetSecurityInfo(
            file.as_raw_handle() as HANDLE,
            SE_FILE_OBJECT,
            DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION,
            ptr::null_mut(),
            ptr::null_mut(),
            dacl,
            ptr::null(),
        )
    };
    if code != 0 {
        return Err(io::Error::from_raw_os_error(code as i32));
    }
    Ok(())
}

/// The DACL of an open file as plain ACEs; `None` when the file has no DACL (full access for
/// everyone). ACE types other than plain allow and deny (object and callback ACEs, which files
/// do not normally carry) are left out.
pub(crate) fn file_dacl(file: &File) -> io::Result<Option<Vec<Ace>>> {
    let mut dacl: *mut ACL = ptr::null_mut();
    let mut descriptor: PSECURITY_DESCRIPTOR = ptr::null_mut();
    // SAFETY: the handle is the open file's (opened for reading, which includes READ_CONTROL);
    // the descriptor is allocated by the system and freed by `_owner`.
    let code = unsafe {
        GetSecurityInfo(
            file.as_raw_handle() as HANDLE,
            SE_FILE_OBJECT,
            DACL_SECURITY_INFORMATION,
            ptr::null_mut(),
            ptr::null_mut(),
            &mut dacl,
            ptr::null_mut(),
            &mut descriptor,
        )
    };
    if code != 0 {
        return Err(io::Error::from_raw_os_error(code as i32));
    }
    let _owner = LocalBox(descriptor);
    if dacl.is_null() {
        return Ok(None);
    }

    // SAFETY: `dacl` points to a valid ACL inside `descriptor`.
    let count = unsafe { (*dacl).AceCount };
    let mut aces = Vec::with_capacity(usize::from(count));
    for index in 0..u32::from(count) {
        let mut ace: *mut core::ffi::c_void = ptr::null_mut();
        // SAFETY: `index` is below the ACL's AceCount.
        if unsafe { GetAce(dacl, index, &mut ace) } == 0 {
            return Err(last_error());
        }
        // SAFETY: every ACE starts with an ACE_HEADER.
        let header = unsafe { *(ace as *const ACE_HEADER) };
        let kind = match header.AceType {
            ACCESS_ALLOWED_ACE_TYPE => AceKind::Allow,
            ACCESS_DENIED_ACE_TYPE => AceKind::Deny,
            _ => continue,
        };
        // SAFETY: allow and deny ACEs share ACCESS_ALLOWED_ACE's layout; the SID starts at
        // `SidStart` and lies within the ACE.
        let body = ace as *const ACCESS_ALLOWED_ACE;
        let (mask, sid) = unsafe { ((*body).Mask, ptr::addr_of!((*body).SidStart) as PSID) };
        aces.push(Ace { kind, sid: sid_to_string(sid)?, mask, flags: header.AceFlags });
    }
    Ok(Some(aces))
}

/// DPAPI with machine scope: any account on this machine can decrypt, no other machine can.
pub(crate) struct DpapiMachine;

impl Cipher for DpapiMachine {
    fn name(&self) -> &'static str {
        DPAPI_MACHINE
    }

    fn seal(&self, plain: &[u8]) -> Result<Vec<u8>, CipherError> {
        dpapi(plain, true).map_err(|code| CipherError { operation: "encrypt", code })
    }

    fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, CipherError> {
        dpapi(sealed, false).map_err(|code| CipherError { operation: "decrypt", code })
    }
}

fn dpapi(input: &[u8], protect: bool) -> Result<Vec<u8>, Option<u32>> {
    let len = u32::try_from(input.len()).map_err(|_| None)?;
    let data_in = CRYPT_INTEGER_BLOB { cbData: len, pbData: input.as_ptr().cast_mut() };
    let entropy =
        CRYPT_INTEGER_BLOB { cbData: ENTROPY.len() as u32, pbData: ENTROPY.as_ptr().cast_mut() };
    let mut data_out = CRYPT_INTEGER_BLOB { cbData: 0, pbData: ptr::null_mut() };
    let flags = CRYPTPROTECT_UI_FORBIDDEN | if protect { CRYPTPROTECT_LOCAL_MACHINE } else { 0 };

    // SAFETY: the input blobs point to live slices that DPAPI only reads; the output is
    // allocated by the system and freed below.
    let ok = unsafe {
        if protect {
            CryptProtectData(
                &data_in,
                ptr::null(),
                &entropy,
                ptr::null(),
                ptr::null(),
                flags,
                &mut data_out,
            )
        } else {
            CryptUnprotectData(
                &data_in,
                ptr::null_mut(),
                &entropy,
                ptr::null(),
                ptr::null(),
                flags,
                &mut data_out,
            )
        }
    };
    if ok == 0 {
        // SAFETY: reading the thread's last error code has no preconditions.
        return Err(Some(unsafe { GetLastError() }));
    }
    let _owner = LocalBox(data_out.pbData.cast());
    let out_len = data_out.cbData as usize;
    // SAFETY: on success `pbData` holds `cbData` bytes.
    let out = unsafe { std::slice::from_raw_parts(data_out.pbData, out_len) }.to_vec();
    // SAFETY: the same `cbData` bytes are ours until freed; wipe the plain text first.
    unsafe { ptr::write_bytes(data_out.pbData, 0, out_len) };
    Ok(out)
}

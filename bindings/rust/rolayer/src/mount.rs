// SPDX-License-Identifier: Apache-2.0
//! Read-only overlay mounts of a layer's flattened chain (`rolayer/mount.h`, docs/mount.md).

use std::path::{Path, PathBuf};
use std::ptr;

use rolayer_sys as sys;

use crate::digest::ChainId;
use crate::error::Result;
use crate::store::{take_string_list, Store};
use crate::util::{c_string, call, path_c_string};

/// Mount flag: no set-uid/set-gid (the mount is always read-only).
pub const MOUNT_NOSUID: u32 = sys::ROLAYER_MOUNT_NOSUID as u32;
/// Mount flag: no device access.
pub const MOUNT_NODEV: u32 = sys::ROLAYER_MOUNT_NODEV as u32;
/// Mount flag: no execution.
pub const MOUNT_NOEXEC: u32 = sys::ROLAYER_MOUNT_NOEXEC as u32;

impl Store {
    /// The overlayfs lower directories of `chain_id`'s flattened chain, topmost first, and
    /// whether a mount of them needs the `userxattr` option. Only for the "dir" driver.
    pub fn lower_dirs(&self, chain_id: &ChainId) -> Result<(Vec<PathBuf>, bool)> {
        let id = c_string(chain_id.as_str(), "the ChainID")?;
        let mut list = ptr::null_mut();
        let mut userxattr = 0;
        // SAFETY: valid pointers for the call; the list is ours afterwards.
        call(|err| unsafe {
            sys::rolayer_mount_lower_dirs(
                &mut list,
                self.as_ptr(),
                id.as_ptr(),
                &mut userxattr,
                err,
            )
        })?;
        // SAFETY: a list from the library that nothing else owns.
        let dirs = unsafe { take_string_list(list) };
        Ok((
            dirs.into_iter().map(PathBuf::from).collect(),
            userxattr != 0,
        ))
    }

    /// Mounts `chain_id`'s flattened chain read-only at `target` (an existing directory) and
    /// holds the layer until [`Store::unmount`], from any process.
    pub fn mount(&self, chain_id: &ChainId, target: &Path, flags: u32) -> Result<()> {
        let id = c_string(chain_id.as_str(), "the ChainID")?;
        let t = path_c_string(target)?;
        // SAFETY: valid pointers for the call.
        call(|err| unsafe {
            sys::rolayer_mount(self.as_ptr(), id.as_ptr(), t.as_ptr(), flags, err)
        })
    }

    /// Unmounts a mount made by [`Store::mount`] at `target` and drops its hold.
    pub fn unmount(&self, target: &Path) -> Result<()> {
        let t = path_c_string(target)?;
        // SAFETY: valid pointers for the call.
        call(|err| unsafe { sys::rolayer_umount(self.as_ptr(), t.as_ptr(), err) })
    }
}

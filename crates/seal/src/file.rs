//! Owner-only files, written atomically.

use std::io::Write;
use std::path::Path;

use crate::SealError;

/// Writes `bytes` to an owner-only (0600) file. With `replace`, writes a temporary file, syncs
/// it and renames it over `path` (a crash leaves the old or the new file, never a mix);
/// without, refuses to overwrite an existing file.
pub fn write_private(path: &Path, bytes: &[u8], replace: bool) -> Result<(), SealError> {
    if !replace && path.exists() {
        return Err(SealError::Io {
            path: path.display().to_string(),
            source: std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "refusing to overwrite an existing file",
            ),
        });
    }
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp).map_err(SealError::io(&tmp))?;
        f.write_all(bytes).map_err(SealError::io(&tmp))?;
        f.sync_all().map_err(SealError::io(&tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(SealError::io(path))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(SealError::io(dir))?;
    }
    Ok(())
}

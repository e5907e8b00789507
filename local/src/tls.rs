//! The gateway's self-signed certificate: made on first run, reused while it names the same hosts.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot write the certificate under {dir}: {source}")]
    Io { dir: PathBuf, source: io::Error },
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// Ensures `dir` holds a self-signed certificate for `names` (host names or IP addresses).
pub fn ensure_self_signed(dir: &Path, names: &[String]) -> Result<TlsFiles, TlsError> {
    let io_error = |source| TlsError::Io {
        dir: dir.to_owned(),
        source,
    };
    let files = TlsFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    let names_file = dir.join("names.txt");
    let wanted = names.join("\n");
    let current = fs::read_to_string(&names_file).ok();
    if files.cert.exists() && files.key.exists() && current.as_deref() == Some(wanted.as_str()) {
        return Ok(files);
    }
    fs::create_dir_all(dir).map_err(io_error)?;
    let certified = rcgen::generate_simple_self_signed(names.to_vec())?;
    fs::write(&files.cert, certified.cert.pem()).map_err(io_error)?;
    fs::write(&files.key, certified.signing_key.serialize_pem()).map_err(io_error)?;
    restrict_to_owner(&files.key).map_err(io_error)?;
    fs::write(&names_file, wanted).map_err(io_error)?;
    Ok(files)
}

#[cfg(unix)]
fn restrict_to_owner(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn restrict_to_owner(_: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makes_a_certificate_once_and_again_when_names_change() {
        let dir = std::env::temp_dir().join(format!("hub-tls-{}", uuid::Uuid::new_v4()));
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let first = ensure_self_signed(&dir, &names).unwrap();
        let pem = fs::read_to_string(&first.cert).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
        ensure_self_signed(&dir, &names).unwrap();
        assert_eq!(fs::read_to_string(&first.cert).unwrap(), pem, "reused");
        ensure_self_signed(&dir, &["hub.example.com".to_owned()]).unwrap();
        assert_ne!(
            fs::read_to_string(&first.cert).unwrap(),
            pem,
            "regenerated for new names"
        );
        fs::remove_dir_all(dir).unwrap();
    }
}

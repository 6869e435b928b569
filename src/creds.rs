//! Credential intake: CHAP names from the command line, secrets from the environment, a file
//! or (warned about) the URL — never from a plain option, so they stay out of `ps`.

use std::path::Path;

use anyhow::{Context, Result, bail};
use sanshim_initiator::login::{ChapConfig, Secret};
use tracing::warn;

use crate::cli::Global;

/// Environment variable holding our CHAP secret.
pub const CHAP_SECRET_ENV: &str = "SANSHIM_CHAP_SECRET";
/// Environment variable holding the secret the target proves itself with (mutual CHAP).
pub const MUTUAL_SECRET_ENV: &str = "SANSHIM_MUTUAL_SECRET";

/// CHAP credentials from a URL's user part (`iscsi://USER%SECRET@...`).
pub struct UrlCredentials<'a> {
    /// CHAP name from the URL.
    pub user: Option<&'a str>,
    /// CHAP secret from the URL.
    pub secret: Option<&'a str>,
}

/// Builds the CHAP configuration for one login from the global options, the environment and
/// the URL's credentials (which take precedence for the one-way name and secret).
///
/// # Errors
/// A user without a secret (or the reverse), an unreadable secret file, or a mutual name
/// without one-way CHAP.
pub fn chap_config(global: &Global, url: UrlCredentials<'_>) -> Result<Option<ChapConfig>> {
    let user = url
        .user
        .map(str::to_string)
        .or_else(|| global.chap_user.clone());
    let secret = match url.secret {
        Some(s) => {
            warn!(
                "CHAP secret given in the URL: it is visible in the process list; prefer ${CHAP_SECRET_ENV} or --chap-secret-file"
            );
            Some(Secret::new(s.as_bytes().to_vec()))
        }
        None => read_secret(global.chap_secret_file.as_deref(), CHAP_SECRET_ENV)?,
    };
    let mutual_secret = read_secret(global.mutual_secret_file.as_deref(), MUTUAL_SECRET_ENV)?;
    let Some(user) = user else {
        if global.mutual_user.is_some() {
            bail!("--mutual-user needs one-way CHAP too: give --chap-user");
        }
        return Ok(None);
    };
    let Some(secret) = secret else {
        bail!(
            "CHAP user {user:?} has no secret: set ${CHAP_SECRET_ENV} or --chap-secret-file FILE"
        );
    };
    let mut config = ChapConfig::new(user, secret);
    if let Some(mutual_user) = &global.mutual_user {
        let Some(mutual_secret) = mutual_secret else {
            bail!(
                "mutual CHAP user {mutual_user:?} has no secret: set ${MUTUAL_SECRET_ENV} or --mutual-secret-file FILE"
            );
        };
        config.mutual = Some((mutual_user.clone(), mutual_secret));
    }
    config.validate().context("CHAP configuration")?;
    Ok(Some(config))
}

/// Reads a secret from `file` (its first line) or else from the environment variable `env`.
fn read_secret(file: Option<&Path>, env: &str) -> Result<Option<Secret>> {
    if let Some(path) = file {
        let text = zeroize::Zeroizing::new(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read secret file {}", path.display()))?,
        );
        let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
        if line.is_empty() {
            bail!("secret file {} is empty", path.display());
        }
        return Ok(Some(Secret::new(line.as_bytes().to_vec())));
    }
    match std::env::var(env) {
        Ok(v) if !v.is_empty() => {
            let v = zeroize::Zeroizing::new(v);
            Ok(Some(Secret::new(v.as_bytes().to_vec())))
        }
        _ => Ok(None),
    }
}

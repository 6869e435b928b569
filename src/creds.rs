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
/// Environment variable holding our CHAP secret for discovery sessions.
pub const DISCOVERY_CHAP_SECRET_ENV: &str = "SANSHIM_DISCOVERY_CHAP_SECRET";
/// Environment variable holding the secret a portal proves itself with in discovery.
pub const DISCOVERY_MUTUAL_SECRET_ENV: &str = "SANSHIM_DISCOVERY_MUTUAL_SECRET";

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
    assemble(
        Names {
            user: "--chap-user",
            secret: CHAP_SECRET_ENV,
            secret_file: "--chap-secret-file",
            mutual: "--mutual-user",
            mutual_secret: MUTUAL_SECRET_ENV,
            mutual_file: "--mutual-secret-file",
        },
        user,
        secret,
        global.mutual_user.clone(),
        mutual_secret,
    )
}

/// The credentials for discovery sessions given apart from the targets' (open-iscsi's
/// `discovery.sendtargets.auth.*`): `--discovery-chap-user` with its secret, and optionally
/// `--discovery-mutual-user`. `None` when no discovery name was given.
///
/// # Errors
/// As [`chap_config`].
pub fn discovery_chap_config(global: &Global) -> Result<Option<ChapConfig>> {
    let secret = read_secret(
        global.discovery_chap_secret_file.as_deref(),
        DISCOVERY_CHAP_SECRET_ENV,
    )?;
    let mutual_secret = read_secret(
        global.discovery_mutual_secret_file.as_deref(),
        DISCOVERY_MUTUAL_SECRET_ENV,
    )?;
    assemble(
        Names {
            user: "--discovery-chap-user",
            secret: DISCOVERY_CHAP_SECRET_ENV,
            secret_file: "--discovery-chap-secret-file",
            mutual: "--discovery-mutual-user",
            mutual_secret: DISCOVERY_MUTUAL_SECRET_ENV,
            mutual_file: "--discovery-mutual-secret-file",
        },
        global.discovery_chap_user.clone(),
        secret,
        global.discovery_mutual_user.clone(),
        mutual_secret,
    )
}

/// The option and variable names of one set of credentials, for the error messages.
struct Names {
    user: &'static str,
    secret: &'static str,
    secret_file: &'static str,
    mutual: &'static str,
    mutual_secret: &'static str,
    mutual_file: &'static str,
}

fn assemble(
    names: Names,
    user: Option<String>,
    secret: Option<Secret>,
    mutual_user: Option<String>,
    mutual_secret: Option<Secret>,
) -> Result<Option<ChapConfig>> {
    let Some(user) = user else {
        if mutual_user.is_some() {
            bail!(
                "{} needs one-way CHAP too: give {}",
                names.mutual,
                names.user
            );
        }
        return Ok(None);
    };
    let Some(secret) = secret else {
        bail!(
            "CHAP user {user:?} has no secret: set ${} or {} FILE",
            names.secret,
            names.secret_file
        );
    };
    let mut config = ChapConfig::new(user, secret);
    if let Some(mutual_user) = mutual_user {
        let Some(mutual_secret) = mutual_secret else {
            bail!(
                "mutual CHAP user {mutual_user:?} has no secret: set ${} or {} FILE",
                names.mutual_secret,
                names.mutual_file
            );
        };
        config.mutual = Some((mutual_user, mutual_secret));
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

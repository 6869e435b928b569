//! What `ls`, `discover`, `bench` and `export` share: our initiator name, the login proposal
//! from the digest options, credentials, the session settings, and opening sessions and disks
//! with errors mapped to exit codes.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::Duration;

use anyhow::anyhow;
use clap::Args;
use sanshim_initiator::disk::{DiskOptions, OpenError, ScsiDisk};
use sanshim_initiator::login::{DigestPref, LoginConfig, Proposal};
use sanshim_initiator::name::{IscsiName, read_default_initiator_name};
use sanshim_initiator::portal::Portal;
use sanshim_initiator::transport::{self, LoginPolicy, SessionError, SessionHandle};
use sanshim_initiator::url::{IscsiUrl, UrlError};
use sanshim_initiator::wire::Isid;
use tracing::{info, warn};

use crate::cli::{DigestChoice, Global};
use crate::creds::{self, UrlCredentials};
use crate::exit::{self, Failure};

/// Settings every login of this run shares.
pub struct Context<'g> {
    /// The global options.
    pub global: &'g Global,
    /// Our iSCSI name.
    pub initiator_name: String,
    /// Retry and timeout policy.
    pub policy: LoginPolicy,
    isid_seed: u32,
}

impl<'g> Context<'g> {
    /// Resolves the initiator name (lower-cased with a warning) and the login policy.
    ///
    /// # Errors
    /// An invalid `--initiator-name`, or no default name to be had.
    pub fn new(global: &'g Global) -> Result<Self, Failure> {
        let initiator_name = match &global.initiator_name {
            Some(name) => {
                let n = IscsiName::parse(name).map_err(|e| {
                    Failure::new(exit::USAGE, anyhow!("--initiator-name {name:?}: {e}"))
                })?;
                if n.lowercased {
                    warn!(
                        name = n.name.as_str(),
                        "initiator name lower-cased (iSCSI names are case-insensitive but targets compare them exactly)"
                    );
                }
                n.name.as_str().to_string()
            }
            None => {
                let d = read_default_initiator_name().map_err(|e| anyhow!(e))?;
                if d.lowercased {
                    warn!(
                        name = d.name.as_str(),
                        "InitiatorName from the initiator name file lower-cased"
                    );
                }
                d.name.as_str().to_string()
            }
        };
        // A random ISID qualifier per run; each path then gets its own, stable for the run.
        let isid_seed = RandomState::new().hash_one(std::process::id()) as u32;
        Ok(Context {
            global,
            initiator_name,
            policy: LoginPolicy::default(),
            isid_seed,
        })
    }

    /// The ISID for path number `path` of this run.
    pub fn isid(&self, path: u32) -> Isid {
        Isid::random_qualifier(self.isid_seed.wrapping_add(path.wrapping_mul(0x9e37_79b9)))
    }

    /// The operational keys we offer, from the digest options.
    pub fn proposal(&self) -> Proposal {
        Proposal {
            header_digest: digest(self.global.header_digest),
            data_digest: digest(self.global.data_digest),
            ..Proposal::default()
        }
    }

    /// The login configuration for `target` (a discovery session when `None`) with CHAP
    /// from the options (or the URL).
    ///
    /// # Errors
    /// A usage [`Failure`] for unusable credentials.
    fn login_config(
        &self,
        target: Option<&str>,
        url_creds: UrlCredentials<'_>,
        path: u32,
    ) -> Result<LoginConfig, Failure> {
        let isid = self.isid(path);
        let mut config = match target {
            Some(t) => LoginConfig::normal(&self.initiator_name, t, isid),
            None => LoginConfig::discovery(&self.initiator_name, isid),
        };
        config.proposal = self.proposal();
        config.chap =
            creds::chap_config(self.global, url_creds).map_err(|e| Failure::new(exit::USAGE, e))?;
        Ok(config)
    }

    /// Logs in to `target` at `portal` (a discovery session when `None`) and starts the
    /// session engine.
    ///
    /// # Errors
    /// A [`Failure`] with exit code 3 (unreachable), 4 (refused) or 1.
    pub async fn open_session(
        &self,
        portal: &Portal,
        target: Option<&str>,
        url_creds: UrlCredentials<'_>,
        path: u32,
    ) -> Result<SessionHandle, Failure> {
        let config = self.login_config(target, url_creds, path)?;
        let session = DiskOptions::default().session_config();
        transport::open(portal, config, &self.policy, session)
            .await
            .map_err(session_failure)
    }

    /// Logs in to the target a URL names.
    ///
    /// # Errors
    /// As [`Context::open_session`].
    pub async fn open(&self, url: &IscsiUrl, path: u32) -> Result<SessionHandle, Failure> {
        let creds = UrlCredentials {
            user: url.user(),
            secret: url.secret(),
        };
        let target = Some(url.target().as_str());
        self.open_session(&url.portal(), target, creds, path).await
    }

    /// Logs in to the target a URL names and opens its LUN as a block device with the
    /// concurrent session engine.
    ///
    /// # Errors
    /// A [`Failure`] with exit code 3 (unreachable), 4 (refused), 5 (the LUN is not a usable
    /// disk or a SCSI command failed) or 1.
    pub async fn open_disk(
        &self,
        url: &IscsiUrl,
        path: u32,
        options: DiskOptions,
    ) -> Result<ScsiDisk, Failure> {
        let creds = UrlCredentials {
            user: url.user(),
            secret: url.secret(),
        };
        let config = self.login_config(Some(url.target().as_str()), creds, path)?;
        let options = DiskOptions {
            lun: url.lun(),
            ..options
        };
        ScsiDisk::open(url.portal(), config, self.policy.clone(), options)
            .await
            .map_err(|e| match e {
                OpenError::Session(e) => session_failure(e),
                e @ (OpenError::Inspect(_)
                | OpenError::NotBlockDevice { .. }
                | OpenError::BadCapacity { .. }) => Failure::new(exit::SCSI, anyhow!(e)),
                e => Failure::new(exit::OTHER, anyhow!(e)),
            })
    }
}

/// Parses a URL given on the command line, warning about a lower-cased target name. A URL
/// without the `/LUN` part is accepted when `lun_optional`; its LUN is then `None`.
///
/// # Errors
/// A usage failure naming what is wrong with the URL.
pub fn parse_url(s: &str, lun_optional: bool) -> Result<(IscsiUrl, Option<u64>), Failure> {
    let usage = |e: UrlError| Failure::new(exit::USAGE, anyhow!("URL {}: {e}", redact(s)));
    let (url, lun) = match IscsiUrl::parse(s) {
        Ok(url) => {
            let lun = url.lun();
            (url, Some(lun))
        }
        Err(UrlError::MissingLun) if lun_optional => {
            let all = format!("{}/0", s.trim_end_matches('/'));
            (IscsiUrl::parse(&all).map_err(usage)?, None)
        }
        Err(e) => return Err(usage(e)),
    };
    if url.target_lowercased() {
        warn!(
            target = url.target().as_str(),
            "target name lower-cased: iSCSI names are lower case (firmware and some tools change their case)"
        );
    }
    Ok((url, lun))
}

/// `s` with any `USER%SECRET@` part reduced to `USER@`, for messages.
pub fn redact(s: &str) -> String {
    match (s.find("://"), s.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &s[scheme + 3..at];
            let user = userinfo.split('%').next().unwrap_or("");
            format!("{}{user}@{}", &s[..scheme + 3], &s[at + 1..])
        }
        _ => s.to_string(),
    }
}

/// Session settings a user may change (`bench`, `export`); unset ones keep the defaults of
/// [`DiskOptions`].
#[derive(Args, Debug)]
pub struct DiskArgs {
    /// Commands in flight per session at most (1 to 512).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=512))]
    pub queue_depth: Option<u32>,
    /// Seconds of silence after which a NOP-Out checks that the target still answers (0: never).
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub noop_interval: Option<Duration>,
    /// Seconds a NOP-Out may go unanswered before the connection counts as dead.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub noop_timeout: Option<Duration>,
    /// Seconds to keep trying to re-establish a dead session before failing its I/O.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub replacement_timeout: Option<Duration>,
    /// Seconds one command may run before it is aborted.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub command_timeout: Option<Duration>,
}

impl DiskArgs {
    /// The disk options these arguments ask for.
    pub fn options(&self, read_only: bool) -> DiskOptions {
        let d = DiskOptions::default();
        DiskOptions {
            read_only,
            queue_depth: self.queue_depth.unwrap_or(d.queue_depth),
            noop_interval: self.noop_interval.unwrap_or(d.noop_interval),
            noop_timeout: self.noop_timeout.unwrap_or(d.noop_timeout),
            replacement_timeout: self.replacement_timeout.unwrap_or(d.replacement_timeout),
            command_timeout: self
                .command_timeout
                .filter(|t| !t.is_zero())
                .unwrap_or(d.command_timeout),
            ..d
        }
    }
}

/// Parses a number of seconds (fractions allowed, at most a day) for a clap argument.
pub fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("{s}: expected 0 <= SECS <= 86400"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Maps a session failure to the exit code of the contract, with advice.
pub fn session_failure(e: SessionError) -> Failure {
    if e.is_unreachable() {
        let advice = "check the address and port, the cable and that the target service runs";
        Failure::new(exit::UNREACHABLE, anyhow!("{e} ({advice})"))
    } else if e.is_refusal() {
        let advice = "check the target name, the initiator name the target allows (ACL) and the CHAP credentials";
        Failure::new(exit::LOGIN_REFUSED, anyhow!("{e} ({advice})"))
    } else {
        Failure::new(exit::OTHER, anyhow!(e))
    }
}

fn digest(choice: DigestChoice) -> DigestPref {
    match choice {
        DigestChoice::Crc32c => DigestPref::Crc32c,
        DigestChoice::None => DigestPref::None,
        DigestChoice::PreferCrc32c => DigestPref::PreferCrc32c,
    }
}

impl Context<'_> {
    /// Opens every URL as a path to one LU, checks that each reports the first one's identity
    /// (INQUIRY VPD 0x83) and keeps the first; the others are logged out again until
    /// multipath drives them. `shown` are the URLs as the user gave them (for messages) and
    /// `purpose` names what is refused on a mismatch ("export", "benchmark").
    ///
    /// # Errors
    /// The first path's [`Failure`], or exit 1 naming both paths and identities when they
    /// differ.
    pub async fn open_paths(
        &self,
        shown: &[String],
        urls: &[IscsiUrl],
        options: &DiskOptions,
        purpose: &str,
    ) -> Result<ScsiDisk, Failure> {
        let mut first: Option<(ScsiDisk, Option<String>)> = None;
        for (path, url) in urls.iter().enumerate() {
            let disk = match self.open_disk(url, path as u32, *options).await {
                Ok(disk) => disk,
                Err(e) => {
                    if let Some((disk, _)) = first {
                        logout_quietly(disk).await;
                    }
                    return Err(e);
                }
            };
            let identity = disk.report().identity().map(|d| d.render());
            let Some((_, want)) = &first else {
                let shown_url = shown.first().map(|s| redact(s)).unwrap_or_default();
                info!(url = %shown_url, identity = identity.as_deref().unwrap_or("none"), "path 1 logged in");
                first = Some((disk, identity));
                continue;
            };
            let same = identity.is_some() && identity == *want;
            let refused = (!same)
                .then(|| mismatch(shown, path, want.as_deref(), identity.as_deref(), purpose));
            logout_quietly(disk).await;
            if let Some(error) = refused {
                if let Some((disk, _)) = first {
                    logout_quietly(disk).await;
                }
                return Err(Failure::new(exit::OTHER, error));
            }
            info!(
                path = path + 1,
                "path verified: same LU; not driven until multipath lands"
            );
        }
        first
            .map(|(disk, _)| disk)
            .ok_or_else(|| Failure::new(exit::USAGE, anyhow!("no URL given")))
    }
}

/// Logs a disk out (SYNCHRONIZE CACHE first when writable); a failure is only logged.
pub async fn logout_quietly(disk: ScsiDisk) {
    if let Err(e) = disk.close().await {
        warn!(error = %e, "logout failed");
    }
}

fn mismatch(
    shown: &[String],
    path: usize,
    want: Option<&str>,
    got: Option<&str>,
    purpose: &str,
) -> anyhow::Error {
    let url = |i: usize| shown.get(i).map(|s| redact(s)).unwrap_or_default();
    let none = "none (no VPD 0x83 designator)";
    anyhow!(
        "path {} ({}) reports LU identity {} but path 1 ({}) reports {}: not paths to one LU, \
         refusing to {purpose}",
        path + 1,
        url(path),
        got.unwrap_or(none),
        url(0),
        want.unwrap_or(none),
    )
}

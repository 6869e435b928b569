//! What `ls`, `discover`, `bench` and `export` share: our initiator name, the login proposal
//! from the digest options, credentials, the session settings, and opening sessions and disks
//! with errors mapped to exit codes.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::Duration;

use anyhow::anyhow;
use clap::Args;
use sanshim_initiator::disk::{DiskOptions, OpenError, ScsiDisk};
use sanshim_initiator::login::{ChapConfig, DigestPref, LoginConfig, Proposal};
use sanshim_initiator::name::{IscsiName, read_default_initiator_name};
use sanshim_initiator::portal::Portal;
use sanshim_initiator::transport::{self, LoginPolicy, SessionError, SessionHandle};
use sanshim_initiator::url::{IscsiUrl, UrlError};
use sanshim_initiator::wire::Isid;
use sanshim_mpath::{Multipath, NoPathRetry, Policy};
use tracing::{debug, info, warn};

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
            policy: LoginPolicy {
                response_timeout: global.login_timeout,
                ..LoginPolicy::default()
            },
            isid_seed,
        })
    }

    /// A context whose initiator name is `name` (the boot table's), unless `--initiator-name`
    /// was given, which wins with a warning when they differ.
    ///
    /// # Errors
    /// As [`Context::new`], or `name` is not a valid iSCSI name.
    pub fn with_initiator_name(global: &'g Global, name: Option<&str>) -> Result<Self, Failure> {
        let mut ctx = Context::new(global)?;
        match (name, &global.initiator_name) {
            (Some(table), Some(_)) => {
                if !table.eq_ignore_ascii_case(&ctx.initiator_name) {
                    warn!(
                        table = table,
                        used = ctx.initiator_name.as_str(),
                        "--initiator-name differs from the boot table's initiator name; the target's ACLs know the table's"
                    );
                }
            }
            (Some(table), None) => {
                let n = IscsiName::parse(table).map_err(|e| {
                    Failure::new(
                        exit::OTHER,
                        anyhow!(
                            "the boot table's initiator name {table:?}: {e} (give --initiator-name)"
                        ),
                    )
                })?;
                if n.lowercased {
                    warn!(
                        name = n.name.as_str(),
                        "initiator name from the boot table lower-cased (firmware changes the case of iSCSI names)"
                    );
                }
                ctx.initiator_name = n.name.as_str().to_string();
            }
            (None, _) => {}
        }
        Ok(ctx)
    }

    /// Logs in to `target` at `portal` with `chap` (not the command line's) and opens LUN
    /// `lun` as a block device: how `boot` opens the paths a boot table names.
    ///
    /// # Errors
    /// As [`Context::open_disk`]; the [`OpenError`] is kept so the caller can tell an
    /// authentication failure from a target that is still coming up.
    pub async fn open_disk_as(
        &self,
        portal: Portal,
        target: &str,
        chap: Option<sanshim_initiator::login::ChapConfig>,
        path: u32,
        options: DiskOptions,
    ) -> Result<ScsiDisk, OpenError> {
        let mut config = LoginConfig::normal(&self.initiator_name, target, self.isid(path));
        config.proposal = self.proposal();
        config.chap = chap;
        ScsiDisk::open(portal, config, self.policy.clone(), options).await
    }

    /// Opens a discovery session at `portal`, offering each of `offers` (a name for the log,
    /// and the CHAP credentials or none) in turn while the portal refuses them, each login
    /// bounded by `timeout`. Logs which offer the portal took ("none" when it chose no
    /// authentication over our CHAP offer), and warns when it falls back to none after a
    /// refusal.
    ///
    /// # Errors
    /// The offers tried and the last failure: a refusal of the last offer, or the first
    /// failure that is not a refusal (then trying others is pointless).
    pub async fn discovery_login(
        &self,
        portal: &Portal,
        offers: Vec<(&'static str, Option<ChapConfig>)>,
        path: u32,
        timeout: Duration,
    ) -> Result<SessionHandle, DiscoveryRefused> {
        let count = offers.len();
        let mut tried = Vec::new();
        for (i, (auth, chap)) in offers.into_iter().enumerate() {
            let mutual = chap.as_ref().is_some_and(|c| c.mutual.is_some());
            let mut config = LoginConfig::discovery(&self.initiator_name, self.isid(path));
            config.proposal = self.proposal();
            config.chap = chap;
            let session = DiskOptions::default().session_config();
            tried.push(auth);
            let login = transport::open(portal, config, &self.policy, session);
            let error = match tokio::time::timeout(timeout, login).await {
                Ok(Ok(handle)) => {
                    let auth = match handle.established().chap_algorithm {
                        Some(_) => auth,
                        None => "none",
                    };
                    info!(%portal, auth, "discovery session logged in");
                    return Ok(handle);
                }
                Ok(Err(e)) => DiscoveryError::Session(e),
                Err(_) => DiscoveryError::Timeout(timeout),
            };
            let refused = matches!(&error, DiscoveryError::Session(e) if e.is_refusal());
            if !refused || i + 1 == count {
                return Err(DiscoveryRefused { tried, error });
            }
            warn!(
                %portal,
                error = %error,
                "the portal refused our CHAP credentials for discovery; trying without authentication (its discovery may be unprotected, or protected by other credentials)"
            );
            if mutual {
                warn!(%portal, "the SendTargets answer will not be authenticated (target logins still use mutual CHAP)");
            }
        }
        Err(DiscoveryRefused {
            tried,
            error: DiscoveryError::NoOffer,
        })
    }

    /// Opens a discovery session at `portal` for `sanshim discover`, with the credentials a
    /// user expects to work whether or not the portal protects discovery: the discovery
    /// credentials (`--discovery-chap-user`) alone when given; else the session credentials
    /// (`--chap-user`) and, if the portal refuses them, no authentication (many portals, LIO's
    /// among them, protect targets but not discovery, and fail a CHAP login for discovery
    /// when no discovery secret is set); else none. Logs which one was used.
    ///
    /// # Errors
    /// Unusable credentials (2), the portal unreachable (3), every offer refused (4, saying
    /// what was tried and what to give), or another login failure.
    pub async fn open_discovery(
        &self,
        portal: &Portal,
        path: u32,
    ) -> Result<SessionHandle, Failure> {
        let usage = |e| Failure::new(exit::USAGE, e);
        let no_url = || UrlCredentials {
            user: None,
            secret: None,
        };
        let offers: Vec<(&'static str, Option<ChapConfig>)> =
            match creds::discovery_chap_config(self.global).map_err(usage)? {
                Some(chap) => vec![("discovery-chap", Some(chap))],
                None => match creds::chap_config(self.global, no_url()).map_err(usage)? {
                    Some(chap) => vec![("session-chap", Some(chap)), ("none", None)],
                    None => vec![("none", None)],
                },
            };
        // Any login has its own deadlines; this bound only stops a portal that never answers.
        let timeout = Duration::from_secs(60);
        let refused = match self.discovery_login(portal, offers, path, timeout).await {
            Ok(handle) => return Ok(handle),
            Err(refused) => refused,
        };
        let DiscoveryRefused { tried, error } = refused;
        let e = match error {
            DiscoveryError::Session(e) if e.is_refusal() => e,
            DiscoveryError::Session(e) => return Err(session_failure(e)),
            other => {
                return Err(Failure::new(
                    exit::UNREACHABLE,
                    anyhow!("discovery at {portal}: {other}"),
                ));
            }
        };
        let what = tried
            .iter()
            .map(|a| match *a {
                "discovery-chap" => "the discovery CHAP credentials",
                "session-chap" => "the --chap-user credentials",
                _ => "no authentication",
            })
            .collect::<Vec<_>>()
            .join(", then ");
        let advice = if tried.last() == Some(&"discovery-chap") {
            "check --discovery-chap-user and its secret ($SANSHIM_DISCOVERY_CHAP_SECRET or --discovery-chap-secret-file), and the initiator name the portal allows"
        } else {
            "the portal protects discovery: give its discovery credentials with --discovery-chap-user and $SANSHIM_DISCOVERY_CHAP_SECRET (or --discovery-chap-secret-file)"
        };
        Err(Failure::new(
            exit::LOGIN_REFUSED,
            anyhow!("discovery at {portal}: tried {what}: {e} ({advice})"),
        ))
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
            .map_err(open_failure)
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

/// Multipath settings (`bench`, `export`).
#[derive(Args, Debug)]
pub struct PathArgs {
    /// How requests are spread over the paths: `service-time` (default: the path that would
    /// finish first, by bytes in flight and measured throughput), `round-robin`, or
    /// `queue-length` (fewest requests in flight).
    #[arg(long, value_enum, default_value_t = PolicyArg::ServiceTime)]
    pub policy: PolicyArg,
    /// With `--policy round-robin`: requests sent down a path before the next takes over.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rr_min_io: u32,
    /// When no path works: wait SECS for one, then fail requests (default 60); `queue` waits
    /// forever, `fail` fails at once.
    #[arg(long, value_name = "SECS|queue|fail", value_parser = parse_no_path_retry)]
    pub no_path_retry: Option<NoPathRetry>,
}

/// `--policy` values.
#[derive(Clone, Copy, Debug, Eq, PartialEq, clap::ValueEnum)]
pub enum PolicyArg {
    /// Each path in turn.
    RoundRobin,
    /// The path with the fewest requests in flight.
    QueueLength,
    /// The path with the lowest expected service time.
    ServiceTime,
}

impl PathArgs {
    /// The multipath configuration these arguments ask for; `replacement` (the session
    /// option `--replacement-timeout`) serves as no-path-retry when that is not given.
    pub fn config(&self, replacement: Option<Duration>) -> sanshim_mpath::Config {
        let policy = match self.policy {
            PolicyArg::RoundRobin => Policy::RoundRobin {
                min_io: self.rr_min_io,
            },
            PolicyArg::QueueLength => Policy::QueueLength,
            PolicyArg::ServiceTime => Policy::ServiceTime,
        };
        let default = sanshim_mpath::Config::default();
        sanshim_mpath::Config {
            policy,
            no_path_retry: self
                .no_path_retry
                .or(replacement.map(NoPathRetry::For))
                .unwrap_or(default.no_path_retry),
            ..default
        }
    }
}

fn parse_no_path_retry(s: &str) -> Result<NoPathRetry, String> {
    match s {
        "queue" => Ok(NoPathRetry::Queue),
        "fail" => Ok(NoPathRetry::Fail),
        secs => parse_secs(secs).map(|d| match d.is_zero() {
            true => NoPathRetry::Fail,
            false => NoPathRetry::For(d),
        }),
    }
}

/// Parses `--login-timeout`: seconds, above zero.
pub fn parse_login_timeout(s: &str) -> Result<Duration, String> {
    match parse_secs(s)? {
        d if d.is_zero() => Err(format!("{s}: the login timeout must be above 0")),
        d => Ok(d),
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

/// Maps a failure to open a disk to the exit code of the contract, with advice.
pub fn open_failure(e: OpenError) -> Failure {
    match e {
        OpenError::Session(e) => session_failure(e),
        e @ (OpenError::Inspect(_)
        | OpenError::NotBlockDevice { .. }
        | OpenError::BadCapacity { .. }) => Failure::new(exit::SCSI, anyhow!(e)),
        e => Failure::new(exit::OTHER, anyhow!(e)),
    }
}

/// Maps a session failure to the exit code of the contract, with advice.
pub fn session_failure(e: SessionError) -> Failure {
    if matches!(
        e,
        SessionError::NoLoginResponse { .. } | SessionError::LoginStalled { .. }
    ) {
        // The message asks its own questions; --login-timeout is the knob.
        Failure::new(
            exit::UNREACHABLE,
            anyhow!("{e} (a slow target may need a longer --login-timeout)"),
        )
    } else if e.is_unreachable() {
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
    /// Opens every URL as a path to one LU and groups them into one multipath device, after
    /// checking that they report the same identity (INQUIRY VPD 0x83) and shape. A path whose
    /// portal does not answer is left out with a warning as long as one path works; a login
    /// the target refuses is an error. `shown` are the URLs as the user gave them (for
    /// messages) and `purpose` names what is refused on a mismatch ("export", "benchmark").
    ///
    /// # Errors
    /// A [`Failure`]: every path unreachable (3), a refused login (4), a LU that is no usable
    /// disk (5), or paths to different LUs (1, naming both paths and identities).
    pub async fn open_paths(
        &self,
        shown: &[String],
        urls: &[IscsiUrl],
        options: &DiskOptions,
        config: sanshim_mpath::Config,
        purpose: &str,
    ) -> Result<Multipath, Failure> {
        let options = DiskOptions {
            fail_fast: true,
            ..*options
        };
        let opened = futures_join(
            urls.iter()
                .enumerate()
                .map(|(i, url)| async move { (i, self.open_disk(url, i as u32, options).await) }),
        )
        .await;
        let mut paths = Vec::new();
        let mut first_error = None;
        for (i, result) in opened {
            let name = shown.get(i).map(|s| redact(s)).unwrap_or_default();
            match result {
                Ok(disk) => {
                    info!(path = i + 1, url = %name, identity = ?disk.report().identity().map(|d| d.render()), "path logged in");
                    paths.push((name, disk));
                }
                Err(e) if e.code() == exit::UNREACHABLE && urls.len() > 1 => {
                    warn!(path = i + 1, url = %name, error = %e.message(), "path unreachable; going on without it");
                    first_error.get_or_insert(e);
                }
                Err(e) => {
                    close_all(paths).await;
                    return Err(e);
                }
            }
        }
        if paths.is_empty() {
            return Err(
                first_error.unwrap_or_else(|| Failure::new(exit::USAGE, anyhow!("no URL given")))
            );
        }
        if let Some((name, disk)) = paths.first() {
            warn_other_luns(name, disk).await;
        }
        let disks: Vec<(String, ScsiDisk)> = paths;
        match Multipath::new(disks, config).await {
            Ok(device) => Ok(device),
            Err(e) => Err(Failure::new(
                exit::OTHER,
                anyhow!("{e}; refusing to {purpose}"),
            )),
        }
    }
}

/// LUN masking mistakes destroy data: when the target presents disks besides the one named,
/// say which, so that an operator who meant another one stops before anything is written.
/// Only a warning — several LUNs behind one target are normal, and sanshim never touches any
/// LUN but the named one. A target that cannot list its LUNs is only noted in the debug log.
pub async fn warn_other_luns(shown: &str, disk: &ScsiDisk) {
    let named = disk.lun();
    match sanshim_initiator::inspect::disk_luns(disk.session(), 64).await {
        Ok(luns) => {
            let others: Vec<String> = luns
                .iter()
                .filter(|lun| **lun != named)
                .map(|lun| render_lun(*lun))
                .collect();
            if !others.is_empty() {
                warn!(
                    url = %shown,
                    "the target also presents LUN {} besides LUN {}: only LUN {} (the one named) \
                     will be used; if you meant another, stop now and check the URL and the \
                     array's LUN masking",
                    others.join(", "),
                    render_lun(named),
                    render_lun(named),
                );
            }
        }
        Err(e) => debug!(url = %shown, error = %e, "the target's LUNs could not be listed"),
    }
}

/// A LUN as users write it: its number, or its eight bytes in hex when it has none.
fn render_lun(lun: sanshim_initiator::wire::Lun) -> String {
    lun.number()
        .map_or_else(|| format!("{:#018x}", lun.raw()), |n| n.to_string())
}

/// Logs every disk out; failures are only logged.
async fn close_all(paths: Vec<(String, ScsiDisk)>) {
    for (name, disk) in paths {
        if let Err(e) = disk.close().await {
            warn!(path = %name, error = %e, "logout failed");
        }
    }
}

/// Runs futures concurrently on this task and collects their outputs in order.
async fn futures_join<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    sanshim_blockdev::split::join_all(futures.collect()).await
}

/// Why [`Context::discovery_login`] got no session: the offers it tried, in order, and the
/// failure that ended it.
#[derive(Debug)]
pub struct DiscoveryRefused {
    /// The names of the offers tried.
    pub tried: Vec<&'static str>,
    /// The last failure.
    pub error: DiscoveryError,
}

/// The failure of one discovery login.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The login failed.
    #[error(transparent)]
    Session(SessionError),
    /// The portal did not finish the login in time.
    #[error("no login answer in {} s", .0.as_secs())]
    Timeout(Duration),
    /// There was nothing to offer.
    #[error("no credentials to offer")]
    NoOffer,
}

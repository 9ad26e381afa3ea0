//! One settings struct for `bitseed serve`: defaults < `bitseed.toml` (or `--config FILE`) <
//! `BITSEED_*` environment variables < command-line flags, merged by the `config` crate.
//!
//! Environment variables name a key with `_` after the prefix and `__` between sections:
//! `BITSEED_CONTENT=/srv/content`, `BITSEED_HTTP__LISTEN=0.0.0.0:80`. A list is comma-separated:
//! `BITSEED_TRACKER__TRUSTED_PROXIES=127.0.0.1,::1` (empty: no entries).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::cluster::ClusterConfig;
use crate::dht::DhtConfig;
use crate::egress::EgressConfig;
use crate::lsd::LsdConfig;
use crate::metainfo::{piece_size, Format};
use crate::peer::PeerConfig;
use crate::tracker::TrackerConfig;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration: {text}: {hint}")]
    Hinted { text: String, hint: &'static str },
    #[error("configuration: `{key}`: {why}")]
    Invalid { key: &'static str, why: String },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The watched folder: each top-level file or folder in it is published as one torrent.
    pub content: PathBuf,
    /// Where bitseed keeps its state (the SQLite catalog, tracker counts, keys).
    pub state: PathBuf,
    /// The URL this server is reached at (e.g. `https://example.com`), used in the announce and
    /// web-seed URLs written into served torrents. Unset: taken from each request's Host header.
    pub public_url: Option<String>,
    pub http: HttpSettings,
    pub udp: UdpSettings,
    pub torrent: TorrentSettings,
    pub catalog: CatalogSettings,
    /// The built-in tracker (served on the HTTP address at /announce and /scrape, and over UDP).
    pub tracker: TrackerConfig,
    /// The seeder (peer wire protocol on `peer.listen`).
    pub peer: PeerConfig,
    /// The publisher's one upload budget, over the peer wire, the web seed and direct
    /// downloads.
    pub egress: EgressConfig,
    /// What the web page says, and the publisher's view of it.
    pub page: PageSettings,
    /// The DHT node (BEP 5) on the peer port's UDP side.
    pub dht: DhtConfig,
    /// Local service discovery (BEP 14) announces on the LAN.
    pub lsd: LsdConfig,
    /// Several nodes sharing one catalog and its swarms through Redis.
    pub cluster: ClusterConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PageSettings {
    /// The page's title (plain text), also the Atom feed's.
    pub title: String,
    /// A few words under the title (plain text; a blank line starts a new paragraph).
    pub intro: String,
    /// The publisher's token: with it (`/?token=…` once, then a cookie; or
    /// `Authorization: Bearer …` for the API) the page and the API also list the entries that
    /// are not published (queued, being hashed, failed, with why) and the upload figures.
    /// Unset: nobody sees them. At least 16 characters (e.g. `openssl rand -hex 16`).
    pub admin_token: Option<String>,
    /// Where the page loads WebTorrent (the `webtorrent` npm package's
    /// `dist/webtorrent.min.js`) from for its "Download in browser" button: loaded only when
    /// a visitor clicks it. Empty: no such button. Serve your own copy to keep visitors off a
    /// CDN.
    pub webtorrent_url: String,
    /// Its Subresource Integrity hash (`sha384-…`, e.g. `openssl dgst -sha384 -binary FILE |
    /// openssl base64 -A`): the browser refuses a script with other bytes. Empty: not checked.
    pub webtorrent_integrity: String,
    /// Largest file offered for download in the browser, in bytes (the browser holds the
    /// whole file in memory); larger ones offer the .torrent only.
    pub browser_max_bytes: u64,
}

/// WebTorrent as the page loads it by default: the version the tests run, pinned, with its
/// integrity hash (computed from the npm package's file).
pub const WEBTORRENT_URL: &str =
    "https://cdn.jsdelivr.net/npm/webtorrent@3.0.21/dist/webtorrent.min.js";
pub const WEBTORRENT_INTEGRITY: &str =
    "sha384-IexsdEUdGw4BzhFFI9KtUV6DveUjtM3Qwf/paYQ1I3U0fnEUItBxhSKS0BHQwoV7";

impl Default for PageSettings {
    fn default() -> Self {
        PageSettings {
            title: "Downloads".into(),
            intro: "Download with BitTorrent (the .torrent file or the magnet link) to share the \
                    load with everyone else downloading, or directly over HTTP."
                .into(),
            admin_token: None,
            webtorrent_url: WEBTORRENT_URL.into(),
            webtorrent_integrity: WEBTORRENT_INTEGRITY.into(),
            browser_max_bytes: 1 << 30,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Address of the web page, API, tracker (/announce, /scrape) and web seed (/files).
    #[serde(deserialize_with = "listen_addr")]
    pub listen: SocketAddr,
    /// Log a line per HTTP request at info level (client, method, path, status, bytes sent,
    /// duration), target `bitseed::access`.
    pub access_log: bool,
    /// Seconds a client has to send a whole request head; a slow or silent client is cut off
    /// after it (actix's `client_request_timeout`).
    pub request_timeout: f64,
    /// Seconds an idle keep-alive connection stays open between requests.
    pub keep_alive: f64,
    /// Seconds a response may sit unsent (the client reads nothing, or does not acknowledge)
    /// before the connection is closed: the kernel's TCP_USER_TIMEOUT on each connection.
    pub send_timeout: f64,
    /// Open connections per HTTP worker thread; more wait to be accepted.
    pub max_connections: usize,
    /// Open connections from one client address (an IPv6 client: one /64); more are closed at
    /// once. Trusted proxies (`tracker.trusted_proxies`) are exempt. 0 = no limit.
    pub max_connections_per_ip: usize,
    /// HTTP worker threads; 0 = one per CPU.
    pub workers: usize,
    /// Longest request target (path and query) in bytes; longer is answered 414.
    pub max_uri_bytes: usize,
    /// Most bytes over all header names and values of a request; more is answered 431.
    pub max_header_bytes: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UdpSettings {
    /// Address of the UDP tracker (BEP 15).
    #[serde(deserialize_with = "listen_addr")]
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TorrentSettings {
    /// v1, merkle, v2 or hybrid.
    pub format: Format,
    /// Piece size in bytes (a power of two from 16 KiB to 64 MiB), or 0 for the automatic rule.
    pub piece_size: u64,
    /// Mark published torrents private (BEP 27).
    pub private: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogSettings {
    /// Seconds a new or changed entry must stay unchanged before it is hashed.
    pub settle_secs: f64,
    /// Entries hashed at the same time.
    pub hash_jobs: usize,
    /// Threads per hashing job (0: the number of CPUs).
    pub hash_threads: usize,
    /// Publish top-level symbolic links, as the entry they point to, when their target is beneath
    /// the content folder (never outside it, never a hidden name). Links inside a published
    /// folder are skipped either way.
    pub follow_symlinks: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            content: PathBuf::from("./content"),
            state: PathBuf::from("./.bitseed"),
            public_url: None,
            http: HttpSettings::default(),
            udp: UdpSettings::default(),
            torrent: TorrentSettings::default(),
            catalog: CatalogSettings::default(),
            tracker: TrackerConfig::default(),
            peer: PeerConfig::default(),
            egress: EgressConfig::default(),
            page: PageSettings::default(),
            dht: DhtConfig::default(),
            lsd: LsdConfig::default(),
            cluster: ClusterConfig::default(),
        }
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            access_log: true,
            request_timeout: 5.0,
            keep_alive: 5.0,
            send_timeout: 60.0,
            max_connections: 25_000,
            // Browsers open 6 per host, download managers up to 16.
            max_connections_per_ip: 64,
            workers: 0,
            max_uri_bytes: 8192,
            max_header_bytes: 16384,
        }
    }
}

impl Default for UdpSettings {
    fn default() -> Self {
        UdpSettings {
            listen: SocketAddr::from(([0, 0, 0, 0], 6969)),
        }
    }
}

impl Default for TorrentSettings {
    fn default() -> Self {
        TorrentSettings {
            format: Format::V1,
            piece_size: 0,
            private: false,
        }
    }
}

impl Default for CatalogSettings {
    fn default() -> Self {
        CatalogSettings {
            settle_secs: 2.0,
            hash_jobs: 1,
            hash_threads: 0,
            follow_symlinks: false,
        }
    }
}

/// Command-line values that override everything else, as `(key, value)` pairs.
pub type Overrides = Vec<(&'static str, String)>;

/// Every setting that is a list. The environment gives only strings, so these are split on
/// commas by [`EnvLists`] (a test checks that no list setting is missing here).
pub const LIST_KEYS: &[&str] = &["tracker.trusted_proxies", "dht.bootstrap"];

const ENV_PREFIX: &str = "BITSEED_";

/// The variable that sets `key`: `tracker.trusted_proxies` → `BITSEED_TRACKER__TRUSTED_PROXIES`.
pub fn env_name(key: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        key.replace('.', "__").to_ascii_uppercase()
    )
}

/// `BITSEED_*` variables of `env` but the lists (`EnvLists` takes those).
fn env_source(env: &[(String, String)]) -> config::Environment {
    let lists: Vec<String> = LIST_KEYS.iter().map(|k| env_name(k)).collect();
    config::Environment::with_prefix("BITSEED")
        .prefix_separator("_")
        .separator("__")
        .try_parsing(true)
        .source(Some(
            env.iter()
                .filter(|(k, _)| !lists.iter().any(|l| l.eq_ignore_ascii_case(k)))
                .cloned()
                .collect(),
        ))
}

/// The list settings from the environment, comma-separated, each item trimmed, empty items
/// dropped (so an empty variable is an empty list). The `config` crate's own list parsing keeps
/// spaces and makes `""` a list of one empty string; this is the one form documented.
#[derive(Debug, Clone)]
struct EnvLists(Vec<(String, String)>);

impl config::Source for EnvLists {
    fn clone_into_box(&self) -> Box<dyn config::Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<config::Map<String, config::Value>, config::ConfigError> {
        let mut out = config::Map::new();
        for key in LIST_KEYS {
            let name = env_name(key);
            let Some((_, value)) = self.0.iter().find(|(k, _)| k.eq_ignore_ascii_case(&name))
            else {
                continue;
            };
            let origin = format!("the environment ({name})");
            let items: Vec<config::Value> = value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| config::Value::new(Some(&origin), s))
                .collect();
            out.insert((*key).to_owned(), config::Value::new(Some(&origin), items));
        }
        Ok(out)
    }
}

/// `config`'s error with the fix for the mistakes people make, when its text is one of them.
fn with_hint(e: config::ConfigError) -> ConfigError {
    let text = e.to_string();
    let hint = if text.contains("invalid socket address syntax") {
        Some(LISTEN_HINT)
    } else {
        None
    };
    match hint {
        Some(hint) => ConfigError::Hinted { text, hint },
        None => ConfigError::Load(e),
    }
}

const LISTEN_HINT: &str = "use an IP address and a port, e.g. 127.0.0.1:8080 (this machine only) \
                           or 0.0.0.0:8080 (every IPv4 interface)";

/// A listen address: an IP address and a port. A host name is refused with the fix, not
/// resolved: `localhost` is two addresses (127.0.0.1 and ::1), and which one a server took
/// would depend on the resolver.
pub fn parse_listen(value: &str) -> Result<SocketAddr, String> {
    value
        .trim()
        .parse()
        .map_err(|_| format!("`{value}` is not an IP address and port: {LISTEN_HINT}"))
}

fn listen_addr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(d)?;
    parse_listen(&text).map_err(serde::de::Error::custom)
}

impl Settings {
    /// Loads defaults, then `file` (required when given, else `bitseed.toml` if present), then
    /// `BITSEED_*` variables, then `overrides`; validates the result.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Settings, ConfigError> {
        let env = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .filter(|(k, _)| k.to_ascii_uppercase().starts_with(ENV_PREFIX))
            .collect();
        Settings::load_with_env(file, overrides, env)
    }

    /// `load` with `env` as the environment.
    fn load_with_env(
        file: Option<&Path>,
        overrides: &Overrides,
        env: Vec<(String, String)>,
    ) -> Result<Settings, ConfigError> {
        let mut b = config::Config::builder();
        b = match file {
            Some(f) => b.add_source(config::File::from(f).required(true)),
            None => b.add_source(config::File::with_name("bitseed.toml").required(false)),
        };
        b = b.add_source(env_source(&env)).add_source(EnvLists(env));
        for (key, value) in overrides {
            b = b.set_override(*key, value.as_str())?;
        }
        let settings: Settings = b
            .build()
            .and_then(config::Config::try_deserialize)
            .map_err(with_hint)?;
        settings.validate()?;
        Ok(settings)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, why: String| Err(ConfigError::Invalid { key, why });
        if let Err(e) = self.tracker.validate() {
            return invalid("tracker", e.to_string());
        }
        if let Err(why) = self.dht.validate() {
            return invalid("dht", why);
        }
        if let Err(why) = self.egress.validate() {
            return invalid("egress", why);
        }
        if let Some(why) = self.cluster.problem() {
            return invalid("cluster", why);
        }
        if self.torrent.piece_size != 0 {
            if let Err(why) = piece_size::check(self.torrent.piece_size) {
                return invalid("torrent.piece_size", why);
            }
        }
        if !(self.catalog.settle_secs.is_finite() && self.catalog.settle_secs >= 0.0) {
            return invalid("catalog.settle_secs", "must be zero or more".into());
        }
        if self.peer.upload_slots == 0 {
            return invalid("peer.upload_slots", "must be at least 1".into());
        }
        if self.peer.max_connections == 0 || self.peer.max_connections_per_torrent == 0 {
            return invalid("peer.max_connections", "must be at least 1".into());
        }
        if self.http.max_connections == 0 {
            return invalid("http.max_connections", "must be at least 1".into());
        }
        for (key, v) in [
            ("http.request_timeout", self.http.request_timeout),
            ("http.keep_alive", self.http.keep_alive),
            ("http.send_timeout", self.http.send_timeout),
            ("peer.handshake_timeout", self.peer.handshake_timeout),
            ("peer.idle_timeout", self.peer.idle_timeout),
            ("peer.frame_timeout", self.peer.frame_timeout),
            ("peer.send_timeout", self.peer.send_timeout),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return invalid(key, format!("{v} is not a positive number of seconds"));
            }
        }
        if self.catalog.hash_jobs == 0 {
            return invalid("catalog.hash_jobs", "must be at least 1".into());
        }
        if let Some(token) = &self.page.admin_token {
            if token.chars().count() < 16 {
                return invalid(
                    "page.admin_token",
                    "is shorter than 16 characters: use a long random one, e.g. the output of \
                     `openssl rand -hex 16`"
                        .into(),
                );
            }
        }
        if let Some(url) = &self.public_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return invalid(
                    "public_url",
                    format!("`{url}` must start with http:// or https://"),
                );
            }
        }
        Ok(())
    }

    pub fn settle(&self) -> Duration {
        Duration::from_secs_f64(self.catalog.settle_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_override_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("b.toml");
        std::fs::write(
            &file,
            "content = \"/from/file\"\n[http]\nlisten = \"127.0.0.1:9000\"\n[torrent]\nformat = \"hybrid\"\n",
        )
        .unwrap();
        let s = Settings::load(Some(&file), &vec![("content", "/from/flag".into())]).unwrap();
        assert_eq!(s.content, PathBuf::from("/from/flag"));
        assert_eq!(s.http.listen, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(s.torrent.format, Format::Hybrid);
        assert_eq!(s.udp.listen, UdpSettings::default().listen);
    }

    #[test]
    fn bad_values_name_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("[torrent]\npiece_size = 1000\n", "torrent.piece_size"),
            ("[http]\nlisten = \"nowhere\"\n", "listen"),
            ("colour = \"blue\"\n", "colour"),
            ("public_url = \"ftp://x\"\n", "public_url"),
            ("[torrent]\nformat = \"v3\"\n", "v3"),
        ];
        for (text, key) in cases {
            let file = dir.path().join("c.toml");
            std::fs::write(&file, text).unwrap();
            let err = Settings::load(Some(&file), &Vec::new())
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{text:?}: {err}");
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn list_settings_come_from_the_environment_comma_separated() {
        let load = |v: &str| {
            Settings::load_with_env(
                None,
                &Vec::new(),
                env(&[
                    ("BITSEED_TRACKER__TRUSTED_PROXIES", v),
                    ("BITSEED_HTTP__ACCESS_LOG", "false"),
                ]),
            )
        };
        let s = load("127.0.0.1, ::1,").unwrap();
        assert_eq!(
            s.tracker.trusted_proxies,
            vec![
                "127.0.0.1".parse::<std::net::IpAddr>().unwrap(),
                "::1".parse().unwrap()
            ]
        );
        assert!(!s.http.access_log);
        assert_eq!(load("10.0.0.1").unwrap().tracker.trusted_proxies.len(), 1);
        assert!(load("").unwrap().tracker.trusted_proxies.is_empty());
        let err = load("proxy.example").unwrap_err().to_string();
        assert!(err.contains("tracker.trusted_proxies"), "{err}");
    }

    /// Every list in the settings is in `LIST_KEYS`, so none is left that the environment
    /// cannot set.
    #[test]
    fn every_list_setting_is_split_from_the_environment() {
        fn lists(prefix: &str, v: &toml::Value, out: &mut Vec<String>) {
            match v {
                toml::Value::Table(t) => {
                    for (k, v) in t {
                        let key = if prefix.is_empty() {
                            k.clone()
                        } else {
                            format!("{prefix}.{k}")
                        };
                        lists(&key, v, out);
                    }
                }
                toml::Value::Array(_) => out.push(prefix.to_owned()),
                _ => {}
            }
        }
        let mut found = Vec::new();
        lists(
            "",
            &toml::Value::try_from(Settings::default()).unwrap(),
            &mut found,
        );
        for key in &found {
            assert!(
                LIST_KEYS.contains(&key.as_str()),
                "`{key}` is a list missing from LIST_KEYS"
            );
        }
        assert_eq!(
            env_name("tracker.trusted_proxies"),
            "BITSEED_TRACKER__TRUSTED_PROXIES"
        );
    }

    #[test]
    fn listen_addresses_name_the_value_and_the_fix() {
        for (k, v) in [
            ("BITSEED_HTTP__LISTEN", "localhost:8080"),
            ("BITSEED_UDP__LISTEN", "localhost:6969"),
            ("BITSEED_PEER__LISTEN", "localhost:6881"),
        ] {
            let err = Settings::load_with_env(None, &Vec::new(), env(&[(k, v)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains("127.0.0.1:8080"), "{k}: {err}");
        }
        let err = Settings::load_with_env(
            None,
            &Vec::new(),
            env(&[("BITSEED_HTTP__LISTEN", "localhost:8080")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("`localhost:8080`") && err.contains("http.listen"),
            "{err}"
        );
    }
}

//! Opening one connection: libpq's `sslmode` semantics on rustls (pure Rust, so the wheel
//! needs no system OpenSSL), its certificate files, and the fallbacks of `allow` and
//! `prefer`. The pool ([`crate::pool`]) opens every connection through [`Connector`].
//!
//! | sslmode | TLS | the server's certificate |
//! |---|---|---|
//! | disable | never | - |
//! | allow | only if the server refuses a plain connection | checked against `sslrootcert` if there is one |
//! | prefer (default) | if the server offers it; plain if it does not or the handshake fails | as for allow |
//! | require | always | as for allow |
//! | verify-ca | always | signed by a root of `sslrootcert` |
//! | verify-full | always | signed by a root of `sslrootcert`, and issued for the host name |
//!
//! `sslrootcert=system` uses the platform's trusted roots and implies `verify-full`. Without
//! `sslrootcert`, `~/.postgresql/root.crt` is used when it exists; a client certificate is
//! `sslcert`/`sslkey`, else `~/.postgresql/postgresql.crt`/`.key` when they exist. Unix
//! sockets never use TLS (the server offers none there).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::Connect;
use futures_util::future::BoxFuture;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::task::JoinHandle;
use tokio_postgres::config::{Host, SslMode as DriverMode};
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Config, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::dsn::Split;
use crate::error::{causes, Error, Result};

/// libpq's `sslmode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<Self> {
        Ok(match value {
            "disable" => Self::Disable,
            "allow" => Self::Allow,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            _ => {
                return Err(Error::invalid(
                    "invalid DSN: invalid value for option `sslmode` (expected disable, allow, \
                     prefer, require, verify-ca or verify-full)",
                ))
            }
        })
    }

    /// What the driver is asked for on the first attempt.
    fn first_attempt(self) -> DriverMode {
        match self {
            Self::Disable | Self::Allow => DriverMode::Disable,
            Self::Prefer => DriverMode::Prefer,
            Self::Require | Self::VerifyCa | Self::VerifyFull => DriverMode::Require,
        }
    }
}

/// How long a pool that has reached its server before waits for it to come back (a
/// restart, a failover) when a new connection is refused, before the call fails with the
/// reason; the call's own timeout applies too. A server still down after the window is
/// taken for down: calls fail at once until a connection opens again.
pub const RESTART_WINDOW: Duration = Duration::from_secs(10);

/// An open connection's I/O, to be polled for the client to make progress.
pub type Connection =
    tokio_postgres::Connection<Socket, <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream>;

/// Opens connections with one DSN's TLS settings.
pub struct Connector {
    mode: SslMode,
    tls: MakeRustlsConnect,
    /// Whether to wait out [`RESTART_WINDOW`] (the primary) or fail at once (a replica, which
    /// reads fall back from).
    waits_for_restarts: bool,
    /// Whether a connection was ever opened: refusals before that are configuration errors,
    /// reported at once.
    reached: AtomicBool,
}

impl Connector {
    /// The TLS settings of `dsn`'s own options, with `config` (the rest of the DSN) told what
    /// to ask the server for first.
    pub fn new(dsn: &Split, config: &mut Config, waits_for_restarts: bool) -> Result<Self> {
        let root = dsn.get("sslrootcert");
        let mut mode = match (dsn.get("sslmode").map(SslMode::parse).transpose()?, root) {
            (None, Some("system")) => SslMode::VerifyFull,
            (Some(mode), Some("system")) if mode != SslMode::VerifyFull => {
                return Err(Error::invalid(
                    "invalid DSN: sslrootcert=system may only be used with sslmode=verify-full",
                ))
            }
            (mode, _) => mode.unwrap_or(SslMode::Prefer),
        };
        let unix_only = !config.get_hosts().is_empty()
            && config
                .get_hosts()
                .iter()
                .all(|h| !matches!(h, Host::Tcp(_)));
        if unix_only {
            mode = SslMode::Disable;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = if mode == SslMode::Disable {
            None
        } else {
            roots(root)?
        };
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::invalid(format!("cannot set up TLS: {e}")))?;
        let builder = match (mode, roots) {
            (SslMode::VerifyFull, Some(roots)) => builder.with_root_certificates(roots),
            (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
                let strict = if mode == SslMode::VerifyCa {
                    "verify-ca"
                } else {
                    "verify-full"
                };
                let default = default_file("root.crt").map_or_else(
                    || "~/.postgresql/root.crt".into(),
                    |p| p.display().to_string(),
                );
                return Err(Error::invalid(format!(
                    "invalid DSN: sslmode={strict} needs the root certificates to check the \
                     server against: give sslrootcert=FILE (or create {default}), use \
                     sslrootcert=system for the platform's trusted roots, or choose a weaker \
                     sslmode"
                )));
            }
            // libpq: with a root certificate at hand, every mode that uses TLS checks the
            // chain (verify-ca always has one); without, the certificate is not checked.
            (_, roots) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Checks { roots, provider })),
        };
        let tls_config = match client_identity(dsn)? {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| Error::invalid(format!("invalid DSN: sslcert/sslkey: {e}")))?,
            None => builder.with_no_client_auth(),
        };
        config.ssl_mode(mode.first_attempt());
        Ok(Self {
            mode,
            tls: MakeRustlsConnect::new(tls_config),
            waits_for_restarts,
            reached: AtomicBool::new(false),
        })
    }

    /// What cancels a statement of a connection opened here (over TLS when it used TLS).
    pub fn tls(&self) -> MakeRustlsConnect {
        self.tls.clone()
    }

    /// A connection, waiting for a server that was reached before to accept connections
    /// again (back-off from 20 to 250 ms between attempts).
    pub async fn open(
        &self,
        config: &Config,
    ) -> Result<(Client, Connection), tokio_postgres::Error> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(20);
        loop {
            match self.negotiated(config).await {
                Ok(opened) => {
                    self.reached.store(true, Ordering::Relaxed);
                    return Ok(opened);
                }
                Err(e)
                    if self.waits_for_restarts
                        && self.reached.load(Ordering::Relaxed)
                        && unavailable(&e) =>
                {
                    if started.elapsed() + pause >= RESTART_WINDOW {
                        // Down for longer than a restart: later calls fail at once, until
                        // a connection opens again, instead of each waiting out the window.
                        self.reached.store(false, Ordering::Relaxed);
                        return Err(e);
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(250));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A connection with the TLS fallbacks of `allow` and `prefer`.
    async fn negotiated(
        &self,
        config: &Config,
    ) -> Result<(Client, Connection), tokio_postgres::Error> {
        let first = config.connect(self.tls.clone()).await;
        let retry = match (&first, self.mode) {
            // allow: TLS only when the server refused the plain connection.
            (Err(e), SslMode::Allow) if rejected(e) => Some(DriverMode::Require),
            // prefer: plain when the handshake failed or the server refused the TLS session.
            (Err(e), SslMode::Prefer) if rejected(e) || tls_failed(e) => Some(DriverMode::Disable),
            _ => None,
        };
        match retry {
            Some(mode) => {
                let mut config = config.clone();
                config.ssl_mode(mode);
                config.connect(self.tls.clone()).await
            }
            None => first,
        }
    }
}

/// The pool's connections: a client, and the task that reads its connection's messages (the
/// pool ends the task when it drops the client). A connection that breaks is seen by the
/// client's next call.
pub struct Pooled(pub Arc<Connector>);

impl Connect for Pooled {
    fn connect(
        &self,
        config: &Config,
    ) -> BoxFuture<'_, Result<(Client, JoinHandle<()>), tokio_postgres::Error>> {
        let config = config.clone();
        Box::pin(async move {
            let (client, connection) = self.0.open(&config).await?;
            Ok((client, tokio::spawn(async { drop(connection.await) })))
        })
    }
}

/// The server answered the connection with an authentication or `pg_hba.conf` refusal (SQLSTATE
/// class 28), which libpq answers by trying the other kind of connection.
fn rejected(err: &tokio_postgres::Error) -> bool {
    err.code().is_some_and(|c| c.code().starts_with("28"))
}

/// No server accepts sessions there right now: refused, the socket is missing, the server
/// is shutting down or starting up, or (`target_session_attrs=read-write`) every host is
/// read-only, as during a failover before the promotion.
fn unavailable(err: &tokio_postgres::Error) -> bool {
    use std::io::ErrorKind;
    if let Some(code) = err.code() {
        return matches!(code.code(), "57P01" | "57P02" | "57P03");
    }
    match causes(err).find_map(|c| c.downcast_ref::<std::io::Error>()) {
        Some(io) => matches!(
            io.kind(),
            ErrorKind::ConnectionRefused
                | ErrorKind::NotFound
                | ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::UnexpectedEof
                | ErrorKind::PermissionDenied
        ),
        None => err.is_closed(),
    }
}

/// The TLS handshake itself failed.
fn tls_failed(err: &tokio_postgres::Error) -> bool {
    causes(err).any(<dyn std::error::Error>::is::<rustls::Error>)
}

fn default_file(name: &str) -> Option<PathBuf> {
    std::env::var_os("HOME").map(|home| Path::new(&home).join(".postgresql").join(name))
}

/// The roots of `sslrootcert` (a PEM file, or `system`), else of `~/.postgresql/root.crt`
/// when it exists.
fn roots(given: Option<&str>) -> Result<Option<RootCertStore>> {
    let mut store = RootCertStore::empty();
    let certs = match given {
        Some("system") => {
            let found = rustls_native_certs::load_native_certs();
            if found.certs.is_empty() {
                return Err(Error::invalid(
                    "invalid DSN: sslrootcert=system, but no trusted root certificates were \
                     found on this machine",
                ));
            }
            store.add_parsable_certificates(found.certs);
            return Ok(Some(store));
        }
        Some(path) => read_certs("sslrootcert", Path::new(path))?,
        None => match default_file("root.crt").filter(|p| p.exists()) {
            Some(path) => read_certs("sslrootcert", &path)?,
            None => return Ok(None),
        },
    };
    for cert in certs {
        store.add(cert).map_err(|e| {
            Error::invalid(format!(
                "invalid DSN: sslrootcert: a certificate is not usable: {e}"
            ))
        })?;
    }
    Ok(Some(store))
}

fn read_certs(option: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let unreadable = |e: &dyn std::fmt::Display| {
        Error::invalid(format!(
            "invalid DSN: {option}: cannot read {}: {e}",
            path.display()
        ))
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| unreadable(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unreadable(&e))?;
    if certs.is_empty() {
        return Err(unreadable(&"no PEM certificate in it"));
    }
    Ok(certs)
}

/// The client certificate chain and its key: `sslcert`/`sslkey`, else the default files
/// when the certificate file exists.
fn client_identity(
    dsn: &Split,
) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>> {
    let cert = match dsn.get("sslcert") {
        Some(path) => PathBuf::from(path),
        None => match default_file("postgresql.crt").filter(|p| p.exists()) {
            Some(path) => path,
            None => return Ok(None),
        },
    };
    let key = dsn
        .get("sslkey")
        .map(PathBuf::from)
        .or_else(|| default_file("postgresql.key"))
        .ok_or_else(|| Error::invalid("invalid DSN: sslcert is given but no sslkey"))?;
    let chain = read_certs("sslcert", &cert)?;
    let key = PrivateKeyDer::from_pem_file(&key).map_err(|e| {
        Error::invalid(format!(
            "invalid DSN: sslkey: cannot read an unencrypted PEM private key from {}: {e}",
            key.display()
        ))
    })?;
    Ok(Some((chain, key)))
}

/// The server-certificate checks of the modes the standard verifier does not cover: the
/// chain only (verify-ca, or a weaker mode with root certificates), or none. The handshake's
/// signatures are always checked: whoever answers holds the certificate's key.
#[derive(Debug)]
struct Checks {
    roots: Option<RootCertStore>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Checks {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.provider.signature_verification_algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

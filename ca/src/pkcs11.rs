//! An Ed25519 CA key on a PKCS#11 token, signing with `CKM_EDDSA`.
//!
//! A module (shared library) is loaded and initialised once per process
//! and shared by every key on it, across reloads. Each key keeps a bounded
//! pool of logged-in read-only sessions. When the token fails (removed,
//! its store gone, the library in a bad state) the module is finalised and
//! initialised again — at most once per [`RESET_EVERY`] — because some
//! modules (SoftHSM2 among them) only notice a returning token on
//! `C_Initialize`. A reset starts a new *generation*: sessions of an older
//! one are stale handles that a later session may reuse numerically, so
//! they are forgotten, never closed, and every session is closed or used
//! only under the module's read lock, which a reset takes for writing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as P11Error, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use ssh_key::PublicKey;
use ssh_key::public::{Ed25519PublicKey, KeyData};

use crate::pool::Pool;
use crate::{CaError, PinSource};

mod softhsm;
pub use softhsm::{SoftHsmToken, provision_softhsm};

/// Least time between two re-initialisations of one module.
pub(crate) const RESET_EVERY: Duration = Duration::from_secs(1);

/// `EC_PARAMS` of an Ed25519 key: the PrintableString "edwards25519"
/// (what SoftHSM2 and OpenSC write) …
const PARAMS_NAME: &[u8] = b"\x13\x0cedwards25519";
/// … or the OID 1.3.101.112 (RFC 8410).
const PARAMS_OID: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];

static MODULES: LazyLock<Mutex<BTreeMap<PathBuf, Arc<Module>>>> =
    LazyLock::new(|| Mutex::new(BTreeMap::new()));

/// One loaded PKCS#11 library.
struct Module {
    path: PathBuf,
    ctx: Pkcs11,
    /// The generation: bumped by every re-initialisation.
    generation: RwLock<u64>,
    last_reset: Mutex<Option<Instant>>,
}

/// `what: <CKR code> in <function>` — the library's long descriptions
/// ("Some horrible, unrecoverable error…") help nobody.
fn p11(what: &str, e: &P11Error) -> String {
    match e {
        P11Error::Pkcs11(rv, function) => format!("{what}: {rv:?} in C_{function:?}"),
        other => format!("{what}: {other}"),
    }
}

fn init_args() -> CInitializeArgs {
    CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)
}

impl Module {
    /// The process's context for `path`, loaded and initialised on first
    /// use.
    fn get(path: &Path) -> Result<Arc<Module>, CaError> {
        // Keyed by the file itself: two spellings of one library (Debian's
        // libsofthsm2.so is a symlink) must share one context and lock.
        let file = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        let mut all = MODULES.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = all.get(&file) {
            return Ok(m.clone());
        }
        let ctx = Pkcs11::new(path).map_err(|e| {
            CaError::Invalid(format!(
                "cannot load the PKCS#11 module {}: {e}",
                path.display()
            ))
        })?;
        match ctx.initialize(init_args()) {
            Ok(()) | Err(P11Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => {
                return Err(CaError::Invalid(p11(
                    &format!("cannot initialise the PKCS#11 module {}", path.display()),
                    &e,
                )));
            }
        }
        let m = Arc::new(Module {
            path: path.to_owned(),
            ctx,
            generation: RwLock::new(0),
            last_reset: Mutex::new(None),
        });
        all.insert(file, m.clone());
        Ok(m)
    }

    fn read(&self) -> RwLockReadGuard<'_, u64> {
        self.generation.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Finalises and initialises the library again after a failure seen in
    /// generation `seen` (once per failure wave, at most every
    /// [`RESET_EVERY`]).
    fn reset(&self, seen: u64) {
        let mut generation = self.generation.write().unwrap_or_else(|p| p.into_inner());
        if *generation != seen {
            return;
        }
        let mut last = self.last_reset.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|t| t.elapsed() < RESET_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        // Finalising invalidates every session of this process on the
        // module; a module that was not initialised says so, harmlessly.
        let _ = self.ctx.clone().finalize();
        match self.ctx.initialize(init_args()) {
            Ok(()) | Err(P11Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {
                tracing::warn!(module = %self.path.display(), "PKCS#11 module re-initialised after a failure");
            }
            Err(e) => {
                tracing::error!(module = %self.path.display(), error = %e, "PKCS#11 module could not be initialised again");
            }
        }
        *generation += 1;
    }

    fn slot(&self, label: &str) -> Result<Slot, CaError> {
        find_slot(&self.ctx, &self.path, label)
    }
}

/// The slot holding the token labelled `label`.
fn find_slot(ctx: &Pkcs11, path: &Path, label: &str) -> Result<Slot, CaError> {
    let slots = ctx
        .get_slots_with_token()
        .map_err(|e| CaError::Unavailable(p11("listing the token slots", &e)))?;
    let mut found = Vec::new();
    for slot in slots {
        if let Ok(info) = ctx.get_token_info(slot)
            && info.label().trim_end() == label
        {
            found.push(slot);
        }
    }
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(CaError::Unavailable(format!(
            "no PKCS#11 token labelled {label:?} in {}",
            path.display()
        ))),
        _ => Err(CaError::Invalid(format!(
            "{} tokens are labelled {label:?} in {}; labels must be unique",
            found.len(),
            path.display()
        ))),
    }
}

/// A logged-in session with the key's handle, of one module generation.
struct TokenSession {
    generation: u64,
    session: Session,
    key: ObjectHandle,
}

impl TokenSession {
    /// Drops a session of an older generation without closing its handle,
    /// which may now name another session.
    fn forget(self) {
        std::mem::forget(self.session);
    }
}

/// An Ed25519 key on a token.
pub(crate) struct TokenKey {
    module: Arc<Module>,
    token_label: String,
    key_label: String,
    pin: AuthPin,
    public: PublicKey,
    pool: Pool<TokenSession>,
    /// Set once the token refused the PIN.
    pin_refused: AtomicBool,
}

fn read_pin(pin: &PinSource) -> Result<AuthPin, CaError> {
    let text = match pin {
        PinSource::File(path) => {
            infrabroker_common::tls::check_private_mode(path)
                .map_err(|e| CaError::Invalid(e.to_string()))?;
            zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                CaError::Invalid(format!("cannot read the PIN file {}: {e}", path.display()))
            })?)
        }
        PinSource::Env(var) => zeroize::Zeroizing::new(std::env::var(var).map_err(|_| {
            CaError::Invalid(format!(
                "the PIN variable {var} is not set in the signer's environment"
            ))
        })?),
    };
    let pin = text.strip_suffix('\n').unwrap_or(&text);
    let pin = pin.strip_suffix('\r').unwrap_or(pin);
    if pin.is_empty() {
        return Err(CaError::Invalid("the token PIN is empty".into()));
    }
    Ok(AuthPin::new(pin.into()))
}

fn mechanism() -> Mechanism<'static> {
    Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure))
}

impl TokenKey {
    /// Opens the key: loads the module, logs in, reads the public key.
    pub(crate) fn open(
        module: &Path,
        token_label: &str,
        key_label: &str,
        pin: &PinSource,
        pool_size: usize,
    ) -> Result<TokenKey, CaError> {
        let pin = read_pin(pin)?;
        let module = Module::get(module)?;
        let invalid = |e: CaError| CaError::Invalid(e.to_string());
        let mut key = TokenKey {
            module,
            token_label: token_label.to_owned(),
            key_label: key_label.to_owned(),
            pin,
            public: PublicKey::new(KeyData::Ed25519(Ed25519PublicKey([0; 32])), ""),
            pool: Pool::new(pool_size),
            pin_refused: AtomicBool::new(false),
        };
        // The session is opened, used and (on failure) closed under one
        // read guard, so no reset can slip in between.
        let (first, public) = {
            let held = key.module.read();
            let first = key.open_session(*held).map_err(invalid)?;
            match key.read_public(&first.session) {
                Ok(public) => (first, public),
                Err(e) => {
                    drop(first);
                    return Err(invalid(e));
                }
            }
        };
        key.public = public;
        key.pool.lease()?.keep(first);
        Ok(key)
    }

    pub(crate) fn public(&self) -> PublicKey {
        self.public.clone()
    }

    /// A new logged-in session and the private key's handle. Called with
    /// the module's read lock held.
    fn open_session(&self, generation: u64) -> Result<TokenSession, CaError> {
        let down = |what: &str, e: P11Error| CaError::Unavailable(p11(what, &e));
        if self.pin_refused.load(Ordering::Relaxed) {
            return Err(CaError::Unavailable(format!(
                "the token {:?} refused the PIN; fix the PIN and reload",
                self.token_label
            )));
        }
        let slot = self.module.slot(&self.token_label)?;
        let session = self
            .module
            .ctx
            .open_ro_session(slot)
            .map_err(|e| down("opening a token session", e))?;
        match session.login(UserType::User, Some(&self.pin)) {
            Ok(()) | Err(P11Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(P11Error::Pkcs11(rv @ (RvError::PinIncorrect | RvError::PinLocked), _)) => {
                // Never try the same PIN again: tokens lock after a few.
                self.pin_refused.store(true, Ordering::Relaxed);
                return Err(CaError::Unavailable(format!(
                    "the token {:?} refused the PIN ({rv:?}); fix the PIN and reload",
                    self.token_label
                )));
            }
            Err(e) => return Err(down("logging in to the token", e)),
        }
        let found = session
            .find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::KeyType(KeyType::EC_EDWARDS),
                Attribute::Label(self.key_label.as_bytes().to_vec()),
            ])
            .map_err(|e| down("finding the CA key", e))?;
        let key = match found.as_slice() {
            [one] => *one,
            [] => {
                return Err(CaError::Unavailable(format!(
                    "no Ed25519 private key labelled {:?} on token {:?}",
                    self.key_label, self.token_label
                )));
            }
            _ => {
                return Err(CaError::Invalid(format!(
                    "{} private keys are labelled {:?} on token {:?}",
                    found.len(),
                    self.key_label,
                    self.token_label
                )));
            }
        };
        Ok(TokenSession {
            generation,
            session,
            key,
        })
    }

    /// The public key object's `EC_POINT` as an OpenSSH public key.
    fn read_public(&self, session: &Session) -> Result<PublicKey, CaError> {
        let found = session
            .find_objects(&[
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::Label(self.key_label.as_bytes().to_vec()),
            ])
            .map_err(|e| CaError::Invalid(p11("finding the CA public key", &e)))?;
        let [handle] = found.as_slice() else {
            return Err(CaError::Invalid(format!(
                "expected one public key labelled {:?} on token {:?}, found {}",
                self.key_label,
                self.token_label,
                found.len()
            )));
        };
        let attrs = session
            .get_attributes(*handle, &[AttributeType::EcParams, AttributeType::EcPoint])
            .map_err(|e| CaError::Invalid(p11("reading the CA public key", &e)))?;
        let mut point = None;
        for a in attrs {
            match a {
                Attribute::EcParams(p) if p != PARAMS_NAME && p != PARAMS_OID => {
                    return Err(CaError::Invalid(format!(
                        "the key {:?} on token {:?} is not Ed25519",
                        self.key_label, self.token_label
                    )));
                }
                Attribute::EcPoint(p) => point = Some(p),
                _ => {}
            }
        }
        let raw = point.as_deref().and_then(ec_point).ok_or_else(|| {
            CaError::Invalid(format!(
                "the key {:?} on token {:?} has no readable Ed25519 EC_POINT",
                self.key_label, self.token_label
            ))
        })?;
        let comment = format!(
            "infrabroker-ca pkcs11:{}/{}",
            self.token_label, self.key_label
        );
        Ok(PublicKey::new(
            KeyData::Ed25519(Ed25519PublicKey(raw)),
            comment,
        ))
    }

    /// Signs `msg` on the token.
    pub(crate) fn sign(&self, msg: &[u8]) -> Result<[u8; 64], CaError> {
        let mut lease = self.pool.lease()?;
        let (why, generation) = {
            let generation = self.module.read();
            let session = match lease.idle.take() {
                Some(s) if s.generation == *generation => Ok(s),
                Some(stale) => {
                    stale.forget();
                    self.open_session(*generation)
                }
                None => self.open_session(*generation),
            };
            match session {
                Err(e @ CaError::Invalid(_)) => return Err(e),
                Err(CaError::Unavailable(why)) => (why, *generation),
                Ok(s) => match s.session.sign(&mechanism(), s.key, msg) {
                    Ok(sig) => match <[u8; 64]>::try_from(sig.as_slice()) {
                        Ok(raw) => {
                            lease.keep(s);
                            return Ok(raw);
                        }
                        Err(_) => (
                            format!("the token returned a {}-byte signature", sig.len()),
                            *generation,
                        ),
                    },
                    Err(e) => {
                        let why = p11("signing on the token", &e);
                        if !token_trouble(&e) {
                            // This request was refused, the token is
                            // fine: the session is closed here, under the
                            // read lock, and every other one is kept.
                            return Err(CaError::Unavailable(why));
                        }
                        if session_gone(&e) {
                            // Its handle may already name another session.
                            s.forget();
                        }
                        (why, *generation)
                    }
                },
            }
        };
        drop(lease);
        self.module.reset(generation);
        Err(CaError::Unavailable(why))
    }
}

/// Whether a failed call says the token, the library or our session is in
/// trouble (removed, reset, its objects gone), which a re-initialisation
/// may cure, rather than that one request was refused.
fn token_trouble(e: &P11Error) -> bool {
    let P11Error::Pkcs11(rv, _) = e else {
        return false;
    };
    matches!(
        rv,
        RvError::GeneralError
            | RvError::FunctionFailed
            | RvError::DeviceError
            | RvError::DeviceMemory
            | RvError::DeviceRemoved
            | RvError::TokenNotPresent
            | RvError::TokenNotRecognized
            | RvError::SessionClosed
            | RvError::SessionHandleInvalid
            | RvError::ObjectHandleInvalid
            | RvError::KeyHandleInvalid
            | RvError::UserNotLoggedIn
            | RvError::CryptokiNotInitialized
    )
}

/// Whether a failed call says our session handle is no longer ours, so it
/// must be forgotten rather than closed.
fn session_gone(e: &P11Error) -> bool {
    matches!(
        e,
        P11Error::Pkcs11(RvError::SessionClosed | RvError::SessionHandleInvalid, _)
    )
}

/// Sessions on their way to be closed; whatever is still here when this is
/// dropped is forgotten, never closed without the module's read lock.
struct Closing(Vec<TokenSession>);

impl Drop for Closing {
    fn drop(&mut self) {
        self.0.drain(..).for_each(TokenSession::forget);
    }
}

fn close_sessions(module: &Module, mut sessions: Closing) {
    let generation = module.read();
    for s in sessions.0.drain(..) {
        if s.generation == *generation {
            drop(s);
        } else {
            s.forget();
        }
    }
}

impl Drop for TokenKey {
    /// Closes the pooled sessions on a thread of their own: a reload drops
    /// the old keys on an async runtime thread, and `C_CloseSession` on a
    /// slow token must not stall it.
    fn drop(&mut self) {
        let sessions = Closing(self.pool.drain());
        if sessions.0.is_empty() {
            return;
        }
        let module = self.module.clone();
        let closer = std::thread::Builder::new().name("pkcs11-close".into());
        // A thread that cannot start drops the closure: the sessions are
        // forgotten (left to the library's next reset or the process end).
        let _ = closer.spawn(move || close_sessions(&module, sessions));
    }
}

/// The 32 key bytes of an Ed25519 `EC_POINT`: a DER OCTET STRING (as
/// PKCS#11 3.0 says) or, from some modules, the raw bytes.
fn ec_point(p: &[u8]) -> Option<[u8; 32]> {
    match p {
        [0x04, 0x20, rest @ ..] if rest.len() == 32 => rest.try_into().ok(),
        raw if raw.len() == 32 => raw.try_into().ok(),
        _ => None,
    }
}

#[cfg(test)]
pub(crate) fn token_trouble_for_tests(e: &P11Error) -> bool {
    token_trouble(e)
}

#[cfg(test)]
pub(crate) fn ec_point_for_tests(p: &[u8]) -> Option<[u8; 32]> {
    ec_point(p)
}

//! OpenSSH key revocation lists (KRLs), written and read.
//!
//! sshd's `RevokedKeys FILE` accepts a binary KRL (OpenSSH's PROTOCOL.krl):
//! a header, then sections; a CERTIFICATES section names a CA by its public
//! key blob and revokes that CA's certificates by serial (lists, ranges,
//! bitmaps) and by key id. The signer writes one such section per CA from
//! its index of live certificates; `broker-ctl krl fetch` parses what it
//! downloaded before it replaces a host's file, because sshd refuses *every*
//! public-key login when that file is unparsable.
//!
//! No Rust crate writes KRLs (ssh-key reads and writes keys and
//! certificates only), so the encoder is here, about 300 lines, checked
//! against `ssh-keygen -Q` in the tests.
//!
//! # Encoding choices
//! Serials are kept as sorted, disjoint inclusive ranges. Long runs
//! ([`RANGE_MIN`] serials or more) become range sub-sections (16 bytes
//! each). The rest are clustered — neighbours at most [`BITMAP_GAP`] apart —
//! and each cluster is written as a bitmap or as plain list entries,
//! whichever is smaller; a bitmap spans at most [`BITMAP_MAX_SPAN`]
//! serials, because sshd refuses a KRL with a larger one outright. Serial 0
//! cannot be revoked (OpenSSH refuses it).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;

use sha2::{Digest as _, Sha256};

/// `SSHKRL\n\0`.
pub const MAGIC: &[u8; 8] = b"SSHKRL\n\0";
/// The only format version OpenSSH defines.
pub const FORMAT_VERSION: u32 = 1;

const SECTION_CERTIFICATES: u8 = 1;
const SECTION_EXPLICIT_KEY: u8 = 2;
const SECTION_FINGERPRINT_SHA1: u8 = 3;
const SECTION_SIGNATURE: u8 = 4;
const SECTION_FINGERPRINT_SHA256: u8 = 5;
const CERT_SERIAL_LIST: u8 = 0x20;
const CERT_SERIAL_RANGE: u8 = 0x21;
const CERT_SERIAL_BITMAP: u8 = 0x22;
const CERT_KEY_ID: u8 = 0x23;

/// Runs at least this long are written as ranges.
pub const RANGE_MIN: u64 = 256;
/// Serials closer than this (in serial numbers) may share a bitmap.
pub const BITMAP_GAP: u64 = 64;
/// Most serials one bitmap spans. OpenSSH reads a bitmap as a bignum of at
/// most 16,384 bits (`SSHBUF_MAX_BIGNUM`) and refuses the *whole file*
/// ("bignum is too large") beyond that, so a longer cluster is split.
pub const BITMAP_MAX_SPAN: u64 = 16_000;
/// OpenSSH's `SSHBUF_MAX_BIGNUM`, in bytes.
const MAX_BITMAP_BYTES: usize = 16_384 / 8;

/// Why bytes are not a KRL sshd would accept, or a KRL cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KrlError {
    /// Not a KRL at all.
    #[error("not an OpenSSH KRL (bad magic)")]
    BadMagic,
    /// A format version other than 1.
    #[error("unsupported KRL format version {0}")]
    BadVersion(u32),
    /// Cut short or a length that runs past the end.
    #[error("truncated KRL ({0})")]
    Truncated(&'static str),
    /// A section or sub-section type OpenSSH does not know.
    #[error("unknown KRL section type {0:#x}")]
    UnknownSection(u8),
    /// Structurally invalid content.
    #[error("invalid KRL: {0}")]
    Invalid(&'static str),
}

/// What one CA's certificates revoke.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaRevocations {
    /// Revoked serials as sorted, disjoint, non-adjacent inclusive ranges.
    serials: Vec<RangeInclusive<u64>>,
    /// Revoked key ids.
    pub key_ids: BTreeSet<String>,
}

impl CaRevocations {
    /// Revokes `serial` (0 is ignored: OpenSSH never revokes it).
    pub fn revoke_serial(&mut self, serial: u64) {
        self.revoke_range(serial, serial);
    }

    /// Revokes `lo..=hi` (clamped to start at 1).
    pub fn revoke_range(&mut self, lo: u64, hi: u64) {
        let mut ranges = std::mem::take(&mut self.serials);
        ranges.push(lo..=hi);
        self.serials = normalise(ranges);
    }

    /// Builds the set from serials in any order.
    pub fn from_serials(serials: impl IntoIterator<Item = u64>) -> CaRevocations {
        CaRevocations {
            serials: normalise(serials.into_iter().map(|s| s..=s).collect()),
            key_ids: BTreeSet::new(),
        }
    }

    /// The revoked serials as ranges.
    pub fn serial_ranges(&self) -> &[RangeInclusive<u64>] {
        &self.serials
    }

    /// How many serials are revoked.
    pub fn serial_count(&self) -> u64 {
        self.serials.iter().map(|r| r.end() - r.start() + 1).sum()
    }

    /// Whether a certificate with `serial` and `key_id` is revoked.
    pub fn revokes(&self, serial: u64, key_id: &str) -> bool {
        let by_serial = self
            .serials
            .binary_search_by(|r| {
                if *r.end() < serial {
                    std::cmp::Ordering::Less
                } else if *r.start() > serial {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Equal
                }
            })
            .is_ok();
        by_serial || self.key_ids.contains(key_id)
    }
}

/// Sorts ranges, drops serial 0 and empty ranges, and merges overlapping
/// or adjacent ones.
fn normalise(mut ranges: Vec<RangeInclusive<u64>>) -> Vec<RangeInclusive<u64>> {
    ranges.retain(|r| *r.end() >= 1 && r.start() <= r.end());
    ranges.sort_unstable_by_key(|r| *r.start());
    let mut out: Vec<RangeInclusive<u64>> = Vec::with_capacity(ranges.len());
    for r in ranges {
        let lo = (*r.start()).max(1);
        match out.last_mut() {
            Some(last) if lo <= last.end().saturating_add(1) => {
                *last = *last.start()..=(*last.end()).max(*r.end());
            }
            _ => out.push(lo..=*r.end()),
        }
    }
    out
}

/// A KRL: header fields and, per CA public key blob, what it revokes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Krl {
    /// Increases with every change (`krl_version`).
    pub version: u64,
    /// Unix seconds when it was generated.
    pub generated: u64,
    /// Free text.
    pub comment: String,
    /// Revocations per CA, keyed by the CA's SSH public key blob.
    pub cas: BTreeMap<Vec<u8>, CaRevocations>,
}

impl Krl {
    /// The KRL in OpenSSH's binary format.
    pub fn encode(&self) -> Vec<u8> {
        let sections = self.encode_sections();
        let mut out = self.encode_header(&self.comment);
        out.extend_from_slice(&sections);
        out
    }

    /// Like [`Self::encode`], with ` sha256:<hex>` of the sections appended
    /// to the comment, so [`Self::parse_sealed`] notices a file cut short
    /// between two sections (which is still a well-formed KRL, revoking
    /// less). sshd ignores the comment.
    pub fn encode_sealed(&self) -> Vec<u8> {
        let sections = self.encode_sections();
        let digest = hex::encode(Sha256::digest(&sections));
        let comment = if self.comment.is_empty() {
            format!("{SEAL_PREFIX}{digest}")
        } else {
            format!("{} {SEAL_PREFIX}{digest}", self.comment)
        };
        let mut out = self.encode_header(&comment);
        out.extend_from_slice(&sections);
        out
    }

    fn encode_header(&self, comment: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + comment.len());
        out.extend_from_slice(MAGIC);
        put_u32(&mut out, FORMAT_VERSION);
        put_u64(&mut out, self.version);
        put_u64(&mut out, self.generated);
        put_u64(&mut out, 0); // flags
        put_string(&mut out, b""); // reserved
        put_string(&mut out, comment.as_bytes());
        out
    }

    fn encode_sections(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (ca, revoked) in &self.cas {
            if revoked.serials.is_empty() && revoked.key_ids.is_empty() {
                continue;
            }
            let mut section = Vec::new();
            put_string(&mut section, ca);
            put_string(&mut section, b""); // reserved
            encode_serials(&mut section, &revoked.serials);
            if !revoked.key_ids.is_empty() {
                let mut ids = Vec::new();
                for id in &revoked.key_ids {
                    put_string(&mut ids, id.as_bytes());
                }
                section.push(CERT_KEY_ID);
                put_string(&mut section, &ids);
            }
            out.push(SECTION_CERTIFICATES);
            put_string(&mut out, &section);
        }
        out
    }

    /// Parses a KRL the way sshd would: every section must be well formed
    /// and of a known type. Sections other than CERTIFICATES (explicit
    /// keys, fingerprints, signatures) are checked for shape and skipped.
    pub fn parse(bytes: &[u8]) -> Result<Krl, KrlError> {
        parse_with_offset(bytes).map(|(krl, _)| krl)
    }

    /// Parses a KRL written by [`Self::encode_sealed`] and checks its seal;
    /// the returned comment no longer carries it.
    pub fn parse_sealed(bytes: &[u8]) -> Result<Krl, KrlError> {
        let (mut krl, sections) = parse_with_offset(bytes)?;
        let (comment, digest) = match krl.comment.rsplit_once(' ') {
            Some((comment, last)) if last.starts_with(SEAL_PREFIX) => (comment.to_owned(), last),
            _ if krl.comment.starts_with(SEAL_PREFIX) => (String::new(), krl.comment.as_str()),
            _ => return Err(KrlError::Invalid("no sha256 seal in the comment")),
        };
        let want = hex::encode(Sha256::digest(&bytes[sections..]));
        if digest.strip_prefix(SEAL_PREFIX) != Some(want.as_str()) {
            return Err(KrlError::Invalid(
                "the sha256 seal does not match the sections (cut short?)",
            ));
        }
        krl.comment = comment;
        Ok(krl)
    }
}

/// Marks the digest in a sealed KRL's comment.
const SEAL_PREFIX: &str = "sha256:";

/// The KRL and the offset where its sections start.
fn parse_with_offset(bytes: &[u8]) -> Result<(Krl, usize), KrlError> {
    let mut r = Reader(bytes);
    if r.take(MAGIC.len(), "magic")? != MAGIC {
        return Err(KrlError::BadMagic);
    }
    let format = r.u32("format version")?;
    if format != FORMAT_VERSION {
        return Err(KrlError::BadVersion(format));
    }
    let mut krl = Krl {
        version: r.u64("krl_version")?,
        generated: r.u64("generated_date")?,
        ..Krl::default()
    };
    let _flags = r.u64("flags")?;
    let _reserved = r.string("reserved")?;
    krl.comment = String::from_utf8_lossy(r.string("comment")?).into_owned();
    let sections = bytes.len() - r.0.len();
    while !r.0.is_empty() {
        let kind = r.u8("section type")?;
        let data = r.string("section")?;
        match kind {
            SECTION_CERTIFICATES => {
                let (ca, revoked) = parse_certificates(data)?;
                let entry = krl.cas.entry(ca).or_default();
                let mut ranges = std::mem::take(&mut entry.serials);
                ranges.extend(revoked.serials);
                entry.serials = normalise(ranges);
                entry.key_ids.extend(revoked.key_ids);
            }
            SECTION_EXPLICIT_KEY | SECTION_FINGERPRINT_SHA1 | SECTION_FINGERPRINT_SHA256 => {
                let mut inner = Reader(data);
                while !inner.0.is_empty() {
                    inner.string("key or fingerprint")?;
                }
            }
            SECTION_SIGNATURE => {
                let mut inner = Reader(data);
                inner.string("signature key")?;
                if !inner.0.is_empty() {
                    return Err(KrlError::Invalid("trailing bytes in a signature section"));
                }
            }
            other => return Err(KrlError::UnknownSection(other)),
        }
    }
    Ok((krl, sections))
}

fn encode_serials(section: &mut Vec<u8>, ranges: &[RangeInclusive<u64>]) {
    let mut singles: Vec<u64> = Vec::new();
    for r in ranges {
        if r.end() - r.start() + 1 >= RANGE_MIN {
            let mut body = Vec::with_capacity(16);
            put_u64(&mut body, *r.start());
            put_u64(&mut body, *r.end());
            section.push(CERT_SERIAL_RANGE);
            put_string(section, &body);
        } else {
            singles.extend(r.clone());
        }
    }
    let mut list = Vec::new();
    let mut start = 0;
    while start < singles.len() {
        let mut end = start;
        while end + 1 < singles.len()
            && singles[end + 1] - singles[end] <= BITMAP_GAP
            && singles[end + 1] - singles[start] < BITMAP_MAX_SPAN
        {
            end += 1;
        }
        let cluster = &singles[start..=end];
        let (lo, hi) = (cluster[0], cluster[cluster.len() - 1]);
        // A bitmap sub-section: type, length, offset, mpint length, bits.
        let bitmap_cost = 1 + 4 + 8 + 4 + (hi - lo) / 8 + 2;
        if bitmap_cost < 8 * cluster.len() as u64 {
            let mut body = Vec::new();
            put_u64(&mut body, lo);
            put_string(&mut body, &bitmap_mpint(lo, hi, cluster));
            section.push(CERT_SERIAL_BITMAP);
            put_string(section, &body);
        } else {
            for s in cluster {
                put_u64(&mut list, *s);
            }
        }
        start = end + 1;
    }
    if !list.is_empty() {
        section.push(CERT_SERIAL_LIST);
        put_string(section, &list);
    }
}

/// The mpint whose bit `s - lo` is set for every `s` in `cluster`: big
/// endian, minimal, with a leading zero byte when the top bit is set (an
/// mpint is signed).
fn bitmap_mpint(lo: u64, hi: u64, cluster: &[u64]) -> Vec<u8> {
    let len = usize::try_from((hi - lo) / 8 + 1).unwrap_or(usize::MAX);
    let mut bytes = vec![0u8; len];
    for s in cluster {
        let bit = s - lo;
        let byte = len - 1 - usize::try_from(bit / 8).unwrap_or(0);
        bytes[byte] |= 1 << (bit % 8);
    }
    if bytes[0] & 0x80 != 0 {
        bytes.insert(0, 0);
    }
    bytes
}

fn parse_certificates(data: &[u8]) -> Result<(Vec<u8>, CaRevocations), KrlError> {
    let mut r = Reader(data);
    let ca = r.string("CA key")?.to_vec();
    let _reserved = r.string("reserved")?;
    let mut revoked = CaRevocations::default();
    let mut serials: Vec<RangeInclusive<u64>> = Vec::new();
    while !r.0.is_empty() {
        let kind = r.u8("certificate section type")?;
        let mut body = Reader(r.string("certificate section")?);
        match kind {
            CERT_SERIAL_LIST => {
                while !body.0.is_empty() {
                    let s = body.u64("serial")?;
                    if s == 0 {
                        return Err(KrlError::Invalid("serial 0 in a list"));
                    }
                    serials.push(s..=s);
                }
            }
            CERT_SERIAL_RANGE => {
                let (lo, hi) = (body.u64("range start")?, body.u64("range end")?);
                if lo == 0 || lo > hi || !body.0.is_empty() {
                    return Err(KrlError::Invalid("bad serial range"));
                }
                serials.push(lo..=hi);
            }
            CERT_SERIAL_BITMAP => {
                let offset = body.u64("bitmap offset")?;
                let bits = body.string("bitmap")?;
                if !body.0.is_empty() {
                    return Err(KrlError::Invalid("trailing bytes after a bitmap"));
                }
                if bits.first().is_some_and(|b| b & 0x80 != 0) {
                    return Err(KrlError::Invalid("negative bitmap"));
                }
                // sshd's bignum limit: 2,048 bytes, plus a zero sign byte.
                if bits.len() > MAX_BITMAP_BYTES + 1
                    || (bits.len() == MAX_BITMAP_BYTES + 1 && bits[0] != 0)
                {
                    return Err(KrlError::Invalid(
                        "bitmap over 16,384 bits (sshd would refuse the file)",
                    ));
                }
                for (i, byte) in bits.iter().rev().enumerate() {
                    for bit in 0..8u64 {
                        if byte & (1 << bit) != 0 {
                            let s = offset
                                .checked_add(i as u64 * 8 + bit)
                                .ok_or(KrlError::Invalid("bitmap past the last serial"))?;
                            if s == 0 {
                                return Err(KrlError::Invalid("serial 0 in a bitmap"));
                            }
                            serials.push(s..=s);
                        }
                    }
                }
            }
            CERT_KEY_ID => {
                while !body.0.is_empty() {
                    let id = body.string("key id")?;
                    revoked
                        .key_ids
                        .insert(String::from_utf8_lossy(id).into_owned());
                }
            }
            other => return Err(KrlError::UnknownSection(other)),
        }
    }
    revoked.serials = normalise(serials);
    Ok((ca, revoked))
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    // KRL fields are far below 4 GiB; a longer one would be a bug upstream.
    put_u32(out, u32::try_from(bytes.len()).unwrap_or(u32::MAX));
    out.extend_from_slice(bytes);
}

/// A cursor over SSH wire data.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], KrlError> {
        if self.0.len() < n {
            return Err(KrlError::Truncated(what));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, KrlError> {
        Ok(self.take(1, what)?[0])
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, KrlError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, KrlError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    fn string(&mut self, what: &'static str) -> Result<&'a [u8], KrlError> {
        let n = self.u32(what)? as usize;
        self.take(n, what)
    }
}

#[cfg(test)]
mod tests;

//! RFC 6962 / RFC 9162 Merkle tree hashing over audit records: leaf =
//! SHA-256(0x00 ‖ record line bytes without `\n`), interior node =
//! SHA-256(0x01 ‖ left ‖ right), a tree of *n* leaves split at the largest
//! power of two below *n*. Inclusion and consistency proofs are generated
//! and verified as RFC 9162 §2.1.3 and §2.1.4 describe.

use sha2::{Digest, Sha256};

/// A SHA-256 tree hash.
pub type Hash = [u8; 32];

/// Root of the empty tree: SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The leaf hash of one record (its line without the newline).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// The hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The leaf hashes of every complete line of the log at `path`.
pub fn log_leaves(path: &std::path::Path) -> std::io::Result<Vec<Hash>> {
    use std::io::BufRead as _;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(path)?);
    let mut line = Vec::new();
    let mut leaves = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(leaves);
        }
        if let Some(body) = line.strip_suffix(b"\n") {
            leaves.push(leaf_hash(body));
        }
    }
}

/// Largest power of two strictly below `n` (for `n >= 2`).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// Merkle Tree Hash of `leaves` (leaf hashes), in O(n) time and O(log n)
/// memory through a [`Frontier`].
pub fn root(leaves: &[Hash]) -> Hash {
    let mut frontier = Frontier::default();
    for leaf in leaves {
        frontier.push(*leaf);
    }
    frontier.root()
}

/// The right edge of a growing tree: the roots of its complete subtrees,
/// largest first, one per set bit of its size. Enough to append a leaf in
/// amortised O(1) and give the Merkle Tree Hash in O(log n), which is what
/// a writer needs to sign checkpoints without keeping every leaf.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    /// `(subtree root, height)`, heights strictly decreasing.
    nodes: Vec<(Hash, u32)>,
    size: u64,
}

impl Frontier {
    /// Appends one leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut node = (leaf, 0u32);
        while let Some(&(top, height)) = self.nodes.last() {
            if height != node.1 {
                break;
            }
            self.nodes.pop();
            node = (node_hash(&top, &node.0), height + 1);
        }
        self.nodes.push(node);
        self.size += 1;
    }

    /// Number of leaves pushed.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The Merkle Tree Hash of the leaves so far: the incomplete right
    /// edge folds from the right, as MTH splits at the largest power of two.
    pub fn root(&self) -> Hash {
        let mut nodes = self.nodes.iter().rev();
        let Some(&(mut acc, _)) = nodes.next() else {
            return empty_root();
        };
        for (left, _) in nodes {
            acc = node_hash(left, &acc);
        }
        acc
    }
}

/// The inclusion proof (audit path) of leaf `index` in the tree of
/// `leaves`, or `None` when `index` is out of range. Builds a [`Tree`]
/// (O(n)); keep one to answer many.
pub fn inclusion_proof(leaves: &[Hash], index: usize) -> Option<Vec<Hash>> {
    Tree::new(leaves).inclusion_proof(index)
}

/// Every complete subtree of a tree of leaves: level 0 the leaf hashes,
/// level *k* node *i* the root of leaves `[i·2^k, (i+1)·2^k)`. About 2n
/// hashes (64 MB for a million records); then any subtree root the RFC
/// 9162 proofs need is O(log n) node hashes away, and a proof costs
/// O(log² n) — microseconds instead of re-hashing the whole log.
#[derive(Debug, Clone)]
pub struct Tree {
    levels: Vec<Vec<Hash>>,
}

impl Tree {
    /// The tree of `leaves` (leaf hashes).
    pub fn new(leaves: &[Hash]) -> Tree {
        let mut levels = vec![leaves.to_vec()];
        while let Some(below) = levels.last().filter(|l| l.len() > 1) {
            let up = below
                .chunks_exact(2)
                .map(|pair| node_hash(&pair[0], &pair[1]))
                .collect();
            levels.push(up);
        }
        Tree { levels }
    }

    /// Number of leaves.
    pub fn size(&self) -> usize {
        self.levels[0].len()
    }

    /// The Merkle Tree Hash of all leaves.
    pub fn root(&self) -> Hash {
        match self.size() {
            0 => empty_root(),
            n => self.subtree(0, n),
        }
    }

    /// MTH of leaves `[start, start + len)`, `len ≥ 1`, as the RFC's
    /// recursion reaches them: a complete aligned subtree is stored, any
    /// other splits at the largest power of two below `len`.
    fn subtree(&self, start: usize, len: usize) -> Hash {
        if len.is_power_of_two() && start.is_multiple_of(len) {
            return self.levels[len.trailing_zeros() as usize][start / len];
        }
        let k = split(len);
        node_hash(&self.subtree(start, k), &self.subtree(start + k, len - k))
    }

    /// The inclusion proof of leaf `index` (RFC 9162 §2.1.3.1), or `None`
    /// when it is out of range.
    pub fn inclusion_proof(&self, index: usize) -> Option<Vec<Hash>> {
        (index < self.size()).then(|| {
            let mut proof = Vec::new();
            self.path(index, 0, self.size(), &mut proof);
            proof
        })
    }

    fn path(&self, index: usize, start: usize, len: usize, out: &mut Vec<Hash>) {
        if len <= 1 {
            return;
        }
        let k = split(len);
        if index < k {
            self.path(index, start, k, out);
            out.push(self.subtree(start + k, len - k));
        } else {
            self.path(index - k, start + k, len - k, out);
            out.push(self.subtree(start, k));
        }
    }

    /// The consistency proof between the first `old` leaves and all of
    /// them (RFC 9162 §2.1.4.1), or `None` unless `0 < old <= size`.
    pub fn consistency_proof(&self, old: usize) -> Option<Vec<Hash>> {
        (old > 0 && old <= self.size()).then(|| {
            let mut proof = Vec::new();
            self.subproof(old, 0, self.size(), true, &mut proof);
            proof
        })
    }

    fn subproof(&self, m: usize, start: usize, len: usize, complete: bool, out: &mut Vec<Hash>) {
        if m == len {
            if !complete {
                out.push(self.subtree(start, len));
            }
            return;
        }
        let k = split(len);
        if m <= k {
            self.subproof(m, start, k, complete, out);
            out.push(self.subtree(start + k, len - k));
        } else {
            self.subproof(m - k, start + k, len - k, false, out);
            out.push(self.subtree(start, k));
        }
    }
}

/// Verifies that `leaf` is leaf `index` of a tree of `size` leaves with
/// root `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let mut r = *leaf;
    let complete = walk(index, size - 1, proof, |p, left| {
        r = if left {
            node_hash(p, &r)
        } else {
            node_hash(&r, p)
        };
    });
    complete && r == *root
}

/// The proof walk both RFC 9162 verifiers share: for each proof hash,
/// calls `step(hash, sibling_is_left)` while climbing from node `fn_` of
/// the last node `sn`. False if the proof is longer than the tree is high
/// or too short to reach the root.
fn walk(mut fn_: u64, mut sn: u64, proof: &[Hash], mut step: impl FnMut(&Hash, bool)) -> bool {
    for p in proof {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            step(p, true);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            step(p, false);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0
}

/// The consistency proof between the first `old` leaves and all of
/// `leaves` (RFC 9162 §2.1.4.1), or `None` unless `0 < old <= len`.
pub fn consistency_proof(leaves: &[Hash], old: usize) -> Option<Vec<Hash>> {
    Tree::new(leaves).consistency_proof(old)
}

/// Verifies that the tree of `old` leaves with root `old_root` is a prefix
/// of the tree of `new` leaves with root `new_root` (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old == 0 || old > new {
        return false;
    }
    if old == new {
        return proof.is_empty() && old_root == new_root;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    let (mut fn_, mut sn) = (old - 1, new - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    let complete = walk(fn_, sn, rest, |c, left| {
        if left {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
        } else {
            sr = node_hash(&sr, c);
        }
    });
    complete && fr == *old_root && sr == *new_root
}

#[cfg(test)]
mod tests;

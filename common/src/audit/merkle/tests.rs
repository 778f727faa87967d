//! The Merkle code against the published RFC 6962 test vectors (leaf
//! inputs and roots of trees of 0..=8 leaves, as in transparency-dev/merkle
//! `testonly` and certificate-transparency-go), and proofs checked in every
//! position against those roots.

use super::*;

const LEAVES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

const ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

fn leaves() -> Vec<Hash> {
    LEAVES
        .iter()
        .map(|h| leaf_hash(&hex::decode(h).unwrap()))
        .collect()
}

fn h(s: &str) -> Hash {
    hex::decode(s).unwrap().try_into().unwrap()
}

#[test]
fn roots_match_the_rfc_6962_vectors() {
    let all = leaves();
    for (n, want) in ROOTS.iter().enumerate() {
        assert_eq!(hex::encode(root(&all[..n])), *want, "size {n}");
    }
}

#[test]
fn a_frontier_grown_leaf_by_leaf_gives_every_vector_root() {
    let mut frontier = Frontier::default();
    assert_eq!(hex::encode(frontier.root()), ROOTS[0]);
    for (n, leaf) in leaves().into_iter().enumerate() {
        frontier.push(leaf);
        assert_eq!(frontier.size(), n as u64 + 1);
        assert_eq!(hex::encode(frontier.root()), ROOTS[n + 1], "size {}", n + 1);
    }
}

#[test]
fn leaf_0_path_in_the_8_tree_matches_the_vector_node_hashes() {
    let proof = inclusion_proof(&leaves(), 0).unwrap();
    let want = [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ];
    assert_eq!(proof, want.map(h));
}

#[test]
fn every_inclusion_proof_verifies_and_tampering_fails() {
    let all = leaves();
    for n in 1..=8 {
        let r = h(ROOTS[n]);
        for i in 0..n {
            let proof = inclusion_proof(&all[..n], i).unwrap();
            let (i64_, n64) = (i as u64, n as u64);
            assert!(verify_inclusion(i64_, n64, &all[i], &proof, &r), "{i}/{n}");
            let other = all[(i + 1) % 8];
            assert!(!verify_inclusion(i64_, n64, &other, &proof, &r));
            assert!(!verify_inclusion(n64, n64, &all[i], &proof, &r));
            if let Some((first, rest)) = proof.split_first() {
                let mut bad = vec![node_hash(first, first)];
                bad.extend_from_slice(rest);
                assert!(!verify_inclusion(i64_, n64, &all[i], &bad, &r));
            }
        }
        assert!(inclusion_proof(&all[..n], n).is_none());
    }
}

#[test]
fn every_consistency_proof_verifies_and_a_fork_fails() {
    let all = leaves();
    for n in 1..=8 {
        for (m, old_hex) in ROOTS.iter().enumerate().take(n + 1).skip(1) {
            let proof = consistency_proof(&all[..n], m).unwrap();
            let (old, new) = (h(old_hex), h(ROOTS[n]));
            let (m64, n64) = (m as u64, n as u64);
            assert!(verify_consistency(m64, n64, &old, &new, &proof), "{m}->{n}");
            // A forked history (different leaf 0) is not consistent.
            let mut forked = all[..n].to_vec();
            forked[0] = leaf_hash(b"forged");
            let forged_new = root(&forked);
            assert!(!verify_consistency(m64, n64, &old, &forged_new, &proof));
            if m < n {
                assert!(!verify_consistency(m64, n64, &new, &new, &proof));
            }
        }
    }
    assert!(consistency_proof(&all, 0).is_none());
    assert!(!verify_consistency(0, 3, &h(ROOTS[0]), &h(ROOTS[3]), &[]));
}

#[test]
fn a_stored_tree_gives_the_same_roots_and_valid_proofs_at_every_size() {
    let leaves: Vec<Hash> = (0..40u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    for n in 0..=leaves.len() {
        let tree = Tree::new(&leaves[..n]);
        let want = root(&leaves[..n]);
        assert_eq!(tree.root(), want, "size {n}");
        for (i, leaf) in leaves[..n].iter().enumerate() {
            let proof = tree.inclusion_proof(i).unwrap();
            assert!(
                verify_inclusion(i as u64, n as u64, leaf, &proof, &want),
                "{i} of {n}"
            );
        }
        assert!(tree.inclusion_proof(n).is_none());
        for old in 1..=n {
            let proof = tree.consistency_proof(old).unwrap();
            let old_root = root(&leaves[..old]);
            assert!(
                verify_consistency(old as u64, n as u64, &old_root, &want, &proof),
                "{old} → {n}"
            );
        }
    }
}

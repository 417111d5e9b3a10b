//! Hashes that name children after what they were made from: the pod-template-hash of a
//! Deployment's ReplicaSets and the revision hash of DaemonSet and StatefulSet
//! ControllerRevisions (upstream's ComputeHash: FNV-1a, 32 bit, then
//! rand.SafeEncodeString of its decimal digits).

use serde::Serialize;

/// The alphabet upstream's rand.SafeEncodeString uses: no vowels (no words), no
/// look-alike characters.
pub const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn fnv1a_32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// The hash of `obj`'s canonical JSON, plus the collision count when one is given (a
/// raised count gives a new name after a clash), each decimal digit of the hash mapped
/// through the safe alphabet. Stable across processes and releases because k8s-openapi
/// serializes fields in a fixed order and maps sorted.
pub fn object_hash<T: Serialize + ?Sized>(obj: &T, collision_count: Option<i32>) -> String {
    let mut bytes = serde_json::to_vec(obj).unwrap_or_default();
    if let Some(count) = collision_count {
        bytes.extend_from_slice(count.to_string().as_bytes());
    }
    fnv1a_32(&bytes)
        .to_string()
        .bytes()
        .map(|b| char::from(SAFE_ALPHABET[usize::from(b) % SAFE_ALPHABET.len()]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_hash_is_stable_and_changes_with_the_object_and_the_collision_count() {
        let a = object_hash(&json!({"image": "nginx:1"}), None);
        assert_eq!(a, object_hash(&json!({"image": "nginx:1"}), None));
        assert_ne!(a, object_hash(&json!({"image": "nginx:2"}), None));
        assert_ne!(a, object_hash(&json!({"image": "nginx:1"}), Some(1)));
        assert!(
            a.bytes().all(|b| SAFE_ALPHABET.contains(&b)),
            "{a} uses the safe alphabet"
        );
        // Pinned: a change here renames every child of every existing owner.
        assert_eq!(fnv1a_32(b""), 0x811c_9dc5, "FNV-1a offset basis");
        assert_eq!(fnv1a_32(b"a"), 0xe40c_292c, "FNV-1a of \"a\"");
        assert_eq!(object_hash(&json!({}), None), "5859f96865");
    }
}

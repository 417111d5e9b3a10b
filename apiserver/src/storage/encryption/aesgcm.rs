//! The `aesgcm` provider: AES-GCM with upstream's layout, `nonce (12 bytes) ||
//! ciphertext || tag (16 bytes)` after the provider's prefix, the storage key as the
//! additional authenticated data (so a record copied under another key does not open).
//! Each write draws a random 96-bit nonce, which is why upstream asks for rotation well
//! before 2^32 writes with one key.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

pub(crate) struct AesGcm {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl AesGcm {
    /// A 16- or 32-byte key (AES-128 or AES-256). ring has no AES-192, so 24-byte keys,
    /// which upstream takes, are refused with a message saying so.
    pub(crate) fn new(secret: &[u8]) -> Result<Self, String> {
        let algorithm =
            match secret.len() {
                16 => &AES_128_GCM,
                32 => &AES_256_GCM,
                24 => return Err(
                    "24-byte (AES-192) keys are not supported by kybern: use a 16- or 32-byte key"
                        .into(),
                ),
                n => {
                    return Err(format!(
                        "secret is not of the expected length, got {n}, expected one of [16 24 32]"
                    ))
                }
            };
        let key = UnboundKey::new(algorithm, secret)
            .map_err(|_| "the key was refused by the AES implementation".to_string())?;
        Ok(AesGcm {
            key: LessSafeKey::new(key),
            rng: SystemRandom::new(),
        })
    }

    /// Appends `nonce || seal(plaintext)` to `out` (which holds the prefix already).
    pub(crate) fn seal(
        &self,
        aad: &[u8],
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| "failed to write nonce for AES-GCM".to_string())?;
        let start = out.len();
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let mut sealed = out.split_off(start + NONCE_LEN);
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut sealed,
            )
            .map_err(|_| "AES-GCM encryption failed".to_string())?;
        out.extend_from_slice(&sealed);
        Ok(())
    }

    /// The plaintext of `data` (what follows the prefix), with upstream's messages.
    pub(crate) fn open(&self, aad: &[u8], data: &[u8]) -> Result<Vec<u8>, String> {
        if data.len() < NONCE_LEN {
            return Err("the stored data was shorter than the required size".into());
        }
        let (nonce, sealed) = data.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| "the stored data was shorter than the required size".to_string())?;
        let mut buf = sealed.to_vec();
        let len = self
            .key
            .open_in_place(nonce, Aad::from(aad), &mut buf)
            .map_err(|_| "cipher: message authentication failed".to_string())?
            .len();
        buf.truncate(len);
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_under_its_key_only() {
        let gcm = AesGcm::new(&[7u8; 32]).unwrap();
        let mut out = b"p:".to_vec();
        gcm.seal(b"/registry/core/secrets/a/b", b"hello", &mut out)
            .unwrap();
        assert_eq!(
            out.len(),
            2 + NONCE_LEN + 5 + 16,
            "nonce, ciphertext and tag follow the prefix"
        );
        let data = &out[2..];
        assert_eq!(
            gcm.open(b"/registry/core/secrets/a/b", data).unwrap(),
            b"hello"
        );
        assert_eq!(
            gcm.open(b"/registry/core/secrets/a/c", data).unwrap_err(),
            "cipher: message authentication failed",
            "a record copied under another key does not open"
        );
        let other = AesGcm::new(&[8u8; 16]).unwrap();
        assert!(other.open(b"/registry/core/secrets/a/b", data).is_err());
        assert_eq!(
            gcm.open(b"k", &data[..4]).unwrap_err(),
            "the stored data was shorter than the required size"
        );
    }

    #[test]
    fn keys_of_other_lengths_are_refused() {
        for (name, len) in [("empty", 0), ("aes192", 24), ("odd", 31)] {
            assert!(AesGcm::new(&vec![1u8; len]).is_err(), "{name}");
        }
    }
}

//! The `secretbox` provider: NaCl's XSalsa20-Poly1305 in upstream's layout, `nonce (24
//! bytes) || tag (16 bytes) || ciphertext` after the provider's prefix (what Go's
//! `nacl/secretbox.Seal` appends to the nonce), so records move between kybern and
//! kube-apiserver unchanged. secretbox takes no additional data, so, as upstream, the
//! storage key is not bound to the record. Nonces are random; at 192 bits they never
//! need counting.

use crypto_secretbox::aead::{AeadInPlace, KeyInit};
use crypto_secretbox::{Nonce, Tag, XSalsa20Poly1305};
use ring::rand::{SecureRandom, SystemRandom};

const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

pub(crate) struct SecretBox {
    cipher: XSalsa20Poly1305,
    rng: SystemRandom,
}

impl SecretBox {
    /// A 32-byte key, the only size upstream takes for secretbox.
    pub(crate) fn new(secret: &[u8]) -> Result<Self, String> {
        if secret.len() != 32 {
            return Err(format!(
                "secret is not of the expected length, got {}, expected one of [32]",
                secret.len()
            ));
        }
        Ok(SecretBox {
            cipher: XSalsa20Poly1305::new(secret.into()),
            rng: SystemRandom::new(),
        })
    }

    /// Appends `nonce || tag || ciphertext` to `out` (which holds the prefix already).
    pub(crate) fn seal(&self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| "unable to read sufficient random bytes".to_string())?;
        self.seal_with(&nonce, plaintext, out)
    }

    fn seal_with(
        &self,
        nonce: &[u8; NONCE_LEN],
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        out.extend_from_slice(nonce);
        let tag_at = out.len();
        out.extend_from_slice(&[0u8; TAG_LEN]);
        let body_at = out.len();
        out.extend_from_slice(plaintext);
        let tag = self
            .cipher
            .encrypt_in_place_detached(Nonce::from_slice(nonce), b"", &mut out[body_at..])
            .map_err(|_| "secretbox encryption failed".to_string())?;
        out[tag_at..body_at].copy_from_slice(&tag);
        Ok(())
    }

    /// The plaintext of `data` (what follows the prefix), with upstream's messages.
    pub(crate) fn open(&self, data: &[u8]) -> Result<Vec<u8>, String> {
        if data.len() < NONCE_LEN + TAG_LEN {
            return Err("the stored data was shorter than the required size".into());
        }
        let (nonce, sealed) = data.split_at(NONCE_LEN);
        let (tag, body) = sealed.split_at(TAG_LEN);
        let mut buf = body.to_vec();
        self.cipher
            .decrypt_in_place_detached(
                Nonce::from_slice(nonce),
                b"",
                &mut buf,
                Tag::from_slice(tag),
            )
            // Upstream's (misleading) message for a box that does not open.
            .map_err(|_| "output array was not large enough for encryption".to_string())?;
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn sealing_matches_nacl_crypto_secretbox_byte_for_byte() {
        // libsodium's crypto_secretbox_easy("yay") under an all-zero key and nonce is
        // the tag 5483f80c8b74f180eaefc3049f3e2c03 then the ciphertext bf5fc2: the
        // layout Go's secretbox.Seal, and so kube-apiserver, writes after the nonce.
        let sb = SecretBox::new(&[0u8; 32]).unwrap();
        let mut out = b"p:".to_vec();
        sb.seal_with(&[0u8; NONCE_LEN], b"yay", &mut out).unwrap();
        assert_eq!(
            hex(&out[2..]),
            format!("{}5483f80c8b74f180eaefc3049f3e2c03bf5fc2", "00".repeat(24))
        );
        assert_eq!(sb.open(&out[2..]).unwrap(), b"yay");
    }

    #[test]
    fn a_sealed_value_opens_under_its_key_only() {
        let sb = SecretBox::new(&[7u8; 32]).unwrap();
        let mut out = Vec::new();
        sb.seal(b"hello", &mut out).unwrap();
        assert_eq!(out.len(), NONCE_LEN + TAG_LEN + 5);
        assert_eq!(sb.open(&out).unwrap(), b"hello");
        let other = SecretBox::new(&[8u8; 32]).unwrap();
        assert_eq!(
            other.open(&out).unwrap_err(),
            "output array was not large enough for encryption"
        );
        assert_eq!(
            sb.open(&out[..NONCE_LEN + TAG_LEN - 1]).unwrap_err(),
            "the stored data was shorter than the required size"
        );
    }

    #[test]
    fn keys_other_than_32_bytes_are_refused() {
        for (name, len) in [("empty", 0), ("aes128", 16), ("long", 33)] {
            assert!(SecretBox::new(&vec![1u8; len]).is_err(), "{name}");
        }
    }
}

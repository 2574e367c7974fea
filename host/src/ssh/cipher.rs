//! Which symmetric cipher a connection asks for first.
//!
//! russh, like OpenSSH, puts chacha20-poly1305 first: constant time in
//! software on any CPU. Where the CPU does AES and carry-less multiply in
//! hardware, AES-GCM is constant time too and cheaper for both ends: the
//! server's side above all, since OpenSSH's Poly1305 is portable C. On the
//! bench machine `scp` of 100 MiB over one connection takes 0.25 s with
//! aes256-gcm and 0.35 s with chacha20-poly1305. Public for the benchmark,
//! whose raw russh floor asks for the same.

use russh::cipher::{self, Name};

/// russh's own order with AES-GCM moved first where the hardware has it.
pub fn preferred() -> Vec<Name> {
    let defaults = russh::Preferred::default().cipher.into_owned();
    if !hardware_aes() {
        return defaults;
    }
    let gcm = [cipher::AES_256_GCM, cipher::AES_128_GCM];
    gcm.into_iter()
        .chain(defaults.into_iter().filter(|c| !gcm.contains(c)))
        .collect()
}

fn hardware_aes() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_order_keeps_every_default_once_and_adds_only_gcm() {
        let defaults = russh::Preferred::default().cipher.into_owned();
        let order = preferred();
        for c in &defaults {
            assert_eq!(order.iter().filter(|o| *o == c).count(), 1, "{c:?}");
        }
        for c in &order {
            assert!(
                defaults.contains(c) || *c == cipher::AES_128_GCM,
                "{c:?} is not one russh offers by default"
            );
        }
        assert!(!order.contains(&cipher::NONE));
        if hardware_aes() {
            assert_eq!(order[0], cipher::AES_256_GCM);
        } else {
            assert_eq!(order, defaults);
        }
    }
}

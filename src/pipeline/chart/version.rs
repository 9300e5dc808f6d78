//! Which helm sandbox needs: the oldest version whose `template` takes its flags, and how a
//! version is compared with it. Both finding helm (`helm.rs`) and the refusal of an old one
//! (`error.rs`) read it.

/// The oldest helm whose `template` takes `--kube-version`, `--api-versions` and `--values -`
/// the way sandbox passes them.
pub(crate) const MIN_VERSION: &str = "3.8.0";

/// Whether version `found` (e.g. `v3.12.1`, `v4.0.0-rc.1`) is at least `minimum` (`3.8.0`).
pub(crate) fn at_least(found: &str, minimum: &str) -> bool {
    fn numbers(v: &str) -> Vec<u64> {
        v.trim_start_matches('v')
            .split(['-', '+'])
            .next()
            .unwrap_or_default()
            .split('.')
            .map(|p| p.parse().unwrap_or(0))
            .collect()
    }
    numbers(found) >= numbers(minimum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        assert!(at_least("v4.1.4", "3.8.0"));
        assert!(at_least("v3.10.0", "3.8.0"));
        assert!(at_least("v3.8.0", "3.8.0"));
        assert!(!at_least("v3.7.2", "3.8.0"));
        assert!(!at_least("v2.17.0", "3.8.0"));
        assert!(at_least("v4.0.0-rc.1", "3.8.0"));
    }
}

//! The caps on how many sandboxes a product may have (`limits.max_sandboxes` in the cluster,
//! `limits.max_per_owner` per owner). Only a NEW sandbox is counted against them, and the count
//! is taken under one Lease per product, held until the new sandbox's namespace exists: two
//! `up`s at once cannot both see room for one more.

use std::path::PathBuf;

use crate::error::Hint;
use crate::kube::Cluster;
use crate::lock::{self, SandboxLock};
use crate::pipeline::config::Caps;
use crate::pipeline::settings::Settings;
use crate::progress::Reporter;
use crate::record::{self, SandboxRecord};

/// Where the product-wide lock lives: a namespace every cluster has.
pub(crate) const CAPS_NAMESPACE: &str = "default";

/// How many of the oldest sandboxes a refusal names.
const OLDEST_SHOWN: usize = 3;

/// The Lease that serialises the counting of `product`'s sandboxes.
pub(crate) fn lease_name(product: &str) -> String {
    // A product name may hold `_` and capitals, which a Lease name may not.
    record::namespace_for("sandbox-caps-", product)
}

/// A sandbox the cap leaves no room for.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CapError {
    #[error("no new sandbox for branch `{branch}`: product `{product}` has {count} sandboxes, and `limits.{field}` in {} allows {cap}{}", config.display(), owner.as_deref().map(|o| format!(" per owner (`{o}` has {count})")).unwrap_or_default())]
    Full {
        branch: String,
        product: String,
        /// `max_sandboxes` or `max_per_owner`.
        field: &'static str,
        /// For `max_per_owner`: whose.
        owner: Option<String>,
        count: usize,
        cap: u32,
        config: PathBuf,
        /// The oldest that count, oldest first: what the user could `down`.
        oldest: Vec<SandboxRecord>,
    },
}

impl Hint for CapError {
    fn hint(&self) -> Option<String> {
        let CapError::Full { oldest, field, .. } = self;
        let now = jiff::Timestamp::now();
        let lines: Vec<String> = oldest
            .iter()
            .map(|r| {
                let age = r
                    .created_at
                    .map(|t| format!(", created {} ago", human_age(t, now)))
                    .unwrap_or_default();
                format!(
                    "  {} (owner {}{age}): `sandbox down --branch {}`",
                    r.namespace, r.owner, r.branch
                )
            })
            .collect();
        Some(format!(
            "the oldest of them:\n{}\nfree a place by deleting one of those, or raise `limits.{field}` in sandbox.yaml",
            lines.join("\n")
        ))
    }
}

fn human_age(from: jiff::Timestamp, to: jiff::Timestamp) -> String {
    let secs = to.duration_since(from).as_secs().max(0);
    match secs {
        s if s >= 86_400 => format!("{}d", s / 86_400),
        s if s >= 3_600 => format!("{}h", s / 3_600),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Before a new sandbox is made: with caps configured, take the product's lock and check that
/// there is room. The lock is returned to be released once the namespace exists (None: no caps).
pub(crate) async fn admit(
    cluster: &Cluster,
    settings: &Settings,
    reporter: &Reporter,
) -> anyhow::Result<Option<SandboxLock>> {
    let caps: Caps = settings.config.isolation.caps;
    if !caps.any() {
        return Ok(None);
    }
    let product = &settings.config.name;
    let holder = lock::holder_identity(&settings.owner);
    let lease = lease_name(product);
    let held =
        lock::acquire_named(cluster, CAPS_NAMESPACE, &lease, &holder, None, reporter).await?;
    let sandboxes = record::list(cluster, Some(product)).await?;
    match check(settings, sandboxes) {
        Ok(()) => Ok(Some(held)),
        Err(full) => {
            held.release().await;
            Err(anyhow::Error::new(*full))
        }
    }
}

/// Whether one more sandbox fits, given the product's `sandboxes` (terminating ones and this
/// sandbox's own namespace do not count).
fn check(settings: &Settings, sandboxes: Vec<SandboxRecord>) -> Result<(), Box<CapError>> {
    let caps = settings.config.isolation.caps;
    let mut counted: Vec<SandboxRecord> = sandboxes
        .into_iter()
        .filter(|r| !r.terminating && r.namespace != settings.namespace)
        .collect();
    counted.sort_by_key(|r| r.created_at);
    let full = |field, owner: Option<&str>, cap: u32, of: Vec<SandboxRecord>| {
        Box::new(CapError::Full {
            branch: settings.branch.clone(),
            product: settings.config.name.clone(),
            field,
            owner: owner.map(str::to_owned),
            count: of.len(),
            cap,
            config: settings.config.path.clone(),
            oldest: of.into_iter().take(OLDEST_SHOWN).collect(),
        })
    };
    if let Some(cap) = caps.max_sandboxes {
        if counted.len() >= cap as usize {
            return Err(full("max_sandboxes", None, cap, counted));
        }
    }
    if let Some(cap) = caps.max_per_owner {
        let owner = settings.owner.as_str();
        let theirs: Vec<SandboxRecord> = counted.into_iter().filter(|r| r.owner == owner).collect();
        if theirs.len() >= cap as usize {
            return Err(full("max_per_owner", Some(owner), cap, theirs));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(caps: Caps, owner: &str) -> Settings {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sandbox.yaml");
        std::fs::write(
            &path,
            "name: shop\nurl: {template: x}\nrepos: {}\nservices: {}\n",
        )
        .unwrap();
        let mut config = crate::pipeline::config::load(&path, &|_| None).unwrap();
        config.isolation.caps = caps;
        let env = crate::pipeline::Environment::for_tests(owner, dir.path());
        Settings::new(config, "new-branch", Vec::new(), None, &env).unwrap()
    }

    fn sandbox(branch: &str, owner: &str, age_hours: i64) -> SandboxRecord {
        SandboxRecord {
            namespace: format!("sb-{branch}"),
            branch: branch.into(),
            owner: owner.into(),
            created_at: Some(jiff::Timestamp::now() - jiff::SignedDuration::from_hours(age_hours)),
            ..SandboxRecord::default()
        }
    }

    #[test]
    fn the_product_cap_names_the_oldest_sandboxes() {
        let s = settings(
            Caps {
                max_sandboxes: Some(2),
                max_per_owner: None,
            },
            "ada",
        );
        let two = vec![sandbox("young", "bob", 1), sandbox("old", "ada", 30)];
        let e = check(&s, two.clone()).unwrap_err();
        assert!(
            e.to_string().starts_with("no new sandbox for branch `new-branch`: product `shop` has 2 sandboxes, and `limits.max_sandboxes` in "),
            "{e}"
        );
        let hint = e.hint().unwrap();
        let old = hint.find("sandbox down --branch old").unwrap();
        let young = hint.find("sandbox down --branch young").unwrap();
        assert!(old < young, "oldest first: {hint}");
        assert!(hint.contains("created 1d ago"), "{hint}");
        // A terminating sandbox, or the one being updated, leaves room.
        let mut going = two.clone();
        going[0].terminating = true;
        assert!(check(&s, going).is_ok());
        let mut same = two;
        same[0].namespace = s.namespace.clone();
        assert!(check(&s, same).is_ok());
    }

    #[test]
    fn the_owner_cap_counts_only_the_owners_sandboxes() {
        let caps = Caps {
            max_sandboxes: None,
            max_per_owner: Some(1),
        };
        let others = vec![sandbox("a", "bob", 1), sandbox("b", "bob", 2)];
        assert!(check(&settings(caps, "ada"), others.clone()).is_ok());
        let mut with_ada = others;
        with_ada.push(sandbox("mine", "ada", 3));
        let e = check(&settings(caps, "ada"), with_ada).unwrap_err();
        assert!(e.to_string().contains("per owner (`ada` has 1)"), "{e}");
        assert!(e.hint().unwrap().contains("--branch mine"));
        assert!(!e.hint().unwrap().contains("--branch a "));
    }

    #[test]
    fn lease_names_are_valid_for_any_product_name() {
        assert_eq!(lease_name("shop"), "sandbox-caps-shop");
        assert!(lease_name("My_Shop").starts_with("sandbox-caps-my-shop--"));
    }
}

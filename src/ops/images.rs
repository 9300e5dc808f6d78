//! `sandbox images`: every service's image for its branch's commit, resolved to a digest
//! (built where missing and buildah is at hand, or waited for while CI publishes it).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;

use crate::pipeline::images::{ImageInfo, Mode};
use crate::pipeline::settings::Settings;
use crate::pipeline::{prepare, Target};
use crate::progress::Reporter;

/// The images of `settings`' branch, for this machine's platform; `wait_for_images` says how
/// long to wait for one CI has yet to publish.
pub(crate) async fn images(
    settings: &Settings,
    wait_for_images: Option<Duration>,
    reporter: &Reporter,
) -> Result<BTreeMap<String, ImageInfo>> {
    let target = Target::Local(Mode::Ensure {
        wait: wait_for_images,
    });
    Ok(prepare::images_only(settings, target, reporter)
        .await?
        .images)
}

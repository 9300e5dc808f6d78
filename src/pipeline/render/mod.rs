//! Render stage: Handlebars templates (strict mode, Helm-like helpers) → Kubernetes objects.
//!
//! A template is rendered against a JSON context shaped like
//! `{ values, sandbox: {name, branch, namespace}, repo: {name, branch, sha, short_sha, fell_back},
//!    services: {<name>: {host, port}}, service: {name} }`
//! (built by the caller). The output text is split into YAML documents; empty documents are
//! skipped and every other document must be a Kubernetes object (`apiVersion`, `kind`,
//! `metadata.name`).
//!
//! Helpers (semantics in `helpers.rs`):
//! `default`, `required`, `quote`, `b64enc`, `toYaml`, `toJson`, `indent`, `nindent`, `sha256`,
//! `trunc`, `trimSuffix`, `lower`, `upper`, `replace`, `file`, `files`, plus Handlebars'
//! built-ins (`if`, `unless`, `each`, `with`, `lookup`, `eq`, `ne`, `gt`, `and`, `or`, `not`, `len`…).
//!
//! Files: `error.rs` (the error and its hints), `diagnose.rs` (Handlebars' errors → ours),
//! `documents.rs` (rendered text → objects), `helpers.rs`.

mod diagnose;
mod documents;
mod error;
pub(crate) mod helpers;

use handlebars::{Handlebars, RenderContext, Renderable, StringOutput, Template};
use serde_json::Value;

use crate::pipeline::checkout::RepoTree;

pub(crate) use documents::parse_manifests;
pub(crate) use error::RenderError;

/// One template file to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TemplateSource {
    /// Path shown in errors, e.g. `templates/api.yaml`.
    pub(crate) name: String,
    /// The Handlebars source.
    pub(crate) text: String,
}

/// One Kubernetes object produced by a template.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Manifest {
    /// Name of the template that produced it.
    pub(crate) template: String,
    /// The object; guaranteed to be a mapping with string `apiVersion`, `kind`, `metadata.name`.
    pub(crate) object: Value,
}

impl Manifest {
    pub(crate) fn kind(&self) -> &str {
        self.object["kind"].as_str().unwrap_or_default()
    }

    pub(crate) fn name(&self) -> &str {
        self.object["metadata"]["name"].as_str().unwrap_or_default()
    }
}

/// Renders templates: a Handlebars registry in strict mode, without HTML escaping, with the
/// Helm-like helpers registered.
#[derive(Debug, Clone)]
pub(crate) struct Renderer {
    registry: Handlebars<'static>,
    /// Where `file`/`files` read from (None = the helpers fail with a clear error).
    repo: Option<RepoTree>,
}

impl Renderer {
    /// `repo`: where `file`/`files` read from (None = the helpers fail with a clear error).
    pub(crate) fn new(repo: Option<RepoTree>) -> Renderer {
        let mut registry = Handlebars::new();
        registry.set_strict_mode(true);
        registry.register_escape_fn(handlebars::no_escape);
        helpers::register(&mut registry, repo.clone());
        Renderer { registry, repo }
    }

    /// Render `template` and parse the output into Kubernetes objects.
    pub(crate) fn render(
        &self,
        template: &TemplateSource,
        context: &Value,
    ) -> Result<Vec<Manifest>, RenderError> {
        let text = self.render_text(template, context)?;
        documents::parse_manifests(&template.name, &text)
    }

    /// Render to text only (no YAML parsing).
    fn render_text(
        &self,
        template: &TemplateSource,
        context: &Value,
    ) -> Result<String, RenderError> {
        let compiled = Template::compile_with_name(&template.text, template.name.clone())
            .map_err(|source| diagnose::syntax_error(template, source))?;
        let diagnose = |e| {
            diagnose::from_handlebars(
                e,
                &template.name,
                context,
                self.repo.as_ref().map(RepoTree::dir),
            )
        };
        let ctx = handlebars::Context::from(context.clone());
        let mut rc = RenderContext::new(compiled.name.as_ref());
        let mut out = StringOutput::new();
        compiled
            .render(&self.registry, &ctx, &mut rc, &mut out)
            .map_err(diagnose)?;
        out.into_string().map_err(|e| diagnose(e.into()))
    }
}

/// The `n`th (1-based) line of `text`.
fn nth_line(text: &str, n: usize) -> Option<String> {
    n.checked_sub(1)
        .and_then(|i| text.lines().nth(i))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests;

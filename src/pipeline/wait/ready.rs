//! Whether an object is ready: pure predicates over what a watch sees of it, one per kind.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Endpoints, Pod, ResourceQuota, Service};

/// Where an object stands on its way to ready.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Progress {
    Ready,
    /// Not yet; the text says what is missing (shown on timeout).
    Pending(String),
    /// It will not get there by itself.
    Failed(String),
}

/// A Deployment is ready when the controller has seen its latest spec and every replica is updated
/// and available (what `kubectl rollout status` checks). The stock condition reads only the
/// `Progressing` reason, which right after a re-apply can still describe the previous rollout.
pub(crate) fn deployment(d: Option<&Deployment>) -> Progress {
    let Some(d) = d else {
        return Progress::Pending("not created yet".into());
    };
    let generation = d.metadata.generation.unwrap_or(0);
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(s) = &d.status else {
        return Progress::Pending("no status yet".into());
    };
    if let Some(c) = s.conditions.iter().flatten().find(|c| {
        c.type_ == "Progressing"
            && c.status == "False"
            && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    }) {
        return Progress::Failed(
            c.message
                .clone()
                .unwrap_or_else(|| "progress deadline exceeded".into()),
        );
    }
    if s.observed_generation.unwrap_or(0) < generation {
        return Progress::Pending("the controller has not seen the new spec yet".into());
    }
    let updated = s.updated_replicas.unwrap_or(0);
    let available = s.available_replicas.unwrap_or(0);
    let total = s.replicas.unwrap_or(0);
    if updated < want {
        return Progress::Pending(format!("{updated} of {want} replicas updated"));
    }
    if total > updated {
        return Progress::Pending(format!(
            "{} old replicas pending termination",
            total - updated
        ));
    }
    if available < want {
        return Progress::Pending(format!("{available} of {want} replicas available"));
    }
    Progress::Ready
}

pub(crate) fn stateful_set(s: Option<&StatefulSet>) -> Progress {
    let Some(s) = s else {
        return Progress::Pending("not created yet".into());
    };
    let want = s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(st) = &s.status else {
        return Progress::Pending("no status yet".into());
    };
    if st.observed_generation.unwrap_or(0) < s.metadata.generation.unwrap_or(0) {
        return Progress::Pending("the controller has not seen the new spec yet".into());
    }
    let ready = st.ready_replicas.unwrap_or(0);
    if ready < want {
        return Progress::Pending(format!("{ready} of {want} replicas ready"));
    }
    if st.update_revision.is_some() && st.update_revision != st.current_revision {
        return Progress::Pending("rolling update in progress".into());
    }
    Progress::Ready
}

pub(crate) fn daemon_set(d: Option<&DaemonSet>) -> Progress {
    let Some(d) = d else {
        return Progress::Pending("not created yet".into());
    };
    let Some(s) = &d.status else {
        return Progress::Pending("no status yet".into());
    };
    if s.observed_generation.unwrap_or(0) < d.metadata.generation.unwrap_or(0) {
        return Progress::Pending("the controller has not seen the new spec yet".into());
    }
    let want = s.desired_number_scheduled;
    let ready = s.number_ready;
    if s.updated_number_scheduled.unwrap_or(0) < want || ready < want {
        return Progress::Pending(format!("{ready} of {want} pods ready"));
    }
    Progress::Ready
}

/// A Pod on its own (a chart's test or hook Pod): done when it exits 0, failed when it exits
/// otherwise; a Pod that restarts forever is ready when it is Ready.
pub(crate) fn pod(p: Option<&Pod>) -> Progress {
    let Some(p) = p else {
        return Progress::Pending("not created yet".into());
    };
    let status = p.status.as_ref();
    match status.and_then(|s| s.phase.as_deref()) {
        Some("Succeeded") => return Progress::Ready,
        Some("Failed") => {
            let exit = status
                .and_then(|s| s.container_statuses.as_ref())
                .into_iter()
                .flatten()
                .filter_map(|c| c.state.as_ref()?.terminated.as_ref())
                .find(|t| t.exit_code != 0)
                .map(|t| format!("exited with code {}", t.exit_code));
            return Progress::Failed(exit.unwrap_or_else(|| "the pod failed".into()));
        }
        _ => {}
    }
    let runs_forever = p
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .is_none_or(|r| r == "Always");
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    if runs_forever && ready {
        return Progress::Ready;
    }
    let phase = status.and_then(|s| s.phase.clone());
    Progress::Pending(format!("phase {}", phase.as_deref().unwrap_or("unknown")))
}

pub(crate) fn job(j: Option<&Job>) -> Progress {
    let Some(j) = j else {
        return Progress::Pending("not created yet".into());
    };
    let conditions = j.status.as_ref().and_then(|s| s.conditions.as_ref());
    for c in conditions.into_iter().flatten() {
        if c.status != "True" {
            continue;
        }
        match c.type_.as_str() {
            "Complete" => return Progress::Ready,
            "Failed" => {
                return Progress::Failed(
                    c.message
                        .clone()
                        .or(c.reason.clone())
                        .unwrap_or_else(|| "the Job failed".into()),
                )
            }
            _ => {}
        }
    }
    let active = j.status.as_ref().and_then(|s| s.active).unwrap_or(0);
    Progress::Pending(format!("{active} pods running"))
}

/// A ResourceQuota counts once the quota controller has written its status: until then the
/// API server refuses every pod of the namespace ("status unknown for quota").
pub(crate) fn resource_quota(q: Option<&ResourceQuota>) -> Progress {
    let Some(q) = q else {
        return Progress::Pending("not created yet".into());
    };
    let want = q.spec.as_ref().and_then(|s| s.hard.as_ref());
    let counted = q.status.as_ref().and_then(|s| s.hard.as_ref());
    if want.is_some() && counted == want {
        Progress::Ready
    } else {
        Progress::Pending("the quota controller has not counted it yet".into())
    }
}

pub(crate) fn load_balancer(s: Option<&Service>) -> Progress {
    let Some(s) = s else {
        return Progress::Pending("not created yet".into());
    };
    let is_lb = s.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer");
    let has_address = s
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .is_some_and(|i| !i.is_empty());
    if !is_lb || has_address {
        Progress::Ready
    } else {
        Progress::Pending("waiting for a load balancer address".into())
    }
}

pub(crate) fn endpoints_ready(e: Option<&Endpoints>) -> Progress {
    let ready = e.and_then(|e| e.subsets.as_ref()).is_some_and(|subsets| {
        subsets
            .iter()
            .any(|s| s.addresses.as_ref().is_some_and(|a| !a.is_empty()))
    });
    if ready {
        Progress::Ready
    } else {
        Progress::Pending("no ready endpoints yet".into())
    }
}

#[cfg(test)]
mod tests {
    use serde::de::DeserializeOwned;

    use super::*;

    fn yaml<T: DeserializeOwned>(s: &str) -> T {
        serde_yaml_ng::from_str(s).unwrap()
    }

    #[test]
    fn deployment_ready_only_when_latest_generation_is_fully_available() {
        let ready: Deployment = yaml(
            "metadata: {name: a, generation: 2}\nspec: {replicas: 2, selector: {}, template: {}}\nstatus: {observedGeneration: 2, replicas: 2, updatedReplicas: 2, availableReplicas: 2}",
        );
        assert_eq!(deployment(Some(&ready)), Progress::Ready);
        let stale: Deployment = yaml(
            "metadata: {name: a, generation: 3}\nspec: {replicas: 2, selector: {}, template: {}}\nstatus: {observedGeneration: 2, replicas: 2, updatedReplicas: 2, availableReplicas: 2}",
        );
        assert!(matches!(deployment(Some(&stale)), Progress::Pending(_)));
        let rolling: Deployment = yaml(
            "metadata: {name: a, generation: 2}\nspec: {replicas: 1, selector: {}, template: {}}\nstatus: {observedGeneration: 2, replicas: 2, updatedReplicas: 1, availableReplicas: 1}",
        );
        assert!(
            matches!(deployment(Some(&rolling)), Progress::Pending(s) if s.contains("old replicas"))
        );
        let stuck: Deployment = yaml(
            "metadata: {name: a, generation: 1}\nspec: {replicas: 1, selector: {}, template: {}}\nstatus: {conditions: [{type: Progressing, status: 'False', reason: ProgressDeadlineExceeded, message: too slow}]}",
        );
        assert_eq!(
            deployment(Some(&stuck)),
            Progress::Failed("too slow".into())
        );
        assert!(matches!(deployment(None), Progress::Pending(_)));
    }

    #[test]
    fn job_complete_failed_or_running() {
        let done: Job =
            yaml("metadata: {name: j}\nstatus: {conditions: [{type: Complete, status: 'True'}]}");
        assert_eq!(job(Some(&done)), Progress::Ready);
        let failed: Job = yaml(
            "metadata: {name: j}\nstatus: {conditions: [{type: Failed, status: 'True', reason: BackoffLimitExceeded, message: Job has reached the specified backoff limit}]}",
        );
        assert!(matches!(job(Some(&failed)), Progress::Failed(m) if m.contains("backoff")));
        let running: Job = yaml("metadata: {name: j}\nstatus: {active: 1}");
        assert!(matches!(job(Some(&running)), Progress::Pending(_)));
    }

    #[test]
    fn stateful_and_daemon_sets() {
        let ss: StatefulSet = yaml(
            "metadata: {name: s, generation: 1}\nspec: {replicas: 1, selector: {}, serviceName: s, template: {}}\nstatus: {observedGeneration: 1, replicas: 1, readyReplicas: 1, currentRevision: r1, updateRevision: r1}",
        );
        assert_eq!(stateful_set(Some(&ss)), Progress::Ready);
        let ds: DaemonSet = yaml(
            "metadata: {name: d, generation: 1}\nspec: {selector: {}, template: {}}\nstatus: {observedGeneration: 1, desiredNumberScheduled: 1, numberReady: 0, currentNumberScheduled: 1, numberMisscheduled: 0, updatedNumberScheduled: 1}",
        );
        assert!(matches!(daemon_set(Some(&ds)), Progress::Pending(_)));
    }

    #[test]
    fn services_wait_only_for_load_balancers() {
        let cluster_ip: Service = yaml("metadata: {name: s}\nspec: {type: ClusterIP}");
        assert_eq!(load_balancer(Some(&cluster_ip)), Progress::Ready);
        let lb: Service =
            yaml("metadata: {name: s}\nspec: {type: LoadBalancer}\nstatus: {loadBalancer: {}}");
        assert!(matches!(load_balancer(Some(&lb)), Progress::Pending(_)));
        let lb_ready: Service =
            yaml("metadata: {name: s}\nspec: {type: LoadBalancer}\nstatus: {loadBalancer: {ingress: [{ip: 1.2.3.4}]}}");
        assert_eq!(load_balancer(Some(&lb_ready)), Progress::Ready);
    }

    #[test]
    fn a_quota_is_ready_once_counted() {
        let counted: ResourceQuota =
            yaml("metadata: {name: q}\nspec: {hard: {pods: '4'}}\nstatus: {hard: {pods: '4'}, used: {pods: '0'}}");
        assert_eq!(resource_quota(Some(&counted)), Progress::Ready);
        let fresh: ResourceQuota = yaml("metadata: {name: q}\nspec: {hard: {pods: '4'}}");
        assert!(matches!(resource_quota(Some(&fresh)), Progress::Pending(_)));
        let changed: ResourceQuota =
            yaml("metadata: {name: q}\nspec: {hard: {pods: '8'}}\nstatus: {hard: {pods: '4'}}");
        assert!(matches!(
            resource_quota(Some(&changed)),
            Progress::Pending(_)
        ));
    }

    #[test]
    fn endpoints_are_ready_with_an_address() {
        let none: Endpoints =
            yaml("metadata: {name: s}\nsubsets: [{notReadyAddresses: [{ip: 10.0.0.1}]}]");
        assert!(matches!(endpoints_ready(Some(&none)), Progress::Pending(_)));
        let some: Endpoints = yaml("metadata: {name: s}\nsubsets: [{addresses: [{ip: 10.0.0.1}]}]");
        assert_eq!(endpoints_ready(Some(&some)), Progress::Ready);
        assert!(matches!(endpoints_ready(None), Progress::Pending(_)));
    }
}

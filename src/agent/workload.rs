//! Which workload a pod belongs to, from its owner references and labels alone (no API calls).
//!
//! The pod's controller owner names the workload directly for StatefulSets, DaemonSets and
//! Jobs. Two owners sit one level below the workload a user thinks in, and their names give the
//! upper level away:
//! - a Deployment's ReplicaSet is named `<deployment>-<pod-template-hash>`, and its pods carry the
//!   `pod-template-hash` label (before Kubernetes 1.11 the name used an encoded form of the label:
//!   see [`legacy_hash_encoding`]);
//! - a CronJob's Job is named `<cronjob>-<scheduled time in minutes since the epoch>`.

use std::fmt;

use super::kubelet::pods::ObjectMeta;

/// The kind of workload a pod belongs to; the `workload_kind` label's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WorkloadKind {
    /// Pods of a ReplicaSet created by a Deployment.
    Deployment,
    /// Pods of a StatefulSet.
    StatefulSet,
    /// Pods of a DaemonSet.
    DaemonSet,
    /// Pods of a Job that no CronJob created (as far as its name tells).
    Job,
    /// Pods of a Job created by a CronJob.
    CronJob,
    /// Pods of a ReplicaSet that no Deployment manages (as far as its name tells).
    ReplicaSet,
    /// A pod without a controller: bare, static or mirror pods.
    Pod,
}

impl WorkloadKind {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::StatefulSet => "StatefulSet",
            WorkloadKind::DaemonSet => "DaemonSet",
            WorkloadKind::Job => "Job",
            WorkloadKind::CronJob => "CronJob",
            WorkloadKind::ReplicaSet => "ReplicaSet",
            WorkloadKind::Pod => "Pod",
        }
    }
}

impl fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A workload: the `workload` and `workload_kind` labels of a pod's series.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    /// Name of the workload (for kind `Pod`, the pod's own name).
    pub name: String,
    /// Its kind.
    pub kind: WorkloadKind,
}

/// Label the ReplicaSet controller puts on every pod of a Deployment revision.
const POD_TEMPLATE_HASH: &str = "pod-template-hash";

/// Resolves the workload of a pod from its metadata.
///
/// The controller owner reference wins; payloads that predate the `controller` field are read
/// through their first owner reference without it. Owner kinds other than the built-in
/// controllers (custom resources owning pods directly) keep the owner's name and are reported
/// as kind `Pod`, so their pods still group together under one workload name.
pub fn resolve(meta: &ObjectMeta) -> Workload {
    let owner = meta
        .owner_references
        .iter()
        .find(|o| o.controller == Some(true))
        .or_else(|| {
            meta.owner_references
                .iter()
                .find(|o| o.controller.is_none())
        });
    let Some(owner) = owner else {
        return bare(meta);
    };
    match owner.kind.as_str() {
        "ReplicaSet" => {
            let hash = meta.labels.get(POD_TEMPLATE_HASH).map(String::as_str);
            match deployment_of_replica_set(&owner.name, hash) {
                Some(deployment) => named(deployment, WorkloadKind::Deployment),
                None => named(&owner.name, WorkloadKind::ReplicaSet),
            }
        }
        "Job" => match cron_job_of_job(&owner.name) {
            Some(cron_job) => named(cron_job, WorkloadKind::CronJob),
            None => named(&owner.name, WorkloadKind::Job),
        },
        "StatefulSet" => named(&owner.name, WorkloadKind::StatefulSet),
        "DaemonSet" => named(&owner.name, WorkloadKind::DaemonSet),
        // A mirror pod is owned by its Node: it is a static pod, a workload of its own.
        "Node" => bare(meta),
        _ if owner.name.is_empty() => bare(meta),
        _ => named(&owner.name, WorkloadKind::Pod),
    }
}

fn bare(meta: &ObjectMeta) -> Workload {
    named(&meta.name, WorkloadKind::Pod)
}

fn named(name: &str, kind: WorkloadKind) -> Workload {
    Workload {
        name: name.to_owned(),
        kind,
    }
}

/// The Deployment that created a ReplicaSet, when the ReplicaSet's name is the Deployment's
/// name plus the pods' `pod-template-hash` (as is, or in its pre-1.11 encoded form).
pub fn deployment_of_replica_set<'a>(replica_set: &'a str, hash: Option<&str>) -> Option<&'a str> {
    let hash = hash.filter(|h| !h.is_empty())?;
    let (deployment, suffix) = replica_set.rsplit_once('-')?;
    if deployment.is_empty() {
        return None;
    }
    let matches = suffix == hash
        || (suffix.len() == hash.len() && suffix.bytes().eq(legacy_hash_encoding(hash)));
    matches.then_some(deployment)
}

/// The encoding Kubernetes before 1.11 applied to the `pod-template-hash` label value (a decimal
/// number) to build the ReplicaSet name: each byte picks a character from an alphabet without
/// vowels and look-alike digits, by its value modulo the alphabet's length.
pub fn legacy_hash_encoding(hash: &str) -> impl Iterator<Item = u8> + '_ {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    hash.bytes()
        .map(|b| ALPHABET[usize::from(b) % ALPHABET.len()])
}

/// The CronJob that created a Job, when the Job's name is `<cronjob>-<minutes since the epoch>`.
///
/// At least 8 digits are required (any schedule time after 1989), so a hand-made Job such as
/// `migrate-2` stays a Job.
pub fn cron_job_of_job(job: &str) -> Option<&str> {
    let (cron_job, suffix) = job.rsplit_once('-')?;
    let scheduled_minutes = suffix.len() >= 8 && suffix.bytes().all(|b| b.is_ascii_digit());
    (scheduled_minutes && !cron_job.is_empty()).then_some(cron_job)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::kubelet::pods::OwnerReference;

    fn meta(name: &str, owners: &[(&str, &str, Option<bool>)], hash: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: name.to_owned(),
            namespace: "ns".to_owned(),
            owner_references: owners
                .iter()
                .map(|(kind, name, controller)| OwnerReference {
                    kind: (*kind).to_owned(),
                    name: (*name).to_owned(),
                    controller: *controller,
                    ..Default::default()
                })
                .collect(),
            labels: hash
                .map(|h| [(POD_TEMPLATE_HASH.to_owned(), h.to_owned())].into())
                .unwrap_or_default(),
            ..Default::default()
        }
    }

    fn resolved(m: &ObjectMeta) -> (String, WorkloadKind) {
        let w = resolve(m);
        (w.name, w.kind)
    }

    #[test]
    fn a_replica_set_named_after_the_pod_template_hash_belongs_to_a_deployment() {
        let m = meta(
            "web-api-6fb786454b-7fsxc",
            &[("ReplicaSet", "web-api-6fb786454b", Some(true))],
            Some("6fb786454b"),
        );
        assert_eq!(resolved(&m), ("web-api".into(), WorkloadKind::Deployment));
    }

    #[test]
    fn a_replica_set_whose_suffix_differs_from_the_hash_label_stays_a_replica_set() {
        let m = meta(
            "rs-pod",
            &[("ReplicaSet", "standalone-abc12", Some(true))],
            Some("zzz99"),
        );
        assert_eq!(
            resolved(&m),
            ("standalone-abc12".into(), WorkloadKind::ReplicaSet)
        );
        let no_label = meta("p", &[("ReplicaSet", "standalone-abc12", Some(true))], None);
        assert_eq!(resolved(&no_label).1, WorkloadKind::ReplicaSet);
    }

    #[test]
    fn pre_1_11_replica_set_names_use_the_encoded_hash() {
        // Real pair from a 2018 minikube: label 1390215551, ReplicaSet suffix 57f4659995.
        let m = meta(
            "kube-state-metrics-57f4659995-6n2qq",
            &[("ReplicaSet", "kube-state-metrics-57f4659995", Some(true))],
            Some("1390215551"),
        );
        assert_eq!(
            resolved(&m),
            ("kube-state-metrics".into(), WorkloadKind::Deployment)
        );
    }

    #[test]
    fn a_job_with_a_scheduled_time_suffix_belongs_to_a_cron_job() {
        let m = meta(
            "backup-29472159-pvnhf",
            &[("Job", "backup-29472159", Some(true))],
            None,
        );
        assert_eq!(resolved(&m), ("backup".into(), WorkloadKind::CronJob));
    }

    #[test]
    fn a_job_with_a_short_or_non_numeric_suffix_stays_a_job() {
        for job in ["migrate-2", "e2e-failjob", "load-2947215a"] {
            let m = meta("p", &[("Job", job, Some(true))], None);
            assert_eq!(resolved(&m), (job.to_owned(), WorkloadKind::Job), "{job}");
        }
    }

    #[test]
    fn stateful_sets_and_daemon_sets_are_taken_as_they_are() {
        let s = meta("db-0", &[("StatefulSet", "db", Some(true))], None);
        assert_eq!(resolved(&s), ("db".into(), WorkloadKind::StatefulSet));
        let d = meta("proxy-x1", &[("DaemonSet", "proxy", Some(true))], None);
        assert_eq!(resolved(&d), ("proxy".into(), WorkloadKind::DaemonSet));
    }

    #[test]
    fn pods_without_a_controller_and_mirror_pods_are_their_own_workload() {
        let bare = meta("debug", &[], None);
        assert_eq!(resolved(&bare), ("debug".into(), WorkloadKind::Pod));
        let mirror = meta("etcd-node-1", &[("Node", "node-1", Some(true))], None);
        assert_eq!(resolved(&mirror), ("etcd-node-1".into(), WorkloadKind::Pod));
        // An owner that is not the controller does not make a workload.
        let not_controller = meta("p", &[("StatefulSet", "db", Some(false))], None);
        assert_eq!(resolved(&not_controller), ("p".into(), WorkloadKind::Pod));
    }

    #[test]
    fn the_controller_owner_wins_over_other_owners() {
        let m = meta(
            "db-0",
            &[
                ("ConfigMap", "settings", Some(false)),
                ("StatefulSet", "db", Some(true)),
            ],
            None,
        );
        assert_eq!(resolved(&m), ("db".into(), WorkloadKind::StatefulSet));
    }

    #[test]
    fn a_custom_controller_names_the_workload_with_kind_pod() {
        let m = meta("clone-x", &[("CloneSet", "clone", Some(true))], None);
        assert_eq!(resolved(&m), ("clone".into(), WorkloadKind::Pod));
    }
}

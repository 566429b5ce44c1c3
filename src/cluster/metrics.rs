//! The cluster's families in the node's metrics registry: members by liveness, whether this
//! node is (or follows) a master, and how often the master changed, read from the live
//! [`ClusterView`] and the membership task's change counter at scrape time; and the sealed
//! gossip transport's counters (datagrams dropped by reason, messages cut, keys loaded, key
//! file reloads). Owns the names and help texts; it changes no cluster state.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use super::seal::Refusal;
use super::transport::GossipSeal;
use super::ClusterView;

/// Registers the cluster's families in `registry`.
pub(super) fn register(
    registry: &mut Registry,
    view: watch::Receiver<ClusterView>,
    master_changes: Arc<AtomicU64>,
    seal: Arc<GossipSeal>,
) {
    registry.register_collector(Box::new(ClusterCollector {
        view,
        master_changes,
        seal,
    }));
}

#[derive(Debug)]
struct ClusterCollector {
    view: watch::Receiver<ClusterView>,
    master_changes: Arc<AtomicU64>,
    seal: Arc<GossipSeal>,
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    labelled: &[(Option<(&str, &str)>, u64)],
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (label, value) in labelled {
        match label {
            Some(label) => ConstCounter::new(*value).encode(family.encode_family(&[*label])?)?,
            None => {
                ConstCounter::new(*value).encode(family.encode_family::<[(&str, &str); 0]>(&[])?)?
            }
        }
    }
    Ok(())
}

impl Collector for ClusterCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (num_members, num_alive, is_master, master_known) = {
            let view = self.view.borrow();
            let num_alive = view.members.iter().filter(|member| member.alive).count();
            (
                view.members.len(),
                num_alive,
                view.is_master(),
                view.master.is_some(),
            )
        };
        let mut members = encoder.encode_descriptor(
            "starling_cluster_members",
            "Cluster members this node knows, by liveness.",
            None,
            MetricType::Gauge,
        )?;
        for (state, count) in [("alive", num_alive), ("dead", num_members - num_alive)] {
            let count = i64::try_from(count).unwrap_or(i64::MAX);
            ConstGauge::new(count).encode(members.encode_family(&[("state", state)])?)?;
        }
        for (name, help, value) in [
            (
                "starling_cluster_is_master",
                "1 while this node is the master.",
                is_master,
            ),
            (
                "starling_cluster_master_known",
                "1 while this node follows a master.",
                master_known,
            ),
        ] {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(i64::from(value)).encode(metric)?;
        }
        let metric = encoder.encode_descriptor(
            "starling_cluster_master_changes",
            "Times the master this node follows changed.",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(self.master_changes.load(Ordering::Relaxed)).encode(metric)?;
        let stats = &self.seal.stats;
        let load = |value: &AtomicU64| value.load(Ordering::Relaxed);
        let dropped: Vec<_> = Refusal::ALL
            .iter()
            .zip(&stats.dropped)
            .map(|(refusal, count)| (Some(("reason", refusal.label())), load(count)))
            .collect();
        counter(
            &mut encoder,
            "starling_gossip_dropped",
            "Gossip datagrams dropped: plaintext (not sealed, and plaintext not accepted), key \
             (no key of the ring opens it), stale (sent outside the replay window), malformed.",
            &dropped,
        )?;
        counter(
            &mut encoder,
            "starling_gossip_cut",
            "Gossip messages sent as several sealed datagrams because one would pass the UDP \
             limit.",
            &[(None, load(&stats.cut))],
        )?;
        counter(
            &mut encoder,
            "starling_gossip_unsendable",
            "Gossip messages not sent because they are too large to seal.",
            &[(None, load(&stats.unsendable))],
        )?;
        counter(
            &mut encoder,
            "starling_gossip_key_reloads",
            "Reloads of the gossip key file, by result (failed: the keys in use stayed).",
            &[
                (Some(("result", "ok")), load(&stats.reloads_ok)),
                (Some(("result", "failed")), load(&stats.reloads_failed)),
            ],
        )?;
        let metric = encoder.encode_descriptor(
            "starling_gossip_keys",
            "Gossip keys loaded (0: gossip is not encrypted).",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::try_from(self.seal.num_keys()).unwrap_or(i64::MAX)).encode(metric)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Member;
    use crate::telemetry::{render, Format};

    fn member(node_id: &str, alive: bool) -> Member {
        Member {
            node_id: node_id.to_owned(),
            generation: 1,
            gossip_addr: "127.0.0.1:7946".parse().unwrap(),
            forward_addr: None,
            api_addr: None,
            priority: 0,
            may_be_master: true,
            alive,
            leaving: false,
            claims_master: false,
            follows: None,
            version: None,
            spool_bytes: None,
            forward_lag: None,
        }
    }

    #[test]
    fn renders_members_by_liveness_mastership_and_changes() {
        let (view_tx, view_rx) = watch::channel(ClusterView {
            self_id: "a".into(),
            members: vec![member("a", true), member("b", true), member("c", false)],
            master: Some("a".into()),
        });
        let changes = Arc::new(AtomicU64::new(2));
        let mut registry = Registry::default();
        let seal = Arc::new(GossipSeal::new(None, false, "c".into()));
        register(&mut registry, view_rx, changes, seal);
        let text = render(&registry, Format::Text);
        crate::testutil::assert_has_lines(
            &text,
            &[
                "# TYPE starling_cluster_members gauge",
                "starling_cluster_members{state=\"alive\"} 2",
                "starling_cluster_members{state=\"dead\"} 1",
                "starling_cluster_is_master 1",
                "starling_cluster_master_known 1",
                "# TYPE starling_cluster_master_changes_total counter",
                "starling_cluster_master_changes_total 2",
                "starling_gossip_dropped_total{reason=\"key\"} 0",
                "starling_gossip_key_reloads_total{result=\"failed\"} 0",
                "starling_gossip_cut_total 0",
                "starling_gossip_keys 0",
            ],
        );
        // Read live: a new view shows at the next scrape.
        view_tx.send_modify(|view| view.master = Some("b".into()));
        let text = render(&registry, Format::Text);
        assert!(
            text.lines().any(|l| l == "starling_cluster_is_master 0"),
            "{text}"
        );
    }
}

//! The catalog: publishing dataset descriptions.

use super::fixture::*;
use medspace_state::TxError;
use medspace_types::*;

fn publish(d: DatasetDescription) -> Payload {
    Payload::PublishDataset(PublishDataset { dataset: d })
}

#[test]
fn stewards_publish_descriptions_with_levels() {
    let net = Net::new();
    let all = net.state.datasets().unwrap();
    assert_eq!(all.len(), 3);
    for h in HOSPITALS {
        let d = net.state.dataset(&dataset_of(h)).unwrap().unwrap();
        assert_eq!(d.owner, mid(h));
        assert_eq!(d.published_height, 1);
        assert_eq!(d.description, dataset_desc(h, 1));
        let desc = &d.description;
        assert_eq!(desc.field_level("person", "year_of_birth"), Some(Level::L2));
        assert_eq!(
            desc.field_level("condition_occurrence", "condition_source_value"),
            Some(Level::L3)
        );
        assert_eq!(desc.field_level("genomics", "hiv_status"), Some(Level::L4));
        assert_eq!(desc.field_level("person", "nope"), None);
    }
}

#[test]
fn republishing_needs_a_higher_version_by_the_owner() {
    let mut net = Net::new();
    let m = net.member("hospital-a");
    // The member key may publish too.
    net.ok(&m, publish(dataset_desc("hospital-a", 2)));
    assert_eq!(
        net.state
            .dataset(&dataset_of("hospital-a"))
            .unwrap()
            .unwrap()
            .description
            .version,
        2
    );
    for v in [1, 2] {
        let err = net.refuse(&m, publish(dataset_desc("hospital-a", v)));
        assert!(
            matches!(
                err,
                TxError::Invalid {
                    field: "version",
                    ..
                }
            ),
            "{err:?}"
        );
    }
    // Another hospital's steward cannot overwrite it.
    let s = net.user(&steward("hospital-b"));
    let err = net.refuse(&s, publish(dataset_desc("hospital-a", 3)));
    assert!(matches!(err, TxError::Forbidden { .. }), "{err:?}");
    let k = net.member("hospital-b");
    assert!(matches!(
        net.refuse(&k, publish(dataset_desc("hospital-a", 3))),
        TxError::Forbidden { .. }
    ));
}

#[test]
fn publish_refusals() {
    let mut net = Net::new();
    // Wrong role: clinicians, committees and researchers do not publish.
    for u in [
        clinician("hospital-a"),
        dc("hospital-a"),
        RESEARCHER.to_string(),
    ] {
        let k = net.user(&u);
        let err = net.refuse(&k, publish(dataset_desc("hospital-a", 5)));
        assert!(
            matches!(
                err,
                TxError::WrongRole {
                    kind: "publish_dataset",
                    ..
                }
            ),
            "{u}: {err:?}"
        );
    }
    let p = net.patient(0);
    let err = net.refuse(&p, publish(dataset_desc("hospital-a", 5)));
    assert!(matches!(err, TxError::WrongSigner { .. }));
    let s = net.user(&steward("hospital-a"));
    let mut d = dataset_desc("hospital-a", 5);
    d.tables = List::default();
    let err = net.refuse(&s, publish(d));
    assert!(matches!(
        err,
        TxError::Invalid {
            field: "tables",
            ..
        }
    ));
    let mut d = dataset_desc("hospital-a", 5);
    d.tables = list(vec![table_desc("person", 1, vec![])]);
    let err = net.refuse(&s, publish(d));
    assert!(matches!(
        err,
        TxError::Invalid {
            field: "fields",
            ..
        }
    ));
    let mut d = dataset_desc("hospital-a", 5);
    let mut f = field_desc("year_of_birth", Level::L2);
    f.missing_ppm = 1_000_001;
    d.tables = list(vec![table_desc("person", 1, vec![f])]);
    let err = net.refuse(&s, publish(d));
    assert!(matches!(
        err,
        TxError::Invalid {
            field: "quality",
            ..
        }
    ));
    // A new dataset by a steward is fine.
    let mut d = dataset_desc("hospital-a", 1);
    d.id = did("hospital-a.registry");
    net.ok(&s, publish(d));
    assert_eq!(net.state.datasets().unwrap().len(), 4);
}

//! Store tests against real RocksDB in temporary directories.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use libp2p::{
    PeerId,
    identity::Keypair,
    kad::{ProviderRecord, Record, RecordKey, store::RecordStore},
};
use proptest::prelude::*;

use crate::{Error, KadStore, Limits, Store, ownership};

fn open(dir: &std::path::Path) -> KadStore {
    KadStore::new(
        Store::open(dir, Limits::default()).unwrap(),
        PeerId::random(),
    )
}

fn chunk(data: &[u8], expires: Option<Instant>) -> Record {
    Record {
        key: RecordKey::from(ownership::chunk_key(data)),
        value: data.to_vec(),
        publisher: None,
        expires,
    }
}

#[test]
fn records_round_trip_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let owner = Keypair::generate_ed25519();
    let (key, value) = ownership::sign(&owner, "minutes", b"meeting at 7".to_vec()).unwrap();
    let record = Record {
        key: RecordKey::from(key.clone()),
        value: value.clone(),
        publisher: Some(owner.public().to_peer_id()),
        expires: None,
    };
    {
        let mut s = open(dir.path());
        s.put(record.clone()).unwrap();
        assert_eq!(s.get(&record.key).unwrap().into_owned(), record);
    }
    let s = open(dir.path());
    let back = s
        .get(&RecordKey::from(key.clone()))
        .expect("survives a restart")
        .into_owned();
    assert_eq!(back.value, value);
    assert_eq!(back.publisher, record.publisher);
    assert_eq!(
        ownership::open_owned(&key, &back.value).unwrap(),
        b"meeting at 7"
    );
    assert_eq!(s.records().count(), 1);
}

#[test]
fn expiry_is_wall_clock_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let soon = chunk(b"soon", Some(Instant::now() + Duration::from_millis(300)));
    let later = chunk(b"later", Some(Instant::now() + Duration::from_secs(3600)));
    {
        let mut s = open(dir.path());
        s.put(soon.clone()).unwrap();
        s.put(later.clone()).unwrap();
        assert!(s.get(&soon.key).is_some());
    }
    std::thread::sleep(Duration::from_millis(500));
    let s = open(dir.path());
    assert!(
        s.get(&soon.key).is_none(),
        "expired while the node was down"
    );
    let back = s.get(&later.key).expect("not expired").into_owned();
    let left = back.expires.expect("has an expiry") - Instant::now();
    assert!(
        left > Duration::from_secs(3500) && left <= Duration::from_secs(3600),
        "{left:?}"
    );
}

#[test]
fn provider_records_are_kept_per_key() {
    let dir = tempfile::tempdir().unwrap();
    let local = PeerId::random();
    let mut s = KadStore::new(Store::open(dir.path(), Limits::default()).unwrap(), local);
    let key = RecordKey::new(&b"org-a");
    let other_key = RecordKey::new(&b"org-ab");
    let peers = [local, PeerId::random(), PeerId::random()];
    for p in peers {
        s.add_provider(ProviderRecord {
            key: key.clone(),
            provider: p,
            expires: None,
            addresses: vec!["/ip4/10.0.0.1/tcp/4747".parse().unwrap()],
        })
        .unwrap();
    }
    s.add_provider(ProviderRecord::new(
        other_key.clone(),
        PeerId::random(),
        vec![],
    ))
    .unwrap();
    let mut found: Vec<PeerId> = s.providers(&key).into_iter().map(|p| p.provider).collect();
    found.sort();
    let mut expected = peers.to_vec();
    expected.sort();
    assert_eq!(found, expected);
    assert_eq!(s.providers(&other_key).len(), 1);
    assert_eq!(s.provided().count(), 1, "only our own");
    s.remove_provider(&key, &peers[1]);
    assert_eq!(s.providers(&key).len(), 2);
    assert_eq!(s.providers(&key)[0].addresses.len(), 1);
}

#[test]
fn quota_and_size_limits_refuse_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        quota_bytes: 4096,
        max_record_bytes: 1024,
        max_message_bytes: 1024,
    };
    let mut s = KadStore::new(Store::open(dir.path(), limits).unwrap(), PeerId::random());
    let big = vec![7u8; 2000];
    assert!(matches!(
        s.put_record(chunk(&big, None)),
        Err(Error::TooLarge {
            len: 2000,
            max: 1024
        })
    ));
    let mut stored = 0;
    let err = loop {
        let data = vec![stored as u8; 900];
        match s.put_record(chunk(&data, None)) {
            Ok(()) => stored += 1,
            Err(e) => break e,
        }
    };
    assert!(
        matches!(err, Error::QuotaExceeded { quota: 4096, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("store is full"));
    assert!(stored >= 3);
    assert!(s.store_opt().unwrap().used_bytes() <= 4096);
    // Overwriting with the same data does not grow the count.
    let before = s.store_opt().unwrap().used_bytes();
    s.put_record(chunk(&[0u8; 900], None)).unwrap();
    assert_eq!(s.store_opt().unwrap().used_bytes(), before);
    // The count survives a restart.
    drop(s);
    let s = KadStore::new(
        Store::open(dir.path(), Limits::default()).unwrap(),
        PeerId::random(),
    );
    assert_eq!(s.store_opt().unwrap().used_bytes(), before);
}

#[test]
fn records_of_others_cannot_be_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path());
    let owner = Keypair::generate_ed25519();
    let (key, value) = ownership::sign(&owner, "x", b"mine".to_vec()).unwrap();
    s.put_record(Record::new(key.clone(), value.clone()))
        .unwrap();
    let thief = Keypair::generate_ed25519();
    let (_, forged) = ownership::sign(&thief, "x", b"theirs".to_vec()).unwrap();
    assert!(matches!(
        s.put_record(Record::new(key.clone(), forged)),
        Err(Error::NotOwner(_))
    ));
    assert!(matches!(
        s.put_record(Record::new(b"/random".to_vec(), b"x".to_vec())),
        Err(Error::NotOwner(_))
    ));
    assert_eq!(
        s.get_record(&RecordKey::from(key)).unwrap().unwrap().value,
        value
    );
}

#[test]
fn a_disabled_or_opted_out_store_accepts_nothing() {
    let mut off = KadStore::disabled(PeerId::random());
    assert!(matches!(
        off.put_record(chunk(b"x", None)),
        Err(Error::Disabled)
    ));
    assert!(
        off.get(&RecordKey::from(ownership::chunk_key(b"x")))
            .is_none()
    );
    assert_eq!(off.records().count(), 0);
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path());
    s.put(chunk(b"kept", None)).unwrap();
    s.set_accepting(false);
    assert!(s.put(chunk(b"new", None)).is_err());
    assert!(
        s.get(&RecordKey::from(ownership::chunk_key(b"kept")))
            .is_some(),
        "existing data is kept"
    );
}

#[test]
fn a_corrupt_database_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = open(dir.path());
        s.put(chunk(b"data", None)).unwrap();
    }
    // Damage every table and log file.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("MANIFEST") || name == "CURRENT" {
            std::fs::write(&path, b"\x00garbage\xff").unwrap();
        }
    }
    let err = Store::open(dir.path(), Limits::default()).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, Error::Corrupt(..) | Error::Db(_)),
        "unexpected error {text}"
    );
    assert!(!text.contains('\n'));
}

#[test]
fn an_incompatible_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Store::open(dir.path(), Limits::default()).unwrap();
        let meta = s.cf(crate::db::CF_META).unwrap();
        s.db()
            .put_cf(&meta, b"schema_version", 99u32.to_be_bytes())
            .unwrap();
    }
    let err = Store::open(dir.path(), Limits::default()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::IncompatibleSchema {
                found: 99,
                expected: 1,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn the_message_log_orders_dedups_and_pages() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(dir.path(), Limits::default()).unwrap();
    // Arrive out of order.
    for (ts, n) in [(30u64, 3u8), (10, 1), (20, 2), (40, 4)] {
        assert!(s.append_message("org", ts, [n; 16], 1, &[n; 10]).unwrap());
    }
    assert!(
        !s.append_message("org", 10, [1; 16], 1, &[1; 10]).unwrap(),
        "duplicate id"
    );
    assert!(
        s.append_message("org2", 10, [1; 16], 1, &[1; 10]).unwrap(),
        "same id, other org"
    );
    let all = s.history("org", 0, 100).unwrap();
    assert_eq!(
        all.iter().map(|m| m.sent_at_ms).collect::<Vec<_>>(),
        [10, 20, 30, 40]
    );
    let page = s.history("org", 20, 2).unwrap();
    assert_eq!(page.iter().map(|m| m.id[0]).collect::<Vec<_>>(), [2, 3]);
    assert_eq!(page[0].envelope, [2; 10]);
    assert_eq!(page[0].received_at_ms, 1);
    assert!(s.has_message("org", [4; 16]).unwrap());
    assert!(s.history("org-none", 0, 10).unwrap().is_empty());
    drop(s);
    let s = Store::open(dir.path(), Limits::default()).unwrap();
    assert_eq!(
        s.history("org", 0, 100).unwrap().len(),
        4,
        "survives a restart"
    );
    assert_eq!(s.stats().unwrap().messages, 5);
}

#[test]
fn the_catch_up_watermark_only_moves_forward_and_is_purged() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(dir.path(), Limits::default()).unwrap();
    assert_eq!(s.history_synced_ms("org").unwrap(), 0, "never caught up");
    s.advance_history_synced("org", 500).unwrap();
    s.advance_history_synced("org", 300).unwrap();
    s.advance_history_synced("org2", 7).unwrap();
    assert_eq!(s.history_synced_ms("org").unwrap(), 500, "never moves back");
    assert_eq!(s.history_synced_ms("org2").unwrap(), 7, "per org");
    assert!(matches!(
        s.advance_history_synced("", 1),
        Err(crate::Error::BadOrg(_))
    ));
    drop(s);
    let mut s = Store::open(dir.path(), Limits::default()).unwrap();
    assert_eq!(
        s.history_synced_ms("org").unwrap(),
        500,
        "survives a restart"
    );
    s.purge().unwrap();
    assert_eq!(
        s.history_synced_ms("org").unwrap(),
        0,
        "purged with the log"
    );
    assert_eq!(
        s.history_synced_ms("org2").unwrap(),
        0,
        "purged with the log"
    );
}

fn files_contain(dir: &std::path::Path, marker: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().any(|entry| {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap_or_default();
        bytes.windows(marker.len()).any(|w| w == marker)
    })
}

#[test]
fn purge_removes_the_bytes_from_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let marker = b"MARKER-7f3a9c-purge-me";
    let mut s = open(dir.path());
    for i in 0..200u32 {
        let mut data = marker.to_vec();
        data.extend_from_slice(&i.to_be_bytes());
        s.put_record(chunk(&data, None)).unwrap();
        s.store_opt_mut()
            .unwrap()
            .append_message("org", i as u64, [i as u8; 16], 1, &data)
            .unwrap();
    }
    s.store_opt().unwrap().db().flush().unwrap();
    assert!(
        files_contain(dir.path(), marker),
        "the marker is on disk before the purge"
    );
    s.store_opt_mut().unwrap().purge().unwrap();
    assert_eq!(s.store_opt().unwrap().used_bytes(), 0);
    assert_eq!(s.store_opt().unwrap().stats().unwrap().records, 0);
    assert!(
        !files_contain(dir.path(), marker),
        "purge must remove the bytes, not hide them"
    );
    drop(s);
    let s = open(dir.path());
    assert!(
        s.store_opt()
            .unwrap()
            .history("org", 0, 10)
            .unwrap()
            .is_empty()
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// The store behaves like a map of chunk records, across restarts.
    #[test]
    fn matches_a_model(ops in proptest::collection::vec((0u8..8, any::<bool>(), any::<bool>()), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let mut s = open(dir.path());
        for (n, insert, restart) in ops {
            let data = vec![n; 10 + n as usize];
            let record = chunk(&data, None);
            if insert {
                s.put(record.clone()).unwrap();
                model.insert(record.key.to_vec(), data);
            } else {
                s.remove(&record.key);
                model.remove(&record.key.to_vec());
            }
            if restart {
                drop(s);
                s = open(dir.path());
            }
            let mut got: Vec<(Vec<u8>, Vec<u8>)> = s.records().map(|r| (r.key.to_vec(), r.value.clone())).collect();
            got.sort();
            let want: Vec<(Vec<u8>, Vec<u8>)> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            prop_assert_eq!(got, want);
        }
    }
}

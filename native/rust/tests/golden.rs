//! The golden vectors of `native/testdata/`, written by the Python twins
//! (`python -m tests.native.golden`) and checked here against the Rust core.

use std::fs;
use std::path::PathBuf;

use sandcat_native::fanout::plan;
use sandcat_native::shard::{
    check_partitions, check_shards, collection_name, hash, month_of, partition_of, shard_of,
};

fn testdata(name: &str) -> String {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "..", "testdata", name]
        .iter()
        .collect();
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn shard_vectors() {
    let data = testdata("shard.tsv");
    let mut lines = data.lines();
    assert_eq!(
        lines.next(),
        Some("user_id_hex\txxh3_64\tuser_shards\tshard\tsend_time_ms\tmonth\tcollection\tpartitions\tpartition")
    );
    let mut count = 0;
    for line in lines {
        let cells: Vec<&str> = line.split('\t').collect();
        let id = unhex(cells[0]);
        let int = |i: usize| cells[i].parse::<i64>().expect("integer");
        assert_eq!(hash(&id).to_string(), cells[1], "{line}");
        let shards = check_shards(int(2)).expect("user_shards");
        let shard = shard_of(&id, shards);
        assert_eq!(shard as i64, int(3), "{line}");
        let month = month_of(int(4)).expect("send_time");
        assert_eq!(month, int(5), "{line}");
        assert_eq!(collection_name(month, shard), cells[6], "{line}");
        let partitions = check_partitions(int(7)).expect("partitions");
        assert_eq!(
            partition_of(&id, partitions).to_string(),
            cells[8],
            "{line}"
        );
        count += 1;
    }
    assert!(count >= 50, "only {count} shard vectors");
}

type Pairs = Vec<(String, i64)>;

fn pairs(cells: &[&str]) -> Pairs {
    cells
        .iter()
        .map(|cell| {
            let (id, seq) = cell.rsplit_once(':').expect("id:seq");
            (id.to_owned(), seq.parse().expect("seq"))
        })
        .collect()
}

fn owned(batches: Vec<(&str, Vec<(&str, i64)>)>) -> Vec<(String, Pairs)> {
    batches
        .into_iter()
        .map(|(key, items)| {
            let items = items.into_iter().map(|(id, seq)| (id.to_owned(), seq));
            (key.to_owned(), items.collect())
        })
        .collect()
}

struct Case {
    month: i64,
    shards: i64,
    recipients: Vec<(String, i64, Option<String>)>,
    pushes: Vec<(String, Pairs)>,
    inbox: Vec<(String, Pairs)>,
}

#[test]
fn fanout_vectors() {
    let data = testdata("fanout.txt");
    let mut cases = Vec::new();
    let mut case: Option<Case> = None;
    for line in data.lines() {
        let cells: Vec<&str> = line.split_whitespace().collect();
        match cells[0] {
            "case" => {
                case = Some(Case {
                    month: cells[1].parse().expect("month"),
                    shards: cells[2].parse().expect("user_shards"),
                    recipients: Vec::new(),
                    pushes: Vec::new(),
                    inbox: Vec::new(),
                })
            }
            "end" => cases.push(case.take().expect("case")),
            kind => {
                let case = case.as_mut().expect("case");
                match kind {
                    "r" => case.recipients.push((
                        cells[1].to_owned(),
                        cells[2].parse().expect("seq"),
                        (cells[3] != "-").then(|| cells[3].to_owned()),
                    )),
                    "push" => case.pushes.push((cells[1].to_owned(), pairs(&cells[2..]))),
                    "inbox" => case.inbox.push((cells[1].to_owned(), pairs(&cells[2..]))),
                    other => panic!("unknown line kind {other}"),
                }
            }
        }
    }
    assert!(cases.len() >= 4, "only {} fan-out vectors", cases.len());
    for case in cases {
        let input: Vec<(&str, i64, Option<&str>)> = case
            .recipients
            .iter()
            .map(|(id, seq, gw)| (id.as_str(), *seq, gw.as_deref()))
            .collect();
        let got = plan(&input, case.month, case.shards).expect("valid case");
        assert_eq!(owned(got.pushes), case.pushes);
        let inbox: Vec<(String, Pairs)> = got
            .inbox
            .into_iter()
            .map(|(name, items)| {
                let items = items.into_iter().map(|(id, seq)| (id.to_owned(), seq));
                (name, items.collect())
            })
            .collect();
        assert_eq!(inbox, case.inbox);
    }
}

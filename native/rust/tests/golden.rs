//! The golden vectors of `native/testdata/`, written by the Python twins
//! (`python -m tests.native.golden`) and checked here against the Rust core.

use std::fs;
use std::path::PathBuf;

use sandcat_native::shard::{
    check_partitions, check_shards, collection_name, hash, month_of, partition_of, shard_of,
};

fn testdata(name: &str) -> String {
    // The crate's directory when the test runs, not when it was built: `make test` shares
    // one cargo target directory between clones (~/.cache/sandcat/cargo-target), and a
    // test binary cargo reuses from a clone elsewhere would look for that clone's files.
    let root = std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR");
    let path: PathBuf = [root.as_str(), "..", "testdata", name].iter().collect();
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

//! Shard keys under hybrid sharding (decisions §3), the twin of `sandcat/_native/shard.py`.
//!
//! shard = xxh3-64(UTF-8 user id) mod `user_shards`; month = UTC month of `send_time` (ms);
//! inbox collection = `msg_box_{YYYYMM}_{shard:02}`; Kafka partition = xxh3-64(key) mod partitions.

use xxhash_rust::xxh3::xxh3_64;

/// Largest `user_shards` accepted (shard numbers are kept per call in a table this size).
pub const MAX_USER_SHARDS: i64 = 65_536;
/// Largest Kafka partition count accepted.
pub const MAX_PARTITIONS: i64 = 2_147_483_647;
/// Last millisecond of 9999-12-31 UTC: the latest `send_time` with a four-digit year.
pub const MAX_SEND_TIME_MS: i64 = 253_402_300_799_999;
const MS_PER_DAY: i64 = 86_400_000;

/// An argument outside its documented range; the message is the one the Python twin raises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeError(pub &'static str);

pub const BAD_SHARDS: RangeError = RangeError("user_shards must be between 1 and 65536");
pub const BAD_SHARD: RangeError = RangeError("shard must be between 0 and 65535");
pub const BAD_PARTITIONS: RangeError = RangeError("partitions must be between 1 and 2147483647");
pub const BAD_SEND_TIME: RangeError =
    RangeError("send_time must be between 0 and 253402300799999 ms");
pub const BAD_MONTH: RangeError = RangeError("month must be YYYYMM with a year from 1970 to 9999");

/// xxh3-64 with seed 0, as the `xxhash` Python package computes it.
pub fn hash(data: &[u8]) -> u64 {
    xxh3_64(data)
}

pub fn check_shards(user_shards: i64) -> Result<u64, RangeError> {
    if (1..=MAX_USER_SHARDS).contains(&user_shards) {
        Ok(user_shards as u64)
    } else {
        Err(BAD_SHARDS)
    }
}

pub fn check_partitions(partitions: i64) -> Result<u64, RangeError> {
    if (1..=MAX_PARTITIONS).contains(&partitions) {
        Ok(partitions as u64)
    } else {
        Err(BAD_PARTITIONS)
    }
}

pub fn check_shard(shard: i64) -> Result<u64, RangeError> {
    if (0..MAX_USER_SHARDS).contains(&shard) {
        Ok(shard as u64)
    } else {
        Err(BAD_SHARD)
    }
}

/// `YYYYMM` must name a real month of the years 1970..=9999.
pub fn check_month(month: i64) -> Result<i64, RangeError> {
    let (year, m) = (month / 100, month % 100);
    if (1970..=9999).contains(&year) && (1..=12).contains(&m) {
        Ok(month)
    } else {
        Err(BAD_MONTH)
    }
}

/// The inbox shard of a user id (UTF-8 bytes); `user_shards` already checked.
pub fn shard_of(user_id: &[u8], user_shards: u64) -> u64 {
    hash(user_id) % user_shards
}

/// The Kafka partition of a key (UTF-8 bytes); `partitions` already checked.
pub fn partition_of(key: &[u8], partitions: u64) -> u64 {
    hash(key) % partitions
}

/// UTC month of a millisecond timestamp as `YYYYMM` (days-to-civil, H. Hinnant).
pub fn month_of(send_time_ms: i64) -> Result<i64, RangeError> {
    if !(0..=MAX_SEND_TIME_MS).contains(&send_time_ms) {
        return Err(BAD_SEND_TIME);
    }
    let z = send_time_ms / MS_PER_DAY + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    Ok(year * 100 + month)
}

/// The inbox collection of one shard in one month: `msg_box_{YYYYMM}_{shard:02}`.
pub fn collection_name(month: i64, shard: u64) -> String {
    format!("msg_box_{month}_{shard:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_at_the_edges() {
        assert_eq!(month_of(0), Ok(197_001));
        assert_eq!(month_of(951_868_800_000 - 1), Ok(200_002)); // 2000-02-29T23:59:59.999
        assert_eq!(month_of(951_868_800_000), Ok(200_003));
        assert_eq!(month_of(MAX_SEND_TIME_MS), Ok(999_912));
        assert_eq!(month_of(-1), Err(BAD_SEND_TIME));
        assert_eq!(month_of(MAX_SEND_TIME_MS + 1), Err(BAD_SEND_TIME));
    }

    #[test]
    fn argument_ranges() {
        assert_eq!(check_shards(0), Err(BAD_SHARDS));
        assert_eq!(check_shards(MAX_USER_SHARDS), Ok(65_536));
        assert_eq!(check_partitions(0), Err(BAD_PARTITIONS));
        assert_eq!(check_month(202_413), Err(BAD_MONTH));
        assert_eq!(check_month(196_912), Err(BAD_MONTH));
        assert_eq!(check_month(202_401), Ok(202_401));
    }

    #[test]
    fn collection_names_pad_the_shard() {
        assert_eq!(collection_name(202_405, 3), "msg_box_202405_03");
        assert_eq!(collection_name(202_405, 123), "msg_box_202405_123");
    }
}

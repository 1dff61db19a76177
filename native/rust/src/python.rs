//! The `sandcat_native` Python module (pyo3). Signatures, defaults, errors and results are
//! those of the pure-Python twins `sandcat/_native/shard.py` and `sandcat/_native/fanout.py`.

use std::hash::{Hash, Hasher};

use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyInt, PyList, PyString, PyTuple};

use crate::fanout::Planner;
use crate::shard::{self, RangeError};

const DEFAULT_USER_SHARDS: i64 = 10;
const BAD_RECIPIENT: &str = "a recipient is a (str, int) pair";
const BAD_GATEWAY: &str = "a gateway id is a str or None";

fn range_error(err: RangeError) -> PyErr {
    PyValueError::new_err(err.0)
}

/// An integer argument checked against its range; too large for i64 is out of range too.
fn int_arg<T>(
    py: Python<'_>,
    value: &Bound<'_, PyAny>,
    check: fn(i64) -> Result<T, RangeError>,
    err: RangeError,
) -> PyResult<T> {
    if !value.is_instance_of::<PyInt>() {
        return Err(PyTypeError::new_err(err.0));
    }
    match value.extract::<i64>() {
        Ok(v) => check(v).map_err(range_error),
        Err(e) if e.is_instance_of::<PyOverflowError>(py) => Err(range_error(err)),
        Err(e) => Err(e),
    }
}

/// The default of every `user_shards` argument.
fn default_shards() -> Py<PyAny> {
    Python::with_gil(|py| {
        let Ok(value) = DEFAULT_USER_SHARDS.into_pyobject(py);
        value.into_any().unbind()
    })
}

/// Calls `each` with the UTF-8 bytes of every str in `ids` (a list, tuple or any iterable).
fn for_each_id(ids: &Bound<'_, PyAny>, mut each: impl FnMut(&[u8])) -> PyResult<()> {
    let mut one = |item: Bound<'_, PyAny>| -> PyResult<()> {
        each(item.downcast::<PyString>()?.to_str()?.as_bytes());
        Ok(())
    };
    if let Ok(list) = ids.downcast::<PyList>() {
        list.iter().try_for_each(&mut one)
    } else if let Ok(tuple) = ids.downcast::<PyTuple>() {
        tuple.iter().try_for_each(&mut one)
    } else {
        ids.try_iter()?.try_for_each(|item| one(item?))
    }
}

/// xxh3-64 (seed 0) of some bytes.
#[pyfunction]
fn xxh3_64(data: &[u8]) -> u64 {
    shard::hash(data)
}

/// UTC month of a millisecond timestamp, as the integer `YYYYMM`.
#[pyfunction]
fn month_of(py: Python<'_>, send_time_ms: &Bound<'_, PyAny>) -> PyResult<i64> {
    int_arg(py, send_time_ms, shard::month_of, shard::BAD_SEND_TIME)
}

/// `msg_box_{YYYYMM}_{shard:02d}`.
#[pyfunction]
fn collection_name(
    py: Python<'_>,
    month: &Bound<'_, PyAny>,
    shard: &Bound<'_, PyAny>,
) -> PyResult<String> {
    let month = int_arg(py, month, shard::check_month, shard::BAD_MONTH)?;
    let shard = int_arg(py, shard, shard::check_shard, shard::BAD_SHARD)?;
    Ok(shard::collection_name(month, shard))
}

/// xxh3-64 of the UTF-8 user id mod `user_shards`.
#[pyfunction]
#[pyo3(
    signature = (user_id, user_shards = default_shards()),
    text_signature = "(user_id, user_shards=10)"
)]
fn shard_of(py: Python<'_>, user_id: &str, user_shards: Py<PyAny>) -> PyResult<u64> {
    let shards = int_arg(
        py,
        user_shards.bind(py),
        shard::check_shards,
        shard::BAD_SHARDS,
    )?;
    Ok(shard::shard_of(user_id.as_bytes(), shards))
}

/// The inbox collection holding `user_id`'s copy of a message sent at `send_time_ms`.
#[pyfunction]
#[pyo3(
    signature = (user_id, send_time_ms, user_shards = default_shards()),
    text_signature = "(user_id, send_time_ms, user_shards=10)"
)]
fn inbox_collection(
    py: Python<'_>,
    user_id: &str,
    send_time_ms: &Bound<'_, PyAny>,
    user_shards: Py<PyAny>,
) -> PyResult<String> {
    let month = int_arg(py, send_time_ms, shard::month_of, shard::BAD_SEND_TIME)?;
    let shards = int_arg(
        py,
        user_shards.bind(py),
        shard::check_shards,
        shard::BAD_SHARDS,
    )?;
    Ok(shard::collection_name(
        month,
        shard::shard_of(user_id.as_bytes(), shards),
    ))
}

/// xxh3-64 of the UTF-8 key mod `partitions`.
#[pyfunction]
fn partition_of(py: Python<'_>, key: &str, partitions: &Bound<'_, PyAny>) -> PyResult<u64> {
    let partitions = int_arg(
        py,
        partitions,
        shard::check_partitions,
        shard::BAD_PARTITIONS,
    )?;
    Ok(shard::partition_of(key.as_bytes(), partitions))
}

/// `shard_of` for many ids in one call.
#[pyfunction]
#[pyo3(
    signature = (user_ids, user_shards = default_shards()),
    text_signature = "(user_ids, user_shards=10)"
)]
fn shard_batch<'py>(
    py: Python<'py>,
    user_ids: &Bound<'py, PyAny>,
    user_shards: Py<PyAny>,
) -> PyResult<Bound<'py, PyList>> {
    let shards = int_arg(
        py,
        user_shards.bind(py),
        shard::check_shards,
        shard::BAD_SHARDS,
    )?;
    let mut out = Vec::with_capacity(user_ids.len().unwrap_or(0));
    for_each_id(user_ids, |id| out.push(shard::shard_of(id, shards)))?;
    PyList::new(py, out)
}

/// `partition_of` for many keys in one call.
#[pyfunction]
fn partition_batch<'py>(
    py: Python<'py>,
    keys: &Bound<'py, PyAny>,
    partitions: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyList>> {
    let partitions = int_arg(
        py,
        partitions,
        shard::check_partitions,
        shard::BAD_PARTITIONS,
    )?;
    let mut out = Vec::with_capacity(keys.len().unwrap_or(0));
    for_each_id(keys, |key| out.push(shard::partition_of(key, partitions)))?;
    PyList::new(py, out)
}

/// `inbox_collection` for many ids (one send time) in one call; equal names are one object.
#[pyfunction]
#[pyo3(
    signature = (user_ids, send_time_ms, user_shards = default_shards()),
    text_signature = "(user_ids, send_time_ms, user_shards=10)"
)]
fn inbox_collection_batch<'py>(
    py: Python<'py>,
    user_ids: &Bound<'py, PyAny>,
    send_time_ms: &Bound<'py, PyAny>,
    user_shards: Py<PyAny>,
) -> PyResult<Bound<'py, PyList>> {
    let month = int_arg(py, send_time_ms, shard::month_of, shard::BAD_SEND_TIME)?;
    let shards = int_arg(
        py,
        user_shards.bind(py),
        shard::check_shards,
        shard::BAD_SHARDS,
    )?;
    let mut names: Vec<Option<Bound<'py, PyString>>> = vec![None; shards as usize];
    let mut out = Vec::with_capacity(user_ids.len().unwrap_or(0));
    for_each_id(user_ids, |id| {
        let shard = shard::shard_of(id, shards);
        let name = names[shard as usize]
            .get_or_insert_with(|| PyString::new(py, &shard::collection_name(month, shard)));
        out.push(name.clone());
    })?;
    PyList::new(py, out)
}

/// A gateway id, compared by value, hashed once.
#[derive(Clone)]
struct Gateway<'py> {
    hash: u64,
    id: Bound<'py, PyString>,
}

impl Hash for Gateway<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl PartialEq for Gateway<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.id.is(&other.id)
            || (self.hash == other.hash && self.id.to_str().ok() == other.id.to_str().ok())
    }
}

impl Eq for Gateway<'_> {}

/// Per-gateway push batches and per-collection inbox batches of one message's recipients.
#[pyfunction]
#[pyo3(
    signature = (recipients, gateways, month, user_shards = default_shards()),
    text_signature = "(recipients, gateways, month, user_shards=10)"
)]
fn plan_fanout<'py>(
    py: Python<'py>,
    recipients: &Bound<'py, PyAny>,
    gateways: &Bound<'py, PyAny>,
    month: &Bound<'py, PyAny>,
    user_shards: Py<PyAny>,
) -> PyResult<(Bound<'py, PyDict>, Bound<'py, PyDict>)> {
    let month = int_arg(py, month, shard::check_month, shard::BAD_MONTH)?;
    let shards = int_arg(
        py,
        user_shards.bind(py),
        shard::check_shards,
        shard::BAD_SHARDS,
    )?;
    let mut planner = Planner::new(month, shards as i64).map_err(range_error)?;
    let presence = gateways.downcast_exact::<PyDict>().ok();
    let mut one = |item: Bound<'py, PyAny>| -> PyResult<()> {
        let pair = match item.downcast::<PyTuple>() {
            Ok(pair) if pair.len() == 2 => pair,
            _ => return Err(PyTypeError::new_err(BAD_RECIPIENT)),
        };
        let rid = pair.get_item(0)?;
        let Ok(rid) = rid.downcast_into::<PyString>() else {
            return Err(PyTypeError::new_err(BAD_RECIPIENT));
        };
        if !pair.get_item(1)?.is_instance_of::<PyInt>() {
            return Err(PyTypeError::new_err(BAD_RECIPIENT));
        }
        let gateway = match presence {
            Some(dict) => dict.get_item(&rid)?,
            None => Some(gateways.call_method1("get", (&rid,))?),
        };
        let gateway = match gateway {
            Some(gw) if !gw.is_none() => {
                let Ok(id) = gw.downcast_into::<PyString>() else {
                    return Err(PyTypeError::new_err(BAD_GATEWAY));
                };
                Some(Gateway {
                    hash: shard::hash(id.to_str()?.as_bytes()),
                    id,
                })
            }
            _ => None,
        };
        planner.add(rid.to_str()?.as_bytes(), gateway, item);
        Ok(())
    };
    if let Ok(list) = recipients.downcast::<PyList>() {
        list.iter().try_for_each(&mut one)?;
    } else {
        recipients.try_iter()?.try_for_each(|item| one(item?))?;
    }
    let plan = planner.finish();
    let pushes = PyDict::new(py);
    for (gateway, entries) in plan.pushes {
        pushes.set_item(gateway.id, PyList::new(py, entries)?)?;
    }
    let inbox = PyDict::new(py);
    for (name, entries) in plan.inbox {
        inbox.set_item(name, PyList::new(py, entries)?)?;
    }
    Ok((pushes, inbox))
}

#[pymodule]
fn sandcat_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("DEFAULT_USER_SHARDS", DEFAULT_USER_SHARDS)?;
    m.add_function(wrap_pyfunction!(xxh3_64, m)?)?;
    m.add_function(wrap_pyfunction!(month_of, m)?)?;
    m.add_function(wrap_pyfunction!(collection_name, m)?)?;
    m.add_function(wrap_pyfunction!(shard_of, m)?)?;
    m.add_function(wrap_pyfunction!(inbox_collection, m)?)?;
    m.add_function(wrap_pyfunction!(partition_of, m)?)?;
    m.add_function(wrap_pyfunction!(shard_batch, m)?)?;
    m.add_function(wrap_pyfunction!(partition_batch, m)?)?;
    m.add_function(wrap_pyfunction!(inbox_collection_batch, m)?)?;
    m.add_function(wrap_pyfunction!(plan_fanout, m)?)?;
    Ok(())
}

//! The `sandcat_native` Python module (pyo3). Signatures, defaults, errors and results are
//! those of the pure-Python twin `sandcat/_native/shard.py`.

use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyInt, PyList, PyString, PyTuple};

use crate::shard::{self, RangeError};

const DEFAULT_USER_SHARDS: i64 = 10;

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

/// The inbox collection of each user id's copy of a message sent at `send_time_ms`, in one
/// call; equal names are one object.
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

#[pymodule]
fn sandcat_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("DEFAULT_USER_SHARDS", DEFAULT_USER_SHARDS)?;
    m.add_function(wrap_pyfunction!(month_of, m)?)?;
    m.add_function(wrap_pyfunction!(collection_name, m)?)?;
    m.add_function(wrap_pyfunction!(shard_of, m)?)?;
    m.add_function(wrap_pyfunction!(partition_of, m)?)?;
    m.add_function(wrap_pyfunction!(inbox_collection_batch, m)?)?;
    Ok(())
}

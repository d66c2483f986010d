//! The Python bindings: thin wrappers over the engine. Ergonomics live in the Python facade
//! (`python/dynamic_streams`); here arguments are converted ([`convert`]), calls meet their
//! runtime ([`runtime`]), and engine errors become the facade's exceptions ([`errors`]).
//! The classes: [`filter`], [`event`], [`store`], [`reading`].

// PyO3 extracts arguments as owned values; borrowing them is not an option here.
#![allow(clippy::needless_pass_by_value)]

mod convert;
mod errors;
mod event;
mod filter;
mod json;
mod reading;
mod runtime;
mod store;

use pyo3::prelude::*;

use crate::table::TableName;
use errors::OrRaise;

/// The extension's own allocations (rows, decoded events; Python's objects are the
/// interpreter's) come from mimalloc. Reads allocate and free a page's worth of small blocks
/// at a time, which the C library's allocator hands back to the system and takes again page
/// after page: with mimalloc a catch-up of 772,897 events ran 1.3x as fast.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The key index rows of an event with payload ``payload_json`` and ``tags`` stored in
/// ``table``, for bulk loaders that write the tables directly (with COPY).
#[pyfunction]
#[pyo3(signature = (table, payload_json, tags=Vec::new()))]
fn index_keys(
    py: Python<'_>,
    table: &str,
    payload_json: &str,
    tags: Vec<String>,
) -> PyResult<Vec<i64>> {
    let table = TableName::parse(table).or_raise(py)?;
    let payload = crate::input::json_object("the payload", payload_json).or_raise(py)?;
    Ok(crate::keys::index_keys(&table, &payload, &tags))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(index_keys, m)?)?;
    m.add_class::<filter::PyMatch>()?;
    m.add_class::<filter::PyFilterItem>()?;
    m.add_class::<filter::PyBound>()?;
    m.add_class::<filter::PyFilter>()?;
    m.add_class::<event::PyStorableEvent>()?;
    m.add_class::<store::PyEventStore>()?;
    m.add_class::<reading::PyReader>()?;
    m.add_class::<reading::PySubscription>()?;
    m.add_class::<convert::PyStoreDefault>()?;
    m.add("STORE_DEFAULT", convert::PyStoreDefault)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    let close_gate = wrap_pyfunction!(runtime::close_python_gate, m)?;
    m.py()
        .import("atexit")?
        .call_method1("register", (close_gate,))?;
    Ok(())
}

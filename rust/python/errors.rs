//! The only conversion from engine errors to the facade's exception classes
//! (`dynamic_streams.errors`).

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyString, PyType};

use crate::error::{Error, SqlStateClass};

/// One class of `dynamic_streams.errors`, imported on first use.
fn error_class<'py>(py: Python<'py>, name: &'static str) -> PyResult<Bound<'py, PyType>> {
    static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    let module = MODULE.get_or_try_init(py, || {
        Ok::<_, PyErr>(py.import("dynamic_streams.errors")?.unbind())
    })?;
    Ok(module.bind(py).getattr(name)?.cast_into()?)
}

fn class_name(class: SqlStateClass) -> &'static str {
    match class {
        SqlStateClass::Data => "DataError",
        SqlStateClass::Integrity => "IntegrityError",
        SqlStateClass::Programming => "ProgrammingError",
        SqlStateClass::Operational => "OperationalError",
        SqlStateClass::Other => "DatabaseError",
    }
}

/// The Python exception for an engine error.
pub fn to_py(py: Python<'_>, err: Error) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let message = err.to_string();
        let (class, attrs): (&str, Vec<(&str, Py<PyAny>)>) = match &err {
            Error::InvalidInput(_) => ("InvalidInputError", vec![]),
            Error::ConcurrencyConflict { expected } => (
                "ConcurrencyConflictError",
                vec![(
                    "expected_max_sequence_number",
                    expected.into_pyobject(py)?.into_any().unbind(),
                )],
            ),
            Error::Timeout(_) | Error::PoolExhausted { .. } => ("OperationTimeoutError", vec![]),
            Error::Connection { .. } => ("OperationalError", vec![]),
            Error::Closed => ("InterfaceError", vec![]),
            Error::Database {
                sqlstate, detail, ..
            } => (
                class_name(SqlStateClass::of(sqlstate)),
                vec![
                    ("sqlstate", PyString::new(py, sqlstate).into_any().unbind()),
                    (
                        "detail",
                        detail.as_deref().into_pyobject(py)?.into_any().unbind(),
                    ),
                ],
            ),
        };
        let exc = error_class(py, class)?.call1((message,))?;
        for (name, value) in attrs {
            exc.setattr(name, value)?;
        }
        let py_err = PyErr::from_value(exc);
        if let Error::Connection {
            os_error: Some(code),
            ..
        } = &err
        {
            // The operating system's error as Python knows it: OSError(errno, strerror)
            // becomes ConnectionRefusedError, TimeoutError, ... by its number.
            let strerror = py.import("os")?.call_method1("strerror", (*code,))?;
            let cause = py
                .get_type::<pyo3::exceptions::PyOSError>()
                .call1((*code, strerror))?;
            py_err.set_cause(py, Some(PyErr::from_value(cause)));
        }
        Ok(py_err)
    };
    build().unwrap_or_else(|e| e)
}

/// `InterfaceError(message)`: the library used in a way it does not support.
pub fn interface_error(py: Python<'_>, message: &str) -> PyErr {
    raised(py, "InterfaceError", message)
}

/// `DataError(message)`: a stored value that cannot be made a Python object.
pub fn data_error(py: Python<'_>, message: &str) -> PyErr {
    raised(py, "DataError", message)
}

fn raised(py: Python<'_>, class: &'static str, message: &str) -> PyErr {
    match error_class(py, class).and_then(|c| c.call1((message,))) {
        Ok(exc) => PyErr::from_value(exc),
        Err(e) => e,
    }
}

/// `InvalidInputError(message)`: input rejected before any I/O.
pub fn invalid(py: Python<'_>, message: impl Into<String>) -> PyErr {
    to_py(py, Error::invalid(message))
}

/// Engine results as Python results.
pub trait OrRaise<T> {
    fn or_raise(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> OrRaise<T> for crate::Result<T> {
    fn or_raise(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| to_py(py, e))
    }
}

//! The CDM schema lives in `medspace_types::cdm`, next to the consortium's classification of
//! each field: the vault, the query compiler, catalog publishing and the ledger all read the
//! one list.

pub use medspace_types::cdm::{CDM, Column, ColumnType, TABLES, Table, columns, table};

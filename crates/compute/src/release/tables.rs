//! The extract's tables: the person table of the plan, and each event table with its
//! pseudonyms, renumbered rows, shifted or cut dates, kept codes and scrubbed text; written as
//! Parquet and CSV.

use super::*;

/// What happened to a released column, for the dictionary.
#[derive(Clone, Debug, Serialize)]
pub(super) struct ColumnNote {
    name: String,
    #[serde(rename = "type")]
    ty: &'static str,
    treatment: String,
}

/// A column being built.
pub(super) enum Out {
    I64(Vec<Option<i64>>),
    I32(Vec<Option<i32>>),
    F64(Vec<Option<f64>>),
    Str(Vec<Option<String>>),
    Date(Vec<Option<i32>>),
}

impl Out {
    fn array(self) -> ArrayRef {
        match self {
            Out::I64(v) => Arc::new(Int64Array::from(v)),
            Out::I32(v) => Arc::new(Int32Array::from(v)),
            Out::F64(v) => Arc::new(Float64Array::from(v)),
            Out::Str(v) => Arc::new(StringArray::from(v)),
            Out::Date(v) => Arc::new(Date32Array::from(v)),
        }
    }
}

/// Whether `s` looks like a code (SNOMED CT, LOINC, RxNorm, a unit): kept as is; anything
/// else in a code column is removed.
pub(super) fn is_code(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 24
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '.' | '-' | '/' | '[' | ']' | '%' | '{' | '}' | '*' | '^')
        })
}

/// How a date is released.
pub(super) fn date_out(dates: &Dates, shift: i32, d: i32) -> i32 {
    match dates {
        Dates::ShiftDays(_) => d.saturating_add(shift),
        Dates::Month => {
            let (y, m, _) = medspace_deid::hierarchy::civil_from_days(d);
            medspace_deid::hierarchy::days_from_civil(y, m, 1)
        }
        Dates::Year => {
            let (y, _, _) = medspace_deid::hierarchy::civil_from_days(d);
            medspace_deid::hierarchy::days_from_civil(y, 1, 1)
        }
    }
}

pub(super) fn date_note(dates: &Dates) -> String {
    match dates {
        Dates::ShiftDays(n) => format!("shifted by the person's offset, uniform in ±{n} days"),
        Dates::Month => "cut to the first day of its month".into(),
        Dates::Year => "cut to the first day of its year".into(),
    }
}

/// The person table: pseudonym, generalized quasi-identifiers, sensitive values.
pub(super) fn person_table(
    plan: &Plan,
    data: &Microdata,
    kept: &[&Person],
    order: &[usize],
    pseud: &Pseudonymizer,
) -> Result<(RecordBatch, Vec<ColumnNote>), ReleaseError> {
    let mut fields = vec![Field::new("person_id", DataType::Utf8, false)];
    let mut columns: Vec<ArrayRef> = vec![Arc::new(StringArray::from(
        order
            .iter()
            .filter_map(|&j| kept.get(j))
            .map(|p| pseud.pseudonym(&p.id.to_string()))
            .collect::<Vec<_>>(),
    ))];
    let mut notes = vec![ColumnNote {
        name: "person_id".into(),
        ty: "string",
        treatment: "per-release keyed pseudonym (HMAC-SHA-256)".into(),
    }];
    let labels = plan.labels();
    for (q, name) in plan.fields.iter().enumerate() {
        fields.push(Field::new(name, DataType::Utf8, true));
        columns.push(Arc::new(StringArray::from(
            order
                .iter()
                .map(|&j| labels.get(j).and_then(|row| row.get(q).cloned()))
                .collect::<Vec<_>>(),
        )));
        notes.push(ColumnNote {
            name: name.clone(),
            ty: "string",
            treatment: format!(
                "quasi-identifier, generalized: {}",
                plan.node.names.get(q).cloned().unwrap_or_default()
            ),
        });
    }
    let sensitive = plan.sensitive(data);
    for (s, name) in data.sensitive.iter().enumerate() {
        fields.push(Field::new(name, DataType::Utf8, true));
        columns.push(Arc::new(StringArray::from(
            order
                .iter()
                .map(|&j| sensitive.get(j).and_then(|row| row.get(s).cloned()))
                .collect::<Vec<_>>(),
        )));
        notes.push(ColumnNote {
            name: name.clone(),
            ty: "string",
            treatment: "sensitive attribute, as recorded (l-diversity and t-closeness hold over it)"
                .into(),
        });
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(query_err)?;
    Ok((batch, notes))
}

/// What an event table's rows become.
pub(super) struct Events<'a> {
    pub(super) dates: &'a Dates,
    pub(super) kept: &'a HashMap<i64, (String, i32)>,
    pub(super) scrubber: &'a Scrubber,
    pub(super) listed: &'a HashSet<String>,
    pub(super) release_visits: bool,
}

impl Events<'_> {
    pub(super) fn table(
        &self,
        ctx: &datafusion::prelude::SessionContext,
        name: &str,
        cols: &[String],
        visits: &mut HashMap<i64, i64>,
    ) -> Result<(RecordBatch, Vec<ColumnNote>), ReleaseError> {
        let table = cdm_table(name).ok_or_else(|| ReleaseError::Spec(format!("`{name}`")))?;
        let row_id = table
            .columns
            .first()
            .filter(|c| c.name != "person_id")
            .map(|c| c.name);
        let mut select: Vec<String> = vec!["person_id".into()];
        select.extend(row_id.map(String::from));
        select.extend(cols.iter().filter(|c| Some(c.as_str()) != row_id).cloned());
        let q = format!(
            "SELECT {} FROM {name} ORDER BY person_id{}",
            select.join(", "),
            row_id.map(|r| format!(", {r}")).unwrap_or_default()
        );
        let batches = run(ctx, &q)?;
        let mut out: Vec<(String, Out, ColumnNote)> = Vec::new();
        let note = |n: &str, ty: &'static str, t: String| ColumnNote {
            name: n.into(),
            ty,
            treatment: t,
        };
        out.push((
            "person_id".into(),
            Out::Str(Vec::new()),
            note("person_id", "string", "the person table's pseudonym".into()),
        ));
        for c in cols {
            let Some(def) = table.columns.iter().find(|x| x.name == c.as_str()) else {
                continue;
            };
            let (o, ty, t) = if Some(c.as_str()) == row_id {
                (
                    Out::I64(Vec::new()),
                    "int64",
                    "renumbered in the extract".to_string(),
                )
            } else if c == "visit_occurrence_id" {
                (
                    Out::I64(Vec::new()),
                    "int64",
                    if self.release_visits {
                        "the renumbered visit".into()
                    } else {
                        "empty: visits are not released".into()
                    },
                )
            } else {
                match def.ty {
                    ColumnType::Int64 => (Out::I64(Vec::new()), "int64", "as recorded".into()),
                    ColumnType::Int32 => (Out::I32(Vec::new()), "int32", "as recorded".into()),
                    ColumnType::Float64 => (Out::F64(Vec::new()), "float64", "as recorded".into()),
                    ColumnType::Date32 => (Out::Date(Vec::new()), "date", date_note(self.dates)),
                    ColumnType::Utf8 if free_text(c) => (
                        Out::Str(Vec::new()),
                        "string",
                        "free text, direct identifiers removed".into(),
                    ),
                    ColumnType::Utf8 => (
                        Out::Str(Vec::new()),
                        "string",
                        "code as recorded; anything that is not a code is removed".into(),
                    ),
                }
            };
            out.push((c.clone(), o, note(c, ty, t)));
        }
        // Rows in the order of the persons' pseudonyms (then as recorded): nothing of the
        // vault's own order (its person ids, its ingest order) shows in the extract.
        let mut rows: BTreeMap<&str, Vec<(usize, usize)>> = BTreeMap::new();
        for (bi, b) in batches.iter().enumerate() {
            let pid = col::<Int64Array>(b, "person_id")?;
            for i in 0..b.num_rows() {
                if let Some((pseudonym, _)) = self.kept.get(&pid.value(i)) {
                    rows.entry(pseudonym.as_str()).or_default().push((bi, i));
                }
            }
        }
        let mut next_row = 0i64;
        for (bi, i) in rows.into_values().flatten() {
            let Some(b) = batches.get(bi) else { continue };
            let pid = col::<Int64Array>(b, "person_id")?;
            let Some((pseudonym, shift)) = self.kept.get(&pid.value(i)) else {
                continue;
            };
            next_row += 1;
            if name == "visit_occurrence"
                && let Some(r) = row_id
            {
                visits.insert(col::<Int64Array>(b, r)?.value(i), next_row);
            }
            for (c, o, _) in out.iter_mut() {
                let arr = b
                    .column_by_name(c)
                    .ok_or_else(|| ReleaseError::Query(format!("column {c} missing")))?;
                self.push(
                    c,
                    o,
                    arr.as_ref(),
                    i,
                    pseudonym,
                    *shift,
                    row_id,
                    next_row,
                    visits,
                )?;
            }
        }
        let mut fields = Vec::new();
        let mut arrays = Vec::new();
        let mut notes = Vec::new();
        for (c, o, n) in out {
            let a = o.array();
            fields.push(Field::new(&c, a.data_type().clone(), true));
            arrays.push(a);
            notes.push(n);
        }
        let batch =
            RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(query_err)?;
        Ok((batch, notes))
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &self,
        c: &str,
        o: &mut Out,
        arr: &dyn Array,
        i: usize,
        pseudonym: &str,
        shift: i32,
        row_id: Option<&str>,
        next_row: i64,
        visits: &HashMap<i64, i64>,
    ) -> Result<(), ReleaseError> {
        let null = arr.is_null(i);
        let mistyped = || ReleaseError::Query(format!("column {c} mistyped"));
        match o {
            Out::Str(v) if c == "person_id" => v.push(Some(pseudonym.to_string())),
            Out::I64(v) if Some(c) == row_id => v.push(Some(next_row)),
            Out::I64(v) if c == "visit_occurrence_id" => {
                let a = arr
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .ok_or_else(mistyped)?;
                v.push(if null || !self.release_visits {
                    None
                } else {
                    visits.get(&a.value(i)).copied()
                });
            }
            Out::I64(v) => {
                let a = arr
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .ok_or_else(mistyped)?;
                v.push((!null).then(|| a.value(i)));
            }
            Out::I32(v) => {
                let a = arr
                    .as_any()
                    .downcast_ref::<Int32Array>()
                    .ok_or_else(mistyped)?;
                v.push((!null).then(|| a.value(i)));
            }
            Out::F64(v) => {
                let a = arr
                    .as_any()
                    .downcast_ref::<Float64Array>()
                    .ok_or_else(mistyped)?;
                v.push((!null).then(|| a.value(i)));
            }
            Out::Date(v) => {
                let a = arr
                    .as_any()
                    .downcast_ref::<Date32Array>()
                    .ok_or_else(mistyped)?;
                v.push((!null).then(|| date_out(self.dates, shift, a.value(i))));
            }
            Out::Str(v) => {
                let a = arr
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .ok_or_else(mistyped)?;
                v.push((!null).then(|| {
                    let s = a.value(i);
                    if free_text(c) {
                        self.scrubber.scrub(s).into_owned()
                    } else if is_code(s) && !self.listed.contains(&s.to_lowercase()) {
                        s.to_string()
                    } else {
                        medspace_deid::identifiers::REMOVED.to_string()
                    }
                }));
            }
        }
        Ok(())
    }
}

/// Columns that hold free text rather than codes.
pub(super) fn free_text(c: &str) -> bool {
    matches!(c, "value_as_string" | "value_source_value")
}

/// A written table: its name, rows and each column's missing share in ppm.
pub(super) struct Written {
    pub(super) name: String,
    pub(super) rows: u64,
    pub(super) missing: Vec<(String, u64)>,
}

/// Writes `batch` as `<name>.parquet` and `<name>.csv`.
pub(super) fn write_table(
    dir: &Path,
    name: &str,
    batch: &RecordBatch,
) -> Result<Written, ReleaseError> {
    let path = dir.join(format!("{name}.parquet"));
    let file = std::fs::File::create(&path).map_err(io_err(&path))?;
    let mut w = ArrowWriter::try_new(file, batch.schema(), None).map_err(query_err)?;
    w.write(batch).map_err(query_err)?;
    w.close().map_err(query_err)?;
    let csv = to_csv(batch)?;
    write_file(dir, &format!("{name}.csv"), csv.as_bytes())?;
    let rows = batch.num_rows() as u64;
    let missing = batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(f, c)| {
            let ppm = (c.null_count() as u64 * 1_000_000)
                .checked_div(rows)
                .unwrap_or(0);
            (f.name().clone(), ppm)
        })
        .collect();
    Ok(Written {
        name: name.to_string(),
        rows,
        missing,
    })
}

/// RFC 4180 CSV of a batch: a header, then one line per row; dates as `YYYY-MM-DD`, nulls
/// empty.
pub(super) fn to_csv(batch: &RecordBatch) -> Result<String, ReleaseError> {
    let quote = |s: &str| {
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    };
    let schema = batch.schema();
    let mut out = schema
        .fields()
        .iter()
        .map(|f| quote(f.name()))
        .collect::<Vec<_>>()
        .join(",");
    out.push('\n');
    let cols = batch.columns();
    for i in 0..batch.num_rows() {
        let mut cells = Vec::with_capacity(cols.len());
        for c in cols {
            if c.is_null(i) {
                cells.push(String::new());
                continue;
            }
            let any = c.as_any();
            let cell = if let Some(a) = any.downcast_ref::<StringArray>() {
                quote(a.value(i))
            } else if let Some(a) = any.downcast_ref::<Int64Array>() {
                a.value(i).to_string()
            } else if let Some(a) = any.downcast_ref::<Int32Array>() {
                a.value(i).to_string()
            } else if let Some(a) = any.downcast_ref::<Float64Array>() {
                a.value(i).to_string()
            } else if let Some(a) = any.downcast_ref::<Date32Array>() {
                let (y, m, d) = medspace_deid::hierarchy::civil_from_days(a.value(i));
                format!("{y:04}-{m:02}-{d:02}")
            } else {
                return Err(ReleaseError::Query("unexpected column type".into()));
            };
            cells.push(cell);
        }
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    Ok(out)
}

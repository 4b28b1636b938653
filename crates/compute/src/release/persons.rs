//! The release's persons: their person-level values read from the vault's CDM tables, the
//! spec's fields checked against them, and their direct identifiers (to scrub from free text).

use super::*;

/// One person's derived values and identity.
pub(super) struct Person {
    pub(super) id: i64,
    pub(super) values: BTreeMap<&'static str, Value>,
}

pub(super) fn text(v: Option<&str>) -> Value {
    match v {
        Some(s) if !s.is_empty() => Value::Text(s.to_string()),
        _ => Value::Missing,
    }
}

pub(super) fn col<'a, T: 'static>(b: &'a RecordBatch, name: &str) -> Result<&'a T, ReleaseError> {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| ReleaseError::Query(format!("column {name} missing or mistyped")))
}

pub(super) fn run(
    ctx: &datafusion::prelude::SessionContext,
    q: &str,
) -> Result<Vec<RecordBatch>, ReleaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(query_err)?;
    rt.block_on(medspace_vault::sql(ctx, q))
        .map_err(ReleaseError::Vault)
}

/// The person-level values of the vault's persons in `eligible`, by person id.
pub(super) fn persons(
    ctx: &datafusion::prelude::SessionContext,
    eligible: &BTreeSet<i64>,
) -> Result<Vec<Person>, ReleaseError> {
    let mut out: BTreeMap<i64, Person> = BTreeMap::new();
    let q = "SELECT p.person_id, p.year_of_birth, p.birth_datetime, p.gender_source_value, \
             p.race_source_value, p.ethnicity_source_value, d.death_date \
             FROM person p LEFT JOIN death d ON p.person_id = d.person_id";
    for b in run(ctx, q)? {
        let ids = col::<Int64Array>(&b, "person_id")?;
        let yob = col::<Int32Array>(&b, "year_of_birth")?;
        let birth = col::<Date32Array>(&b, "birth_datetime")?;
        let gender = col::<StringArray>(&b, "gender_source_value")?;
        let race = col::<StringArray>(&b, "race_source_value")?;
        let eth = col::<StringArray>(&b, "ethnicity_source_value")?;
        let death = col::<Date32Array>(&b, "death_date")?;
        for i in 0..b.num_rows() {
            let id = ids.value(i);
            if !eligible.contains(&id) {
                continue;
            }
            fn opt_str(a: &StringArray, i: usize) -> Option<&str> {
                (!a.is_null(i)).then(|| a.value(i))
            }
            let mut values = BTreeMap::new();
            values.insert(
                "year_of_birth",
                if yob.is_null(i) {
                    Value::Missing
                } else {
                    Value::Int(i64::from(yob.value(i)))
                },
            );
            values.insert(
                "birth_date",
                if birth.is_null(i) {
                    Value::Missing
                } else {
                    Value::Date(birth.value(i))
                },
            );
            values.insert("gender", text(opt_str(gender, i)));
            values.insert("race", text(opt_str(race, i)));
            values.insert("ethnicity", text(opt_str(eth, i)));
            let dead = !death.is_null(i);
            values.insert(
                "death_date",
                if dead {
                    Value::Date(death.value(i))
                } else {
                    Value::Missing
                },
            );
            values.insert(
                "deceased",
                Value::Text(if dead { "yes" } else { "no" }.into()),
            );
            values.insert("condition", Value::Text("none".into()));
            out.insert(id, Person { id, values });
        }
    }
    // The principal condition: the code recorded most often (ties: the smallest code).
    let q = "SELECT person_id, condition_source_value AS code, COUNT(*) AS n \
             FROM condition_occurrence WHERE condition_source_value IS NOT NULL GROUP BY 1, 2";
    let mut best: HashMap<i64, (i64, String)> = HashMap::new();
    for b in run(ctx, q)? {
        let ids = col::<Int64Array>(&b, "person_id")?;
        let codes = col::<StringArray>(&b, "code")?;
        let n = col::<Int64Array>(&b, "n")?;
        for i in 0..b.num_rows() {
            let (id, code, n) = (ids.value(i), codes.value(i), n.value(i));
            let better = best
                .get(&id)
                .is_none_or(|(bn, bc)| n > *bn || (n == *bn && code < bc.as_str()));
            if better {
                best.insert(id, (n, code.to_string()));
            }
        }
    }
    for (id, (_, code)) in best {
        if let Some(p) = out.get_mut(&id) {
            p.values.insert("condition", Value::Text(code));
        }
    }
    Ok(out.into_values().collect())
}

/// The displayed form of a sensitive value.
pub(super) fn shown(v: &Value) -> String {
    medspace_deid::hierarchy::display(v)
}

/// Checks the spec's fields and tables against what the vault can release.
pub(super) fn check_spec(spec: &ReleaseSpec) -> Result<(), ReleaseError> {
    for f in spec
        .quasi_identifiers
        .iter()
        .map(|q| q.field.as_str())
        .chain(spec.sensitive.iter().map(String::as_str))
    {
        if !FIELDS.contains(&f) {
            return Err(ReleaseError::Spec(format!(
                "`{f}` is not a person-level value of the vault; choose from {}",
                FIELDS.join(", ")
            )));
        }
    }
    for (t, cols) in &spec.tables {
        if t == "person" {
            return Err(ReleaseError::Spec(
                "the person table is the search's output (pseudonym, quasi-identifiers, sensitive attributes): list only event tables".into(),
            ));
        }
        let table =
            cdm_table(t).ok_or_else(|| ReleaseError::Spec(format!("`{t}` is not a CDM table")))?;
        for c in cols {
            if !table.columns.iter().any(|x| x.name == c.as_str()) {
                return Err(ReleaseError::Spec(format!("`{t}.{c}` is not a CDM column")));
            }
            if c == "person_id" {
                return Err(ReleaseError::Spec(format!(
                    "`{t}.person_id` is always released as the pseudonym: do not list it"
                )));
            }
        }
    }
    Ok(())
}

/// The direct identifiers of the released persons as the vault's Patient resources record
/// them: names, addresses, telecoms, identifiers (every one is searched for and removed from
/// free text).
pub(super) fn direct_identifiers(
    node_dir: &Path,
    key: &VaultKey,
    kept: &[&Person],
) -> Result<Vec<String>, ReleaseError> {
    let vault = medspace_vault::Vault::open_read_only(node_dir, key)?;
    let wanted: HashSet<i64> = kept.iter().map(|p| p.id).collect();
    let keys: Vec<String> = vault
        .persons()
        .into_iter()
        .filter(|(person, _, _)| wanted.contains(person))
        .map(|(_, id, _)| format!("Patient/{id}"))
        .collect();
    let mut out = Vec::new();
    for (_, r) in vault.load_resources(&keys)? {
        out.extend(patient_identifiers(&r));
    }
    Ok(out)
}

/// Each person's postal code as a quasi-identifier `zip`, from their Patient resource's first
/// address, cut to its first three characters before anything else sees it (as HIPAA's Safe
/// Harbor allows; a full postal code is an identifier, and the CDM keeps none). Persons
/// without one get `Missing`.
pub(super) fn postal_codes(
    node_dir: &Path,
    key: &VaultKey,
    people: &mut [Person],
) -> Result<(), ReleaseError> {
    let vault = medspace_vault::Vault::open_read_only(node_dir, key)?;
    let ids: HashMap<i64, String> = vault
        .persons()
        .into_iter()
        .map(|(person, id, _)| (person, format!("Patient/{id}")))
        .collect();
    let keys: Vec<String> = people
        .iter()
        .filter_map(|p| ids.get(&p.id).cloned())
        .collect();
    let mut zips: HashMap<String, String> = HashMap::new();
    for (k, r) in vault.load_resources(&keys)? {
        let zip = r
            .get("address")
            .and_then(|a| a.as_array())
            .and_then(|a| a.first())
            .and_then(|a| a.get("postalCode"))
            .and_then(|z| z.as_str())
            .map(|z| {
                z.chars()
                    .filter(|c| c.is_ascii_alphanumeric())
                    .take(3)
                    .collect::<String>()
            })
            .filter(|z| z.len() == 3);
        if let Some(z) = zip {
            zips.insert(k, z);
        }
    }
    for p in people.iter_mut() {
        let zip = ids
            .get(&p.id)
            .and_then(|k| zips.get(k))
            .map_or(Value::Missing, |z| Value::Text(z.clone()));
        p.values.insert("zip", zip);
    }
    Ok(())
}

/// A Patient's direct identifiers: its id, every name part, address line, city and postal
/// code, telecom value and identifier value.
pub fn patient_identifiers(r: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(id) = r.get("id").and_then(|v| v.as_str()) {
        out.push(id.to_string());
    }
    let strings = |v: Option<&serde_json::Value>, out: &mut Vec<String>| match v {
        Some(serde_json::Value::String(s)) => out.push(s.clone()),
        Some(serde_json::Value::Array(a)) => {
            out.extend(a.iter().filter_map(|x| x.as_str().map(String::from)))
        }
        _ => {}
    };
    let list = |k: &str| {
        r.get(k)
            .and_then(|v| v.as_array())
            .cloned()
            .unwrap_or_default()
    };
    for n in list("name") {
        for k in ["family", "given", "text", "prefix", "suffix"] {
            strings(n.get(k), &mut out);
        }
    }
    for a in list("address") {
        for k in ["line", "city", "postalCode", "text"] {
            strings(a.get(k), &mut out);
        }
    }
    for t in list("telecom") {
        strings(t.get("value"), &mut out);
    }
    for i in list("identifier") {
        strings(i.get("value"), &mut out);
    }
    out.retain(|s| s.chars().filter(|c| c.is_alphanumeric()).count() >= 2);
    out
}

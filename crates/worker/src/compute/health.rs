//! The released results of the public-health aggregates, from the summed vector alone: a
//! drug-safety job's disproportionality table and a surveillance window's counts.

use crate::wire::{DrugSafetyResult, SurveillanceResult};
use medspace_privacy::pharmacovigilance::{self as pv, PairId, SignalRule};
use medspace_privacy::query::{DrugSafetySpec, SURVEILLANCE_BANDS, SurveillanceSpec};

/// The signal rule of a specification's thresholds.
pub fn signal_rule(d: &DrugSafetySpec) -> SignalRule {
    SignalRule {
        prr_min: d.thresholds.prr.to_f64(),
        chi2_min: d.thresholds.chi2.to_f64(),
        min_cases: u64::from(d.thresholds.cases),
        ..SignalRule::default()
    }
}

/// A drug-safety job's released table from the summed cells: every pair's statistics and
/// signals, a pair with a cell below `k` suppressed; as a scan with Benjamini–Hochberg when the
/// specification lists no pairs.
pub fn drug_safety_result(
    d: &DrugSafetySpec,
    totals: &[i64],
    k: u32,
) -> Result<DrugSafetyResult, String> {
    let indices = d.pair_indices();
    let tables = pv::tables_from_sum(totals, indices.len()).map_err(|e| e.to_string())?;
    let pairs: Vec<(PairId, pv::Table2x2)> = indices
        .iter()
        .zip(tables)
        .filter_map(|((di, ei), t)| {
            let drug = d.drugs.get(*di)?;
            let event = d.events.get(*ei)?;
            Some((PairId::new(&drug.name, &event.name), t))
        })
        .collect();
    let rule = signal_rule(d);
    let released = if d.is_scan() {
        pv::scan(&pairs, &rule, u64::from(k), d.fdr_f64())
    } else {
        pv::assess(&pairs, &rule, u64::from(k))
    }
    .map_err(|e| e.to_string())?;
    Ok(DrugSafetyResult {
        scan: d.is_scan(),
        fdr: d.is_scan().then(|| d.fdr_f64()),
        window_days: d.window_days,
        washout_days: d.washout_days,
        dp: d.dp,
        pairs: released,
    })
}

/// A surveillance window's released counts from the summed (noised) cells: each cell below
/// `k` withheld, the syndrome × region totals from every cell.
pub fn surveillance_result(
    s: &SurveillanceSpec,
    window: u32,
    totals: &[i64],
    k: u32,
) -> Result<SurveillanceResult, String> {
    if totals.len() != s.cells() {
        return Err(format!(
            "the window's vector has {} cells, the definition {}",
            totals.len(),
            s.cells()
        ));
    }
    let (first, _) = s.window_days_range(window).map_err(|e| e.to_string())?;
    let bands = SURVEILLANCE_BANDS.len();
    let sum = |c: &[i64]| c.iter().fold(0i64, |a, v| a.saturating_add(*v));
    let (cells, totals): (Vec<Option<i64>>, Vec<Option<i64>>) = if s.dp {
        (
            totals
                .iter()
                .map(|n| medspace_privacy::dp::suppress_small(*n, k))
                .collect(),
            totals.chunks(bands).map(|c| Some(sum(c))).collect(),
        )
    } else {
        let mut cells = Vec::with_capacity(totals.len());
        let mut sums = Vec::with_capacity(totals.len() / bands.max(1));
        for c in totals.chunks(bands) {
            let whole = c.iter().all(|n| *n >= i64::from(k));
            cells.extend(c.iter().map(|n| whole.then_some(*n)));
            sums.push(medspace_privacy::dp::suppress_small(sum(c), k));
        }
        (cells, sums)
    };
    Ok(SurveillanceResult {
        window,
        from: medspace_privacy::query::date_of_day(first),
        days: s.window_days,
        syndromes: s.syndromes.iter().map(|g| g.name.clone()).collect(),
        regions: s.regions.clone(),
        bands: SURVEILLANCE_BANDS
            .iter()
            .map(|(l, _, _)| (*l).to_string())
            .collect(),
        dp: s.dp,
        cells,
        totals,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_window_withholds_small_cells_but_totals_every_band() {
        let s: SurveillanceSpec = serde_json::from_str(
            r#"{"syndromes":[{"name":"ili","codes":["6142004"]}],"regions":["010"],
            "start":"2026-01-01","window_days":1,"windows":3,"epsilon_per_window":1}"#,
        )
        .unwrap();
        let r = surveillance_result(&s, 2, &[12, 3, 0, 7, 1], 5).unwrap();
        assert_eq!(r.from, "2026-01-03");
        assert_eq!(r.cells, vec![Some(12), None, None, Some(7), None]);
        assert_eq!(r.totals, vec![Some(23)]);
        assert!(surveillance_result(&s, 2, &[1, 2], 5).is_err());
        // Exact counts: one small band withholds every band, the total stands alone.
        let exact = SurveillanceSpec { dp: false, ..s };
        let r = surveillance_result(&exact, 0, &[12, 3, 0, 7, 1], 5).unwrap();
        assert_eq!(r.cells, vec![None; 5]);
        assert_eq!(r.totals, vec![Some(23)]);
        let r = surveillance_result(&exact, 0, &[1, 1, 0, 1, 1], 5).unwrap();
        assert_eq!(r.totals, vec![None]);
        let r = surveillance_result(&exact, 0, &[5, 6, 7, 8, 9], 5).unwrap();
        assert_eq!(r.cells, vec![Some(5), Some(6), Some(7), Some(8), Some(9)]);
    }
}

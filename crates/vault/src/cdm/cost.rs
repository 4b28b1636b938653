//! ExplanationOfBenefit → cost: what a visit cost, from the payer's adjudicated claim. One row
//! per ExplanationOfBenefit, about the visit of the Encounter it bills (`item[].encounter[]`,
//! the first that resolves; see [`super::visit_of`]). An ExplanationOfBenefit without a visit
//! in the vault gives no row, as any resource whose person or visit is unknown. A Claim gives
//! none: the ExplanationOfBenefit is the adjudicated claim.
//!
//! The amounts: `total_charge` is the `total` of category `submitted`, else the sum of the
//! items' `net`; `total_paid` is `payment.amount`, else the `total` of category `benefit`; the
//! payer paid all of it (`paid_by_payer` = `total_paid`), the patient the rest of the charge
//! (`paid_by_patient` = charge − paid, at least 0, when both are known). The currency is that
//! of the amounts read (USD gives concept 44818668, another currency 0, none null).

use serde_json::Value;

use super::extract::code_of;
use super::{Mapping, Val};
use crate::error::VaultError;

/// "Claim" cost type concept (OMOP type concept 32810).
pub(crate) const TYPE_CLAIM: i64 = 32810;
/// US dollar (OMOP concept 44818668).
pub(crate) const CURRENCY_USD: i64 = 44_818_668;

/// The amounts of an ExplanationOfBenefit, as read from it.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Amounts<'a> {
    pub(super) charge: Option<f64>,
    pub(super) paid: Option<f64>,
    /// The currency code of the first amount read.
    pub(super) currency: Option<&'a str>,
}

impl Amounts<'_> {
    /// What the patient paid: the charge less what the payer paid, at least 0.
    pub(super) fn by_patient(&self) -> Option<f64> {
        Some((self.charge? - self.paid?).max(0.0))
    }

    /// The currency's concept id.
    fn currency_concept(&self) -> Option<i64> {
        self.currency
            .map(|c| if c == "USD" { CURRENCY_USD } else { 0 })
    }
}

/// `value` and `currency` of a Money.
fn money(m: Option<&Value>) -> Option<(f64, Option<&str>)> {
    let m = m?;
    let value = m.get("value")?.as_f64().filter(|v| v.is_finite())?;
    Some((value, m.get("currency").and_then(Value::as_str)))
}

/// The `total` of adjudication category `category`.
fn total<'a>(eob: &'a Value, category: &str) -> Option<(f64, Option<&'a str>)> {
    eob.get("total")?
        .as_array()?
        .iter()
        .find(|t| code_of(t.get("category")) == Some(category))
        .and_then(|t| money(t.get("amount")))
}

/// The sum of the items' `net` (none when no item has one).
fn items_net(eob: &Value) -> Option<(f64, Option<&str>)> {
    let items = eob.get("item")?.as_array()?;
    let mut sum: Option<(f64, Option<&str>)> = None;
    for (value, currency) in items.iter().filter_map(|i| money(i.get("net"))) {
        sum = Some(match sum {
            Some((s, c)) => (s + value, c.or(currency)),
            None => (value, currency),
        });
    }
    sum
}

/// The charge, the payment and their currency.
pub(super) fn amounts(eob: &Value) -> Amounts<'_> {
    let charge = total(eob, "submitted").or_else(|| items_net(eob));
    let paid =
        money(eob.get("payment").and_then(|p| p.get("amount"))).or_else(|| total(eob, "benefit"));
    Amounts {
        charge: charge.map(|(v, _)| v),
        paid: paid.map(|(v, _)| v),
        currency: charge.and_then(|(_, c)| c).or(paid.and_then(|(_, c)| c)),
    }
}

pub(super) fn map(v: &Value, m: &mut Mapping<'_>) -> Result<(), VaultError> {
    let Some(visit) = m.visit_of(v) else {
        return Ok(());
    };
    let a = amounts(v);
    let id = m.next_id("cost");
    m.push(
        "cost",
        &[
            Val::I64(Some(id)),
            Val::I64(Some(visit)),
            Val::Str(Some("Visit")),
            Val::I64(Some(TYPE_CLAIM)),
            Val::I64(a.currency_concept()),
            Val::F64(a.charge),
            Val::F64(a.paid),
            Val::F64(a.paid),
            Val::F64(a.by_patient()),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn category(code: &str) -> Value {
        json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/adjudication", "code": code}]})
    }

    #[test]
    fn submitted_total_and_payment_first() {
        let eob = json!({
            "total": [
                {"category": category("benefit"), "amount": {"value": 70.0, "currency": "USD"}},
                {"category": category("submitted"), "amount": {"value": 125.5, "currency": "USD"}}
            ],
            "item": [{"net": {"value": 1.0}}],
            "payment": {"amount": {"value": 100.25, "currency": "USD"}}
        });
        let a = amounts(&eob);
        assert_eq!(
            a,
            Amounts {
                charge: Some(125.5),
                paid: Some(100.25),
                currency: Some("USD")
            }
        );
        assert_eq!(a.by_patient(), Some(25.25));
        assert_eq!(a.currency_concept(), Some(CURRENCY_USD));
    }

    #[test]
    fn items_net_and_benefit_otherwise() {
        let eob = json!({
            "total": [{"category": category("benefit"), "amount": {"value": 300.0, "currency": "EUR"}}],
            "item": [{"net": {"value": 100.0, "currency": "EUR"}}, {"sequence": 2}, {"net": {"value": 150.0}}]
        });
        let a = amounts(&eob);
        assert_eq!((a.charge, a.paid), (Some(250.0), Some(300.0)));
        // Paid more than charged: the patient paid nothing.
        assert_eq!(a.by_patient(), Some(0.0));
        assert_eq!(a.currency_concept(), Some(0));
    }

    #[test]
    fn nothing_known_is_null() {
        let eob = json!({"item": [{"sequence": 1}], "total": "x", "payment": {}});
        let a = amounts(&eob);
        assert_eq!(a, Amounts::default());
        assert_eq!((a.by_patient(), a.currency_concept()), (None, None));
        let eob = json!({"payment": {"amount": {"value": 10}}});
        let a = amounts(&eob);
        assert_eq!((a.charge, a.paid, a.by_patient()), (None, Some(10.0), None));
    }
}

//! Direct identifiers in free text: the caller's list (names, addresses, phone numbers,
//! e-mails, record numbers, SSNs of the persons in the input) and generic patterns (phone
//! numbers, e-mail addresses, SSN-like numbers, long digit runs). [`Scrubber::scrub`] replaces
//! each occurrence with `[removed]`; names and other listed identifiers match case-insensitively.

use std::borrow::Cow;

use regex::Regex;

use crate::DeidError;

/// The replacement text.
pub const REMOVED: &str = "[removed]";

/// Which rule matched (never the matched text: it is an identifier).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// `"listed"`, `"email"`, `"phone"`, `"ssn"` or `"digits"`.
    pub kind: &'static str,
    /// Byte range of the match.
    pub start: usize,
    pub end: usize,
}

/// Finds and removes direct identifiers.
#[derive(Clone, Debug)]
pub struct Scrubber {
    rules: Vec<(&'static str, Regex)>,
}

const EMAIL: &str = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}";
const SSN: &str = r"\b\d{3}[- ]\d{2}[- ]\d{4}\b";
const PHONE: &str = r"(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\b\d{2,4}[ .-])\d{2,4}[ .-]\d{2,4}(?:[ .-]\d{2,4})?\b";
const DIGITS: &str = r"\d{7,}";

impl Scrubber {
    /// A scrubber for the given identifiers (empty and whitespace-only ones are ignored; matching
    /// is case-insensitive, on word boundaries when an identifier starts/ends with a word
    /// character) plus the generic patterns.
    pub fn new<S: AsRef<str>>(identifiers: &[S]) -> Result<Self, DeidError> {
        let mut ids: Vec<&str> = identifiers
            .iter()
            .map(|s| s.as_ref().trim())
            .filter(|s| !s.is_empty())
            .collect();
        // Longest first, so a full name wins over its parts.
        ids.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        ids.dedup();
        let mut rules = Vec::new();
        // E-mails and numbers first: a listed name inside an address must not break the address.
        for (kind, pat) in [("email", EMAIL), ("ssn", SSN), ("phone", PHONE)] {
            let re = Regex::new(pat).map_err(|_| DeidError::TooLarge("pattern".into()))?;
            rules.push((kind, re));
        }
        if !ids.is_empty() {
            let alts: Vec<String> = ids
                .iter()
                .map(|s| {
                    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
                    let (b, e) = (word(s.chars().next()), word(s.chars().last()));
                    format!(
                        "{}{}{}",
                        if b { r"\b" } else { "" },
                        regex::escape(s),
                        if e { r"\b" } else { "" }
                    )
                })
                .collect();
            let re = Regex::new(&format!("(?i)(?:{})", alts.join("|"))).map_err(|_| {
                DeidError::TooLarge("the identifier list does not compile to a matcher".into())
            })?;
            rules.push(("listed", re));
        }
        rules.push((
            "digits",
            Regex::new(DIGITS).map_err(|_| DeidError::TooLarge("pattern".into()))?,
        ));
        Ok(Scrubber { rules })
    }

    /// The first identifier found (by rule order, then position), if any.
    pub fn find_any(&self, text: &str) -> Option<Found> {
        self.rules.iter().find_map(|(kind, re)| {
            re.find(text).map(|m| Found {
                kind,
                start: m.start(),
                end: m.end(),
            })
        })
    }

    /// `text` with every identifier replaced by `[removed]` (borrowed when there is none).
    pub fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out: Cow<'a, str> = Cow::Borrowed(text);
        for (_, re) in &self.rules {
            if let Cow::Owned(s) = re.replace_all(&out, REMOVED) {
                out = Cow::Owned(s);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_listed_and_patterns() {
        let s = Scrubber::new(&["Jane Doe", "Doe", "MRN-00421", "12 Rue de la Paix", " "]).unwrap();
        let text = "Pt JANE DOE (mrn-00421), lives at 12 rue de la paix; call +33 1 42 68 53 00 or jane.doe@example.org. SSN 123-45-6789, id 98765432. Dr. Doesburg saw her.";
        let out = s.scrub(text);
        for gone in [
            "JANE",
            "DOE ",
            "mrn-00421",
            "rue de la paix",
            "42 68",
            "example.org",
            "6789",
            "98765432",
        ] {
            assert!(!out.contains(gone), "{gone} left in {out}");
        }
        // Word boundaries: a name inside another word stays.
        assert!(out.contains("Doesburg"), "{out}");
        assert!(s.find_any(&out).is_none(), "{out} {:?}", s.find_any(&out));
        assert!(out.contains(REMOVED));
        // Nothing to remove: borrowed.
        let clean = "Type 2 diabetes, HbA1c 7.2 %, seen on day 3.";
        assert!(matches!(s.scrub(clean), Cow::Borrowed(_)));
        assert_eq!(s.find_any(clean), None);
    }

    #[test]
    fn find_kinds() {
        let s = Scrubber::new::<&str>(&[]).unwrap();
        assert_eq!(s.find_any("mail a@b.co now").unwrap().kind, "email");
        assert_eq!(s.find_any("ssn 078-05-1120").unwrap().kind, "ssn");
        assert_eq!(s.find_any("tel (555) 123-4567").unwrap().kind, "phone");
        assert_eq!(s.find_any("tel 555.123.4567").unwrap().kind, "phone");
        assert_eq!(s.find_any("acct 12345678").unwrap().kind, "digits");
        assert_eq!(s.find_any("age 45, 2 visits"), None);
        let f = Scrubber::new(&["smith"])
            .unwrap()
            .find_any("Mr SMITH")
            .unwrap();
        assert_eq!((f.kind, f.start, f.end), ("listed", 3, 8));
    }
}

//! Exact decimal arithmetic for SLO thresholds.
//!
//! Objectives are written in decimal (`99.9`) and burn-rate thresholds are products and quotients
//! of them (`14.4 × (1 − 0.999)`). Doing that in `f64` prints `0.014400000000000001`, which is
//! noise in a rule file a person reads. A fraction of two `i128` is exact for every value we
//! build, and prints as a terminating decimal whenever it is one.

use std::fmt;

/// An exact fraction `num / den`, always in lowest terms with `den > 0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decimal {
    num: i128,
    den: i128,
}

/// A decimal string that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a decimal number (expected at most 18 digits with an optional `.` and fraction)"
)]
pub struct ParseDecimalError(pub String);

/// Most digits a written number may have; keeps every product we form far inside `i128`.
const MAX_DIGITS: usize = 18;

/// Digits printed after the point when a value has no finite decimal expansion (e.g. 14/15).
const MAX_FRACTION_DIGITS: u32 = 15;

impl Decimal {
    /// The integer `n`.
    pub const fn from_int(n: i64) -> Self {
        Decimal {
            num: n as i128,
            den: 1,
        }
    }

    /// The fraction `num / den`; `den` must not be zero.
    pub fn ratio(num: i64, den: i64) -> Self {
        assert!(den != 0, "a decimal ratio needs a non-zero denominator");
        Self::normalized(num as i128, den as i128)
    }

    fn normalized(mut num: i128, mut den: i128) -> Self {
        if den < 0 {
            num = -num;
            den = -den;
        }
        let g = gcd(num.unsigned_abs(), den.unsigned_abs()) as i128;
        if g > 1 {
            num /= g;
            den /= g;
        }
        Decimal { num, den }
    }

    /// Reads `99.9`, `-0.5`, `100`, `1e-3` is not accepted (specs write plain decimals).
    pub fn parse(text: &str) -> Result<Self, ParseDecimalError> {
        let err = || ParseDecimalError(text.to_string());
        let t = text.trim();
        let (neg, digits) = match t.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, t.strip_prefix('+').unwrap_or(t)),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        if int.is_empty() && frac.is_empty()
            || !int.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
            || int.len() + frac.len() > MAX_DIGITS
        {
            return Err(err());
        }
        let mut num: i128 = 0;
        for b in int.bytes().chain(frac.bytes()) {
            num = num * 10 + i128::from(b - b'0');
        }
        let den = 10i128.pow(frac.len() as u32);
        Ok(Self::normalized(if neg { -num } else { num }, den))
    }

    /// `self / other`; `other` must not be zero.
    pub fn checked_div(self, other: Self) -> Option<Self> {
        if other.num == 0 {
            return None;
        }
        Some(Self::normalized(
            self.num.checked_mul(other.den)?,
            self.den.checked_mul(other.num)?,
        ))
    }

    /// True when the value is exactly zero.
    pub fn is_zero(self) -> bool {
        self.num == 0
    }

    /// True when the value is below zero.
    pub fn is_negative(self) -> bool {
        self.num < 0
    }

    /// Whether the value has a finite decimal expansion (its denominator has no prime factor
    /// other than 2 and 5), so that [`fmt::Display`] prints it exactly.
    pub fn is_exact_decimal(self) -> bool {
        let mut d = self.den;
        while d % 2 == 0 {
            d /= 2;
        }
        while d % 5 == 0 {
            d /= 5;
        }
        d == 1
    }

    /// The nearest `f64`, for comparisons with numbers read from other tools' output.
    pub fn to_f64(self) -> f64 {
        self.num as f64 / self.den as f64
    }
}

impl std::ops::Add for Decimal {
    type Output = Decimal;
    fn add(self, o: Decimal) -> Decimal {
        Decimal::normalized(self.num * o.den + o.num * self.den, self.den * o.den)
    }
}

impl std::ops::Sub for Decimal {
    type Output = Decimal;
    fn sub(self, o: Decimal) -> Decimal {
        Decimal::normalized(self.num * o.den - o.num * self.den, self.den * o.den)
    }
}

impl std::ops::Mul for Decimal {
    type Output = Decimal;
    fn mul(self, o: Decimal) -> Decimal {
        // Cross-reduce first so the products stay small.
        let g1 = gcd(self.num.unsigned_abs(), o.den.unsigned_abs()).max(1) as i128;
        let g2 = gcd(o.num.unsigned_abs(), self.den.unsigned_abs()).max(1) as i128;
        Decimal::normalized(
            (self.num / g1) * (o.num / g2),
            (self.den / g2) * (o.den / g1),
        )
    }
}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.num * other.den).cmp(&(other.num * self.den))
    }
}

/// Prints the shortest exact decimal (`0.0144`, `14.4`, `1`), or, for fractions without a finite
/// expansion, the value rounded half-up to 15 digits after the point with trailing zeros removed.
impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let neg = self.num < 0;
        let num = self.num.unsigned_abs();
        let den = self.den.unsigned_abs();
        let mut int = num / den;
        let mut rem = num % den;
        let mut digits = Vec::new();
        let exact = self.is_exact_decimal();
        while rem != 0 && (exact || digits.len() < MAX_FRACTION_DIGITS as usize) {
            rem *= 10;
            digits.push((rem / den) as u8);
            rem %= den;
        }
        if rem != 0 && rem * 2 >= den {
            // Round half up, carrying through nines.
            let mut i = digits.len();
            loop {
                if i == 0 {
                    int += 1;
                    break;
                }
                i -= 1;
                if digits[i] == 9 {
                    digits[i] = 0;
                } else {
                    digits[i] += 1;
                    break;
                }
            }
        }
        while digits.last() == Some(&0) {
            digits.pop();
        }
        if neg && (int != 0 || !digits.is_empty()) {
            f.write_str("-")?;
        }
        write!(f, "{int}")?;
        if !digits.is_empty() {
            f.write_str(".")?;
            for d in digits {
                write!(f, "{d}")?;
            }
        }
        Ok(())
    }
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::parse(s).unwrap()
    }

    #[test]
    fn a_burn_threshold_prints_without_float_noise() {
        let budget = Decimal::from_int(1) - d("99.9") * Decimal::ratio(1, 100);
        assert_eq!(budget.to_string(), "0.001");
        assert_eq!((d("14.4") * budget).to_string(), "0.0144");
        assert_eq!((d("6") * budget).to_string(), "0.006");
        let budget_9995 = Decimal::from_int(1) - d("99.95") * Decimal::ratio(1, 100);
        assert_eq!((d("14.4") * budget_9995).to_string(), "0.0072");
    }

    #[test]
    fn integers_and_trailing_zeros_print_in_shortest_form() {
        assert_eq!(d("3.000").to_string(), "3");
        assert_eq!(d("0.50").to_string(), "0.5");
        assert_eq!(d("-0.25").to_string(), "-0.25");
        assert_eq!(Decimal::from_int(0).to_string(), "0");
    }

    #[test]
    fn a_fraction_without_finite_expansion_is_rounded_to_fifteen_places() {
        let x = Decimal::ratio(14, 15);
        assert!(!x.is_exact_decimal());
        assert_eq!(x.to_string(), "0.933333333333333");
        assert_eq!(Decimal::ratio(2, 3).to_string(), "0.666666666666667");
        assert_eq!(Decimal::ratio(-2, 3).to_string(), "-0.666666666666667");
    }

    #[test]
    fn rounding_carries_into_the_integer_part() {
        // 0.9999999999999999 (16 nines) rounds to 1 at 15 places.
        let x = Decimal::ratio(9_999_999_999_999_999, 10_000_000_000_000_000)
            .checked_div(Decimal::from_int(1))
            .unwrap();
        assert!(x.is_exact_decimal());
        assert_eq!(x.to_string(), "0.9999999999999999");
        let y = Decimal::ratio(29_999_999_999_999_999, 30_000_000_000_000_000);
        assert_eq!(y.to_string(), "1");
    }

    #[test]
    fn malformed_numbers_are_rejected() {
        for bad in [
            "",
            ".",
            "1e3",
            "1.2.3",
            "abc",
            "--1",
            "0x10",
            "99.99999999999999999",
        ] {
            assert!(Decimal::parse(bad).is_err(), "{bad} was accepted");
        }
        assert_eq!(d(".5"), Decimal::ratio(1, 2));
        assert_eq!(d("5."), Decimal::from_int(5));
    }

    #[test]
    fn comparisons_follow_the_values() {
        assert!(d("99.9") < d("100"));
        assert!(d("0") < d("0.0001"));
        assert!(d("-1") < d("0"));
        assert_eq!(d("0.10").cmp(&d("0.1")), std::cmp::Ordering::Equal);
    }
}

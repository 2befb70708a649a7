//! A client group of the mixed mode as `--group` gives it, e.g.
//! `name=bulk,priority=5,tenant=batch,docs=100,concurrency=3`: comma-separated `key=value`
//! settings, each checked against its bound here, once.

use std::str::FromStr;

use clap::ValueEnum;
use crossrank::engine::request::MAX_TENANT_BYTES;

use super::super::load::Shape;

/// Groups in one run.
pub const MAX_GROUPS: usize = 16;
/// Bytes of a group's name.
pub const MAX_NAME_BYTES: usize = 64;
/// Requests per second of an open-loop group: at least one request per 100 s, at most 1,000/s.
pub const MIN_RATE: f64 = 0.01;
pub const MAX_RATE: f64 = 1000.0;
/// Clients of one closed-loop group (each holds a connection).
pub const MAX_CONCURRENCY: u32 = 1000;
/// Clients of all closed-loop groups together (as `--concurrency`'s bound).
pub const MAX_TOTAL_CONCURRENCY: u32 = 10_000;
/// Pairs or documents per request (as `--size`'s bound).
pub const MAX_DOCS: u32 = 100_000;

const KEYS: &str = "name, priority, tenant, shape, docs, chunk, rate, concurrency, requests";

/// How a group sends.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Load {
    /// Open loop: requests start on a fixed schedule of this many per second, whether or not
    /// earlier ones finished; latency counts from the scheduled start.
    Rate(f64),
    /// Closed loop: this many clients, each with one request in flight on its own connection.
    Clients(u32),
}

#[derive(Clone, Debug, PartialEq)]
pub struct GroupSpec {
    pub name: String,
    /// Sent as every request's `priority` (0 is the highest).
    pub priority: u32,
    /// Sent as `x-crossrank-tenant`; empty: none sent.
    pub tenant: String,
    pub shape: Shape,
    /// Pairs per Score request, documents per Rerank or RerankStream request.
    pub docs: u32,
    /// Documents per RerankStream message.
    pub chunk: u32,
    pub load: Load,
    /// Stop after this many requests (else `--requests`, else `--duration`).
    pub requests: Option<u64>,
}

impl FromStr for GroupSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut spec = Self {
            name: String::new(),
            priority: 0,
            tenant: String::new(),
            shape: Shape::Rerank,
            docs: 20,
            chunk: 10,
            load: Load::Clients(0),
            requests: None,
        };
        let (mut rate, mut concurrency) = (None, None);
        let mut seen = Vec::new();
        for part in text.split(',') {
            let Some((key, value)) = part.split_once('=') else {
                return Err(format!("{part:?} is not key=value (keys: {KEYS})"));
            };
            if seen.contains(&key) {
                return Err(format!("`{key}` is given twice"));
            }
            seen.push(key);
            match key {
                "name" => spec.name = value.to_owned(),
                "priority" => spec.priority = number(key, value, 0, u32::MAX)?,
                "tenant" => spec.tenant = value.to_owned(),
                "shape" => spec.shape = shape(value)?,
                "docs" => spec.docs = number(key, value, 1, MAX_DOCS)?,
                "chunk" => spec.chunk = number(key, value, 1, MAX_DOCS)?,
                "rate" => rate = Some(rate_of(value)?),
                "concurrency" => concurrency = Some(number(key, value, 1, MAX_CONCURRENCY)?),
                "requests" => spec.requests = Some(number(key, value, 1, u64::MAX)?),
                _ => return Err(format!("unknown key `{key}` (keys: {KEYS})")),
            }
        }
        spec.load = match (rate, concurrency) {
            (Some(r), None) => Load::Rate(r),
            (None, Some(c)) => Load::Clients(c),
            _ => return Err("give exactly one of `rate` (requests/s) and `concurrency`".into()),
        };
        check_name(&spec.name)?;
        check_tenant(&spec.tenant)?;
        Ok(spec)
    }
}

/// `value` as an integer within `min..=max`.
fn number<T>(key: &str, value: &str, min: T, max: T) -> Result<T, String>
where
    T: FromStr + PartialOrd + std::fmt::Display + Copy,
{
    match value.parse::<T>() {
        Ok(n) if n >= min && n <= max => Ok(n),
        _ => Err(format!(
            "`{key}` is {value:?}; give an integer from {min} to {max}"
        )),
    }
}

fn rate_of(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(r) if (MIN_RATE..=MAX_RATE).contains(&r) => Ok(r),
        _ => Err(format!(
            "`rate` is {value:?}; give requests per second from {MIN_RATE} to {MAX_RATE}"
        )),
    }
}

fn shape(value: &str) -> Result<Shape, String> {
    Shape::from_str(value, true)
        .map_err(|_| format!("`shape` is {value:?}; give score, rerank or stream"))
}

fn check_name(name: &str) -> Result<(), String> {
    let fine = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
    if name.is_empty() || name.len() > MAX_NAME_BYTES || !name.chars().all(fine) {
        return Err(format!(
            "`name` is {name:?}; give 1-{MAX_NAME_BYTES} characters of A-Z a-z 0-9 - _ ."
        ));
    }
    Ok(())
}

/// A tenant travels as gRPC metadata: visible ASCII, at most the server's limit.
fn check_tenant(tenant: &str) -> Result<(), String> {
    if tenant.len() > MAX_TENANT_BYTES {
        return Err(format!(
            "`tenant` is {} bytes; the limit is {MAX_TENANT_BYTES}",
            tenant.len()
        ));
    }
    if !tenant.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "`tenant` is {tenant:?}; give visible ASCII characters (it travels as gRPC metadata)"
        ));
    }
    Ok(())
}

/// The checks across groups: how many, names unique, clients in all.
pub fn check_groups(groups: &[GroupSpec]) -> Result<(), String> {
    if groups.len() > MAX_GROUPS {
        return Err(format!(
            "{} --group flags; the limit is {MAX_GROUPS}",
            groups.len()
        ));
    }
    for (i, g) in groups.iter().enumerate() {
        if groups[..i].iter().any(|o| o.name == g.name) {
            return Err(format!("--group name {:?} is given twice", g.name));
        }
    }
    let clients: u32 = groups
        .iter()
        .map(|g| match g.load {
            Load::Clients(c) => c,
            Load::Rate(_) => 0,
        })
        .sum();
    if clients > MAX_TOTAL_CONCURRENCY {
        return Err(format!(
            "the groups' concurrency adds up to {clients}; the limit is {MAX_TOTAL_CONCURRENCY}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_spec_and_the_defaults() {
        let g: GroupSpec = "name=bulk,priority=5,tenant=batch,docs=100,concurrency=3"
            .parse()
            .unwrap();
        assert_eq!(
            (g.name.as_str(), g.priority, g.tenant.as_str(), g.docs),
            ("bulk", 5, "batch", 100)
        );
        assert_eq!(
            (g.shape, g.load, g.requests),
            (Shape::Rerank, Load::Clients(3), None)
        );
        let g: GroupSpec = "name=i,rate=2.5,shape=score,requests=7".parse().unwrap();
        assert_eq!(
            (g.load, g.shape, g.docs),
            (Load::Rate(2.5), Shape::Score, 20)
        );
        assert_eq!(
            (g.priority, g.tenant.as_str(), g.requests),
            (0, "", Some(7))
        );
    }

    #[test]
    fn errors_name_the_key_the_bound_and_the_value() {
        let err = |s: &str| s.parse::<GroupSpec>().unwrap_err();
        for (spec, parts) in [
            ("name=a,rate=0", &["`rate`", "\"0\"", "0.01", "1000"][..]),
            ("name=a,rate=1e9", &["`rate`", "1e9", "1000"]),
            ("name=a,rate=NaN", &["`rate`", "NaN"]),
            (
                "name=a,concurrency=1001",
                &["`concurrency`", "1001", "1000"],
            ),
            (
                "name=a,concurrency=0",
                &["`concurrency`", "\"0\"", "from 1"],
            ),
            ("name=a,docs=100001,rate=1", &["`docs`", "100001", "100000"]),
            ("name=a,priority=-1,rate=1", &["`priority`", "-1"]),
            ("name=a,shape=x,rate=1", &["`shape`", "\"x\""]),
            ("name=a", &["exactly one of `rate`"]),
            ("name=a,rate=1,concurrency=1", &["exactly one of `rate`"]),
            ("rate=1", &["`name`", "1-64"]),
            ("name=a b,rate=1", &["`name`", "\"a b\""]),
            (
                "name=a,rate=1,colour=red",
                &["unknown key `colour`", "keys: name"],
            ),
            ("name=a,name=b,rate=1", &["`name` is given twice"]),
            ("name=a,rate", &["\"rate\" is not key=value"]),
            ("name=a,rate=1,tenant=a b", &["`tenant`", "visible ASCII"]),
        ] {
            let e = err(spec);
            for p in parts {
                assert!(e.contains(p), "{spec}: no {p:?} in {e}");
            }
        }
        let long = format!("name=a,rate=1,tenant={}", "t".repeat(MAX_TENANT_BYTES + 1));
        assert!(
            err(&long).contains("129 bytes; the limit is 128"),
            "{}",
            err(&long)
        );
    }

    #[test]
    fn groups_are_bounded_and_named_once() {
        let g = |s: &str| s.parse::<GroupSpec>().unwrap();
        let many: Vec<_> = (0..=MAX_GROUPS)
            .map(|i| g(&format!("name=g{i},rate=1")))
            .collect();
        assert!(check_groups(&many)
            .unwrap_err()
            .contains("17 --group flags; the limit is 16"));
        assert!(check_groups(&many[..MAX_GROUPS]).is_ok());
        let twice = [g("name=a,rate=1"), g("name=a,concurrency=1")];
        assert!(check_groups(&twice)
            .unwrap_err()
            .contains("\"a\" is given twice"));
        let crowd: Vec<_> = (0..11)
            .map(|i| g(&format!("name=g{i},concurrency=1000")))
            .collect();
        let e = check_groups(&crowd).unwrap_err();
        assert!(e.contains("adds up to 11000; the limit is 10000"), "{e}");
    }
}
